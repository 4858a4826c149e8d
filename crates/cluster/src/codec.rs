//! How Strata's parts of a plan travel to a scheduler and its executors: Delta tables read as
//! their Parquet files ([`LakeFiles`]) in logical plans, and the parameters of Strata's own
//! functions (`strata_text_to_timestamp`'s type) in logical and physical plans. Everything
//! else is Ballista's and DataFusion's own serialization.

use std::sync::Arc;

use ballista_core::serde::{BallistaLogicalExtensionCodec, BallistaPhysicalExtensionCodec};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::TableProvider;
use datafusion::common::{DataFusionError, Result, TableReference};
use datafusion::datasource::file_format::FileFormatFactory;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Extension, LogicalPlan, ScalarUDF};
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::logical_plan::LogicalExtensionCodec;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};
use strata_engine::{LakeFile, LakeFiles};

/// Marks a serialized [`LakeFiles`].
const LAKE_FILES: &[u8] = b"strata.lake-files.v1:";

#[derive(serde::Serialize, serde::Deserialize)]
struct LakeFilesWire {
    store_url: String,
    partition_columns: Vec<String>,
    files: Vec<LakeFile>,
}

/// Ballista's logical codec, and Strata's tables and functions.
#[derive(Debug, Default)]
pub struct LogicalCodec {
    inner: BallistaLogicalExtensionCodec,
}

impl LogicalExtensionCodec for LogicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[LogicalPlan],
        ctx: &TaskContext,
    ) -> Result<Extension> {
        self.inner.try_decode(buf, inputs, ctx)
    }

    fn try_encode(&self, node: &Extension, buf: &mut Vec<u8>) -> Result<()> {
        self.inner.try_encode(node, buf)
    }

    fn try_decode_table_provider(
        &self,
        buf: &[u8],
        table_ref: &TableReference,
        schema: SchemaRef,
        ctx: &TaskContext,
    ) -> Result<Arc<dyn TableProvider>> {
        let Some(wire) = buf.strip_prefix(LAKE_FILES) else {
            return self
                .inner
                .try_decode_table_provider(buf, table_ref, schema, ctx);
        };
        let wire: LakeFilesWire = serde_json::from_slice(wire).map_err(|e| {
            DataFusionError::Internal(format!("cannot read the files of {table_ref}: {e}"))
        })?;
        Ok(Arc::new(LakeFiles {
            store_url: wire.store_url,
            schema,
            partition_columns: wire.partition_columns,
            files: wire.files,
            store: None,
        }))
    }

    fn try_encode_table_provider(
        &self,
        table_ref: &TableReference,
        node: Arc<dyn TableProvider>,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        let any: &dyn std::any::Any = node.as_ref();
        let Some(files) = any.downcast_ref::<LakeFiles>() else {
            return self.inner.try_encode_table_provider(table_ref, node, buf);
        };
        buf.extend_from_slice(LAKE_FILES);
        serde_json::to_writer(
            buf,
            &LakeFilesWire {
                store_url: files.store_url.clone(),
                partition_columns: files.partition_columns.clone(),
                files: files.files.clone(),
            },
        )
        .map_err(|e| DataFusionError::Internal(format!("cannot send {table_ref}: {e}")))
    }

    fn try_decode_file_format(
        &self,
        buf: &[u8],
        ctx: &TaskContext,
    ) -> Result<Arc<dyn FileFormatFactory>> {
        self.inner.try_decode_file_format(buf, ctx)
    }

    fn try_encode_file_format(
        &self,
        buf: &mut Vec<u8>,
        node: Arc<dyn FileFormatFactory>,
    ) -> Result<()> {
        self.inner.try_encode_file_format(buf, node)
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
        decode_udf(name, buf).or_else(|_| self.inner.try_decode_udf(name, buf))
    }

    fn try_encode_udf(&self, node: &ScalarUDF, buf: &mut Vec<u8>) -> Result<()> {
        encode_udf(node, buf);
        Ok(())
    }
}

/// Ballista's physical codec, and the parameters of Strata's functions.
#[derive(Debug, Default)]
pub struct PhysicalCodec {
    inner: BallistaPhysicalExtensionCodec,
}

impl PhysicalExtensionCodec for PhysicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.inner.try_decode(buf, inputs, ctx, converter)
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        self.inner.try_encode(node, buf, converter)
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
        decode_udf(name, buf).or_else(|_| self.inner.try_decode_udf(name, buf))
    }

    fn try_encode_udf(&self, node: &ScalarUDF, buf: &mut Vec<u8>) -> Result<()> {
        encode_udf(node, buf);
        Ok(())
    }
}

fn encode_udf(udf: &ScalarUDF, buf: &mut Vec<u8>) {
    if let Some(p) = strata_engine::functions::parameters(udf) {
        buf.extend_from_slice(p.as_bytes());
    }
}

fn decode_udf(name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
    std::str::from_utf8(buf)
        .ok()
        .and_then(|p| strata_engine::functions::with_parameters(name, p))
        .map(Arc::new)
        .ok_or_else(|| DataFusionError::Plan(format!("no parameters for {name}")))
}
