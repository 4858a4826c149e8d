//! Writing CSV files into a PostgreSQL database, for commands that fill a source database
//! (`strata datagen retail --to URL`): each call is one transaction, so a database holds a
//! whole day of data or none of it.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures::SinkExt;
use tokio_postgres::Client;

use strata_engine::{Error, Result};

/// One table to load from a CSV file with a header line.
#[derive(Debug, Clone)]
pub struct CsvLoad {
    /// The table, schema-qualified.
    pub table: String,
    pub columns: Vec<String>,
    pub file: PathBuf,
    /// `insert … select … from {from} on conflict … do update …` to upsert the rows from a
    /// staging table; None: copy them into the table directly.
    pub upsert: Option<String>,
}

/// Run `setup` (DDL, may be empty), then load every table, in one transaction. Returns the
/// rows loaded per table.
pub async fn load_csv(client: &mut Client, setup: &str, loads: &[CsvLoad]) -> Result<Vec<u64>> {
    let db = |what: &str, e: tokio_postgres::Error| {
        Error::user(format!("{what}: {}", crate::describe(&e)))
    };
    let tx = client
        .transaction()
        .await
        .map_err(|e| db("cannot start a transaction", e))?;
    if !setup.is_empty() {
        tx.batch_execute(setup).await.map_err(|e| db("setup", e))?;
    }
    let mut counts = Vec::with_capacity(loads.len());
    for load in loads {
        let cols = load.columns.join(", ");
        let target = match &load.upsert {
            Some(_) => {
                let stage = "strata_stage";
                tx.batch_execute(&format!(
                    "drop table if exists {stage}; create temp table {stage} as select {cols} from {} with no data",
                    load.table
                ))
                .await
                .map_err(|e| db(&load.table, e))?;
                stage.to_string()
            }
            None => load.table.clone(),
        };
        let sink = tx
            .copy_in(
                format!("copy {target} ({cols}) from stdin (format csv, header true)").as_str(),
            )
            .await
            .map_err(|e| db(&load.table, e))?;
        let copied = send_file(sink, &load.file, &load.table).await?;
        if let Some(upsert) = &load.upsert {
            tx.execute(upsert.replace("{from}", "strata_stage").as_str(), &[])
                .await
                .map_err(|e| db(&load.table, e))?;
        }
        counts.push(copied);
    }
    tx.commit().await.map_err(|e| db("cannot commit", e))?;
    Ok(counts)
}

/// Stream a file into a `COPY … FROM STDIN`; returns the rows copied.
pub(crate) async fn send_file(
    sink: tokio_postgres::CopyInSink<Bytes>,
    path: &Path,
    table: &str,
) -> Result<u64> {
    let mut sink = Box::pin(sink);
    use std::io::Read;
    let mut file = std::fs::File::open(path)
        .map_err(|e| Error::user(format!("cannot read {}: {e}", path.display())))?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| Error::user(format!("cannot read {}: {e}", path.display())))?;
        if n == 0 {
            break;
        }
        sink.send(Bytes::copy_from_slice(&buf[..n]))
            .await
            .map_err(|e| Error::user(format!("{table}: {}", crate::describe(&e))))?;
    }
    sink.as_mut()
        .finish()
        .await
        .map_err(|e| Error::user(format!("{table}: {}", crate::describe(&e))))
}

/// Whether `table` (schema-qualified) exists.
pub async fn table_exists(client: &Client, table: &str) -> Result<bool> {
    let row = client
        .query_one("select to_regclass($1)::text", &[&table])
        .await
        .map_err(|e| Error::user(format!("{table}: {}", crate::describe(&e))))?;
    Ok(row.get::<_, Option<String>>(0).is_some())
}
