//! The PostgreSQL warehouse: a project's models built inside a PostgreSQL database, as
//! dbt-postgres builds them.
//!
//! - A table or view is built under a temporary name and swapped in with renames, in one
//!   transaction: a failed build leaves the previous relation as it was.
//! - Incremental models stage their new rows in a temporary table, then `append`,
//!   `delete+insert` (the default with a `unique_key`, as in dbt-postgres) or `merge` them in
//!   one transaction; microbatches replace their window.
//! - Snapshots close changed versions and insert new ones in one transaction.
//! - Seeds are created with the types dbt infers and filled with `COPY … FROM STDIN`.
//! - Queries (tests, `show`) stream through `COPY … TO STDOUT (FORMAT binary)`, decoded
//!   straight into Arrow record batches.
//!
//! Division is true division, as on the embedded warehouse: `a / b` runs as
//! `strata.strata_divide(a, b)`, so `7 / 2` is 3.5 on both (see [`divide`]).

mod build;
pub mod divide;
mod read;
mod seed;
mod snapshot;

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::physical_plan::SendableRecordBatchStream;
use strata_common::Relation;
use strata_engine::{
    Error, Materialization, MaterializeOutcome, MaterializeRequest, Result, SeedRequest,
    StatementContext, Warehouse,
};
use tokio_postgres::{Client, Config};

use crate::{describe, ident, tls::Tls};

/// Where a PostgreSQL warehouse is.
#[derive(Clone)]
pub struct PostgresOptions {
    /// How to connect (the password is never shown).
    pub config: Config,
    /// How connections are encrypted (`sslmode`).
    pub tls: Tls,
    /// The database, as relations name it (`dbname`).
    pub database: String,
    /// The target's schema.
    pub default_schema: String,
}

/// A PostgreSQL database models are built in. Cheap to clone: clones share connections.
#[derive(Clone)]
pub struct PostgresWarehouse {
    inner: Arc<Inner>,
}

struct Inner {
    options: PostgresOptions,
    /// `host:port/database`, for messages.
    server: String,
    /// Open connections not in use.
    idle: parking_lot::Mutex<Vec<Client>>,
    /// Whether the functions our SQL needs exist in the database.
    functions: tokio::sync::OnceCell<()>,
    /// Schemas known to exist; creating them is one at a time.
    schemas: tokio::sync::Mutex<std::collections::HashSet<String>>,
}

impl std::fmt::Debug for PostgresWarehouse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PostgresWarehouse({})", self.inner.server)
    }
}

/// A connection from the pool, back in it when dropped (unless it broke).
pub(crate) struct Conn {
    client: Option<Client>,
    home: Arc<Inner>,
}

impl std::ops::Deref for Conn {
    type Target = Client;
    fn deref(&self) -> &Client {
        self.client
            .as_ref()
            .expect("a pooled connection is present until dropped")
    }
}

impl std::ops::DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut Client {
        self.client
            .as_mut()
            .expect("a pooled connection is present until dropped")
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Some(client) = self.client.take()
            && !client.is_closed()
        {
            self.home.idle.lock().push(client);
        }
    }
}

/// The functions Strata's SQL semantics need, in the schema `strata`: true division (see
/// [`divide`]). Created once per database; `create or replace` keeps them current.
const FUNCTIONS: &str = "
create schema if not exists strata;
create or replace function strata.strata_divide(float8, float8) returns float8
    language sql immutable parallel safe as 'select $1 / $2';
create or replace function strata.strata_divide(numeric, numeric) returns numeric
    language sql immutable parallel safe as 'select $1 / $2';
create or replace function strata.strata_divide(interval, float8) returns interval
    language sql immutable parallel safe as 'select $1 / $2';
";

/// Where a PostgreSQL server is, as a profile gives it.
#[derive(Clone, Default)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<String>,
    pub dbname: String,
    /// `disable`, `prefer` (the default), `require`, `verify-ca`, `verify-full`.
    pub sslmode: Option<String>,
    /// The CA certificate `verify-ca` and `verify-full` trust.
    pub sslrootcert: Option<std::path::PathBuf>,
    /// Seconds to wait for a connection.
    pub connect_timeout: u64,
}

impl PostgresOptions {
    /// The options of a warehouse at `endpoint` whose models go to `schema`.
    pub fn new(endpoint: &Endpoint, schema: &str) -> std::result::Result<Self, String> {
        let (tls, mode) =
            crate::tls::mode(endpoint.sslmode.as_deref(), endpoint.sslrootcert.clone())?;
        let mut config = Config::new();
        config
            .host(&endpoint.host)
            .port(endpoint.port)
            .user(&endpoint.user)
            .dbname(&endpoint.dbname)
            .connect_timeout(std::time::Duration::from_secs(
                endpoint.connect_timeout.max(1),
            ));
        if let Some(p) = &endpoint.password {
            config.password(p);
        }
        crate::finish_config(&mut config, mode);
        Ok(Self {
            config,
            tls,
            database: endpoint.dbname.clone(),
            default_schema: schema.to_string(),
        })
    }
}

impl PostgresWarehouse {
    /// A warehouse on the database `options` names; nothing is opened until it is used.
    pub fn new(options: PostgresOptions) -> Self {
        let server = crate::server_name(&options.config);
        Self {
            inner: Arc::new(Inner {
                options,
                server,
                idle: parking_lot::Mutex::new(Vec::new()),
                functions: tokio::sync::OnceCell::new(),
                schemas: tokio::sync::Mutex::new(Default::default()),
            }),
        }
    }

    /// Connect once (and make sure Strata's functions exist): a wrong password or an
    /// unreachable server is one clear error before any model runs.
    pub async fn check(&self) -> Result<()> {
        self.conn().await.map(|_| ())
    }

    /// `host:port/database`.
    pub fn server(&self) -> &str {
        &self.inner.server
    }

    /// The database relations are qualified with.
    pub fn database(&self) -> &str {
        &self.inner.options.database
    }

    /// A connection: an idle one, or a new one (in UTC, as the embedded warehouse).
    pub(crate) async fn conn(&self) -> Result<Conn> {
        let idle = self.inner.idle.lock().pop();
        let client = match idle {
            Some(c) if !c.is_closed() => c,
            _ => {
                let client = crate::connect(&self.inner.options.config, &self.inner.options.tls)
                    .await
                    .map_err(|why| {
                        Error::user(format!(
                            "cannot connect to PostgreSQL at {}: {why}",
                            self.inner.server
                        ))
                        .with_hint(
                            "check the server is up, and host, port, user, password (from env_var()) and dbname of the target in profiles.yml",
                        )
                    })?;
                client
                    .batch_execute("set time zone 'UTC'")
                    .await
                    .map_err(|e| self.error("cannot set up a connection", &e))?;
                client
            }
        };
        let conn = Conn {
            client: Some(client),
            home: self.inner.clone(),
        };
        self.inner
            .functions
            .get_or_try_init(|| async {
                let exists: bool = conn
                    .query_one(
                        "select to_regprocedure('strata.strata_divide(interval,float8)') is not null",
                        &[],
                    )
                    .await
                    .map_err(|e| self.error("cannot look up Strata's functions", &e))?
                    .get(0);
                if !exists {
                    // One creator at a time: concurrent `create or replace` of one function
                    // fails in PostgreSQL.
                    conn.batch_execute(&format!(
                        "begin; select pg_advisory_xact_lock(hashtext('strata.functions')); {FUNCTIONS} commit;"
                    ))
                    .await
                    .map_err(|e| {
                        self.error("cannot create Strata's functions (schema `strata`)", &e)
                    })?;
                }
                Ok::<(), Error>(())
            })
            .await?;
        Ok(conn)
    }

    /// Create `schema` unless it exists, committed on its own (as dbt creates a run's schemas
    /// before building), one at a time: concurrent `create schema if not exists` of one name
    /// collide in PostgreSQL.
    pub(crate) async fn ensure_schema(&self, schema: &str) -> Result<()> {
        let mut known = self.inner.schemas.lock().await;
        if known.contains(schema) {
            return Ok(());
        }
        let conn = self.conn().await?;
        if let Err(e) = conn
            .batch_execute(&format!("create schema if not exists {}", ident(schema)))
            .await
        {
            // Another process created it at the same moment: it exists.
            if e.code() != Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) {
                return Err(self.error(&format!("cannot create the schema {schema}"), &e));
            }
        }
        known.insert(schema.to_string());
        Ok(())
    }

    /// An error of the database, saying what was being done.
    pub(crate) fn error(&self, what: &str, e: &tokio_postgres::Error) -> Error {
        match e.as_db_error() {
            Some(_) => Error::Sql(format!("{what}: {}", describe(e))),
            None => Error::user(format!(
                "{what}: the connection to PostgreSQL at {} failed: {}",
                self.inner.server,
                describe(e)
            )),
        }
    }

    /// A relation's name as SQL: schema and name, quoted.
    pub(crate) fn name(&self, relation: &Relation) -> String {
        format!(
            "{}.{}",
            ident(&relation.schema),
            ident(&relation.identifier)
        )
    }

    /// Whether a relation exists, and what it is (`r` table, `v` view, `m` materialized
    /// view, `p` partitioned table).
    pub(crate) async fn kind_of(&self, conn: &Client, relation: &Relation) -> Result<Option<char>> {
        let row = conn
            .query_opt(
                "select c.relkind::text from pg_class c join pg_namespace n on n.oid = c.relnamespace \
                 where n.nspname = $1 and c.relname = $2",
                &[&relation.schema, &relation.identifier],
            )
            .await
            .map_err(|e| self.error(&format!("cannot look up {relation}"), &e))?;
        Ok(row.and_then(|r| r.get::<_, String>(0).chars().next()))
    }

    /// A relation's columns (name, type as PostgreSQL writes it), in order; empty when it
    /// does not exist.
    pub(crate) async fn columns_of(
        &self,
        conn: &Client,
        schema: &str,
        name: &str,
    ) -> Result<Vec<(String, String)>> {
        let rows = conn
            .query(
                "select a.attname::text, format_type(a.atttypid, a.atttypmod) \
                 from pg_attribute a join pg_class c on c.oid = a.attrelid \
                 join pg_namespace n on n.oid = c.relnamespace \
                 where n.nspname = $1 and c.relname = $2 and a.attnum > 0 and not a.attisdropped \
                 order by a.attnum",
                &[&schema, &name],
            )
            .await
            .map_err(|e| self.error(&format!("cannot read the columns of {schema}.{name}"), &e))?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }
}

/// `name` with `suffix`, within PostgreSQL's 63-byte identifiers (the name is shortened).
pub(crate) fn suffixed(name: &str, suffix: &str) -> String {
    let mut end = name.len().min(63usize.saturating_sub(suffix.len()));
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{suffix}", &name[..end])
}

#[async_trait]
impl Warehouse for PostgresWarehouse {
    async fn materialize(&self, request: &MaterializeRequest) -> Result<MaterializeOutcome> {
        if request.quarantine.is_some() {
            return Err(Error::user(format!(
                "{}: `quarantine:` is not supported on PostgreSQL targets yet",
                request.unique_id
            ))
            .with_hint(
                "use tests to find bad rows, or build this model on the embedded warehouse",
            ));
        }
        match request.materialization {
            Materialization::Table => self.build_table(request).await,
            Materialization::View => self.build_view(request).await,
            Materialization::Incremental => self.build_incremental(request).await,
            Materialization::Snapshot => self.build_snapshot(request).await,
        }
    }

    async fn append(&self, request: &MaterializeRequest) -> Result<MaterializeOutcome> {
        self.append_rows(request).await
    }

    async fn load_seed(&self, request: &SeedRequest) -> Result<MaterializeOutcome> {
        self.seed(request).await
    }

    async fn query(&self, sql: &str, limit: Option<usize>) -> Result<SendableRecordBatchStream> {
        self.stream(sql, limit).await
    }

    async fn describe(&self, sql: &str) -> Result<SchemaRef> {
        Ok(self.plan(sql).await?.0)
    }

    async fn execute(&self, sql: &str, _context: &StatementContext) -> Result<Vec<String>> {
        let conn = self.conn().await?;
        let sql = divide::rewrite(sql);
        let messages = conn
            .simple_query(&sql)
            .await
            .map_err(|e| self.error("the statement failed", &e))?;
        Ok(messages
            .iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::CommandComplete(n) => Some(format!("OK {n}")),
                _ => None,
            })
            .collect())
    }

    async fn apply_grants(&self, relation: &Relation, grants: &[(String, String)]) -> Result<()> {
        let conn = self.conn().await?;
        let name = self.name(relation);
        let fail = |e: tokio_postgres::Error| self.error(&format!("grants on {relation}"), &e);
        // What is granted now, to others than the owner (who keeps every privilege).
        let current: Vec<(String, String)> = conn
            .query(
                "select lower(privilege_type), grantee::text from information_schema.role_table_grants \
                 where table_schema = $1 and table_name = $2 and grantee <> current_user",
                &[&relation.schema, &relation.identifier],
            )
            .await
            .map_err(fail)?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let wanted: Vec<(String, String)> = grants
            .iter()
            .map(|(p, g)| (p.to_lowercase(), g.clone()))
            .collect();
        let mut statements = Vec::new();
        for (privilege, grantee) in &current {
            if !wanted.contains(&(privilege.clone(), grantee.clone())) {
                statements.push(format!(
                    "revoke {privilege} on {name} from {}",
                    ident(grantee)
                ));
            }
        }
        for (privilege, grantee) in &wanted {
            if !current.contains(&(privilege.clone(), grantee.clone())) {
                statements.push(format!("grant {privilege} on {name} to {}", ident(grantee)));
            }
        }
        if !statements.is_empty() {
            conn.batch_execute(&statements.join(";\n"))
                .await
                .map_err(fail)?;
        }
        Ok(())
    }

    async fn columns(&self, relation: &Relation) -> Result<Option<Vec<(String, String)>>> {
        let conn = self.conn().await?;
        let columns = self
            .columns_of(&conn, &relation.schema, &relation.identifier)
            .await?;
        Ok(Some(columns).filter(|c| !c.is_empty()))
    }

    fn introspector(&self) -> Option<Arc<dyn strata_common::Introspector>> {
        Some(Arc::new(read::PgIntrospector::new(self.clone())))
    }
}
