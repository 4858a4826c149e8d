//! Observers: queries over the rows a table model writes, run as the rows stream to the write
//! (anomaly tests' metrics, measured in the same pass instead of a second read). Each
//! observer reads its own bounded channel of the write's batches (shared, not copied) and
//! runs concurrently with the write; when the write has read its last row, the observers
//! finish and their results come back with the write's outcome.

use std::sync::{Arc, Mutex};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use datafusion::prelude::DataFrame;
use futures::{StreamExt, TryStreamExt};
use strata_common::quote_ident as q;
use tokio::sync::mpsc;

use super::EmbeddedWarehouse;
use super::stage::{CATALOG, SCHEMA};
use crate::error::Result;
use crate::{MaterializeOutcome, MaterializeRequest, OBSERVED_ROWS};

/// Batches an observer may fall behind the write before the write waits for it.
const BACKLOG: usize = 8;

impl EmbeddedWarehouse {
    /// Build a table model while its observers read the rows written.
    pub(super) async fn build_observed(
        &self,
        req: &MaterializeRequest,
    ) -> Result<MaterializeOutcome> {
        let df = self.plan(&req.sql).await?;
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let mut names = Vec::new();
        let mut senders = Vec::new();
        let mut running = Vec::new();
        for (id, sql) in &req.observers {
            let (tx, rx) = mpsc::channel::<RecordBatch>(BACKLOG);
            let table = format!("o{}", uuid::Uuid::new_v4().simple());
            let name = format!("{CATALOG}.{SCHEMA}.{table}");
            self.ctx.register_table(
                name.as_str(),
                Arc::new(datafusion::catalog::streaming::StreamingTable::try_new(
                    schema.clone(),
                    vec![Arc::new(Channel {
                        schema: schema.clone(),
                        rx: Mutex::new(Some(rx)),
                    }) as Arc<dyn PartitionStream>],
                )?),
            )?;
            names.push(name);
            let sql = sql.replace(
                OBSERVED_ROWS,
                &format!("{}.{}.{}", q(CATALOG), q(SCHEMA), q(&table)),
            );
            // An observer that does not plan is left out; the write goes on.
            let Ok(observer) = self.plan(&sql).await else {
                continue;
            };
            senders.push(tx);
            running.push((id.clone(), tokio::spawn(observer.collect())));
        }
        let tee = Tee {
            df: Mutex::new(Some(df)),
            schema: schema.clone(),
            senders: Mutex::new(Some(senders)),
        };
        let table = format!("t{}", uuid::Uuid::new_v4().simple());
        let name = format!("{CATALOG}.{SCHEMA}.{table}");
        self.ctx.register_table(
            name.as_str(),
            Arc::new(datafusion::catalog::streaming::StreamingTable::try_new(
                schema,
                vec![Arc::new(tee) as Arc<dyn PartitionStream>],
            )?),
        )?;
        let inner = MaterializeRequest {
            sql: format!("select * from {}.{}.{}", q(CATALOG), q(SCHEMA), q(&table)),
            observers: Vec::new(),
            ..req.clone()
        };
        let outcome = self.build_table(&inner).await;
        let _ = self.ctx.deregister_table(name.as_str());
        let mut observed = Vec::new();
        for (id, task) in running {
            // After a failed write the channels are closed early: results are dropped.
            if let Ok(Ok(batches)) = task.await
                && outcome.is_ok()
            {
                observed.push((id, batches));
            }
        }
        for n in names {
            let _ = self.ctx.deregister_table(n.as_str());
        }
        let mut outcome = outcome?;
        outcome.observed = observed;
        Ok(outcome)
    }
}

/// The model's query, each batch passed on to the write and to every observer.
struct Tee {
    df: Mutex<Option<DataFrame>>,
    schema: SchemaRef,
    senders: Mutex<Option<Vec<mpsc::Sender<RecordBatch>>>>,
}

impl std::fmt::Debug for Tee {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tee").finish()
    }
}

impl PartitionStream for Tee {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let df = self.df.lock().ok().and_then(|mut d| d.take());
        let senders = Arc::new(
            self.senders
                .lock()
                .ok()
                .and_then(|mut s| s.take())
                .unwrap_or_default(),
        );
        let rows = futures::stream::once(async move {
            let df = df.ok_or_else(|| {
                datafusion::error::DataFusionError::Internal(
                    "an observed model's query was read twice".into(),
                )
            })?;
            df.execute_stream().await
        })
        .try_flatten()
        .then(move |batch| {
            let senders = senders.clone();
            async move {
                let batch = batch?;
                for s in senders.iter() {
                    // An observer that stopped (it failed) no longer needs rows.
                    let _ = s.send(batch.clone()).await;
                }
                Ok(batch)
            }
        });
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), rows))
    }
}

/// One observer's rows: the batches the write passes on.
struct Channel {
    schema: SchemaRef,
    rx: Mutex<Option<mpsc::Receiver<RecordBatch>>>,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel").finish()
    }
}

impl PartitionStream for Channel {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let rx = self.rx.lock().ok().and_then(|mut r| r.take());
        let rows = futures::stream::unfold(rx, |rx| async move {
            let mut rx = rx?;
            let batch = rx.recv().await?;
            Some((Ok(batch), Some(rx)))
        });
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), rows))
    }
}
