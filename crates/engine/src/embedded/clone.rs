//! `clone`: make a table of this target from a table of another target's lake (an earlier
//! run's, read through `--state`), without copying its rows: the new table's first commit
//! lists the source's data files, each a hard link to the source's file. Both tables can
//! then change (or be vacuumed) independently; the bytes are shared until one rewrites them.

use deltalake::kernel::Action;
use deltalake::operations::create::CreateBuilder;
use strata_meta::RelationKind;

use super::{EmbeddedWarehouse, WriteTarget, damage, lake::Lake};
use crate::MaterializeOutcome;
use crate::error::{Error, Result};

/// A table of another lake to clone.
#[derive(Debug, Clone)]
pub struct CloneSource {
    /// That lake (a folder, or a URL).
    pub lake: String,
    /// The table's schema there.
    pub schema: String,
    /// The table's name there.
    pub name: String,
}

impl EmbeddedWarehouse {
    /// Make `relation` a clone of `source`'s current version, in one commit (a table already
    /// there is replaced). Both lakes must be folders: files are hard-linked (copied when the
    /// lakes are on different file systems).
    pub async fn clone_table(
        &self,
        source: &CloneSource,
        relation: &strata_common::Relation,
        unique_id: &str,
        run_id: &str,
    ) -> Result<MaterializeOutcome> {
        let src_lake = Lake::parse(&source.lake)?;
        let src = src_lake.table(&source.schema, &source.name)?;
        let (schema, name) = (&relation.schema, &relation.identifier);
        let dest = self.shared.lake.table(schema, name)?;
        let (Some(src_dir), Some(dest_dir)) = (src.dir.clone(), dest.dir.clone()) else {
            return Err(Error::user(format!(
                "cannot clone {} into {}: cloning needs both lakes on local disk ({} and {})",
                src.display,
                dest.display,
                src_lake.root(),
                self.shared.lake.root()
            ))
            .with_hint("build the model in this target with `strata run`, or read the other target's tables with `--defer --state`"));
        };
        let table = damage::open_checked(&src).await?.ok_or_else(|| {
            Error::user(format!(
                "{} does not exist in the state's lake {}",
                src.display,
                src_lake.root()
            ))
            .with_hint("clone what the state run built: is --state the right run?")
        })?;
        let snapshot = table
            .snapshot()
            .map_err(|e| Error::user(format!("cannot read {}: {e}", src.display)))?;
        self.ready_to_write().await?;
        if self.shared.lake.table_exists(&dest).await? {
            self.shared.lake.remove_table(&dest).await?;
        }
        self.shared.invalidate(schema, name);
        let mut actions = Vec::new();
        let mut rows: Option<u64> = Some(0);
        let result = async {
            for file in snapshot.log_data().iter() {
                #[allow(deprecated)]
                let add = file.add_action();
                if add.deletion_vector.is_some() {
                    return Err(Error::user(format!(
                        "{} has deletion vectors, which clone does not carry over",
                        src.display
                    )));
                }
                let from = src_dir.join(&add.path);
                let to = dest_dir.join(&add.path);
                if let Some(parent) = to.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| {
                        Error::user(format!("cannot create {}: {e}", parent.display()))
                    })?;
                }
                if std::fs::hard_link(&from, &to).is_err() {
                    std::fs::copy(&from, &to).map_err(|e| {
                        Error::user(format!(
                            "cannot clone {} to {}: {e}",
                            from.display(),
                            to.display()
                        ))
                    })?;
                }
                let records = add
                    .stats
                    .as_deref()
                    .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok())
                    .and_then(|s| s["numRecords"].as_u64());
                rows = rows.zip(records).map(|(a, b)| a + b);
                actions.push(Action::Add(add));
            }
            let target = WriteTarget {
                unique_id,
                run_id,
                relation,
                partition_by: &[],
                file_size: None,
                replace_damaged: false,
                txn: None,
            };
            let metadata = snapshot.metadata();
            let props =
                deltalake::kernel::transaction::CommitProperties::default().with_metadata([
                    ("strata.run_id".to_string(), serde_json::json!(run_id)),
                    ("strata.node".to_string(), serde_json::json!(unique_id)),
                    (
                        "strata.clone_of".to_string(),
                        serde_json::json!(format!("{}@{}", src.url, snapshot.version())),
                    ),
                ]);
            CreateBuilder::new()
                .with_location(dest.url.to_string())
                .with_columns(snapshot.schema().fields().cloned())
                .with_partition_columns(metadata.partition_columns().iter().cloned())
                .with_configuration(
                    metadata
                        .configuration()
                        .iter()
                        .map(|(k, v)| (k.clone(), Some(v.clone()))),
                )
                .with_actions(actions)
                .with_commit_properties(props)
                .await
                .map_err(|e| Error::user(format!("cannot create {}: {e}", dest.display)))?;
            self.record(&target, RelationKind::Table, &dest, None)?;
            Ok(())
        }
        .await;
        if let Err(e) = result {
            // Nothing half-made stays: the links go with the folder.
            let _ = self.shared.lake.remove_table(&dest).await;
            return Err(e);
        }
        self.shared.invalidate(schema, name);
        Ok(MaterializeOutcome {
            rows_affected: rows,
            version: Some(0),
            message: format!("CLONE of {} version {}", src.display, snapshot.version()),
            observed: Vec::new(),
            quarantined: 0,
        })
    }
}
