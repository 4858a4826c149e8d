//! The Postgres wire protocol: BI tools (Superset, Metabase, anything with a PostgreSQL driver)
//! read the target's warehouse as if it were PostgreSQL 16, read-only.
//!
//! Built on `datafusion-postgres` (pgwire and a `pg_catalog` derived from DataFusion's
//! catalog). What Strata adds: SCRAM-SHA-256 against the users' stored verifiers
//! ([`auth`]); every statement checked before it plans — writes refused with SQLSTATE 25006,
//! `bi_reader` held to the gold layer ([`guard`]); the catalog functions and shapes clients
//! look for ([`compat`]); and one session per role, reopened when a build or an ingestion
//! changed the metadata store, so new table versions show without a restart.

mod auth;
mod compat;
mod guard;
mod parse;
mod search_path;
mod served;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::Statement;
use datafusion_postgres::arrow_pg::datatypes::df::encode_dataframe;
use datafusion_postgres::hooks::HookClient;
use datafusion_postgres::hooks::cursor::CursorStatementHook;
use datafusion_postgres::hooks::set_show::SetShowHook;
use datafusion_postgres::hooks::transactions::TransactionStatementHook;
use datafusion_postgres::pgwire;
use datafusion_postgres::{DfSessionService, QueryHook};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{FieldInfo, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, ErrorHandler, PgWireServerHandlers, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::types::format::FormatOptions;
use strata_meta::MetaStore;

use crate::users::Role;
pub use auth::Login;

/// The version clients see: PostgreSQL 16's protocol and catalogs.
pub const SERVER_VERSION: &str = concat!("16.6 (Strata ", env!("CARGO_PKG_VERSION"), ")");

/// How to serve the wire protocol.
#[derive(Clone)]
pub struct PgOptions {
    pub addr: SocketAddr,
    /// No login (everyone is `admin`), loopback only.
    pub dev: bool,
    pub meta: Arc<MetaStore>,
    /// The warehouse, reopened when the metadata store changed.
    pub warehouses: Arc<crate::Warehouses>,
}

/// Check the options: `--dev` binds to loopback only; without it, someone must be able to log
/// in.
pub fn check(opts: &PgOptions) -> Result<(), String> {
    crate::check_access(opts.dev, opts.addr, &opts.meta, "--pg", "bi_reader")
}

/// Serve until `shutdown` resolves.
pub async fn serve(
    opts: PgOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    check(&opts)?;
    let listener = crate::listen(opts.addr).await?;
    let queries = Arc::new(Queries {
        worlds: Arc::new(Worlds {
            warehouses: opts.warehouses.clone(),
            slots: Mutex::new(HashMap::new()),
        }),
    });
    tokio::pin!(shutdown);
    loop {
        let (socket, peer) = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "postgres wire: cannot accept a connection");
                    continue;
                }
            },
        };
        let _ = socket.set_nodelay(true);
        let handlers = Connection {
            startup: Arc::new(auth::Startup::new(opts.meta.clone(), opts.dev)),
            queries: queries.clone(),
        };
        tokio::spawn(async move {
            if let Err(e) = pgwire::tokio::process_socket(socket, None, handlers).await {
                tracing::info!(%peer, error = %e, "postgres wire: connection ended with an error");
            }
        });
    }
}

/// The handlers of one connection.
struct Connection {
    startup: Arc<auth::Startup>,
    queries: Arc<Queries>,
}

impl PgWireServerHandlers for Connection {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.queries.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.queries.clone()
    }

    fn startup_handler(&self) -> Arc<impl pgwire::api::auth::StartupHandler> {
        self.startup.clone()
    }

    fn error_handler(&self) -> Arc<impl ErrorHandler> {
        Arc::new(LogErrors)
    }
}

/// Every error sent to a client is logged, with who it was for.
struct LogErrors;

impl ErrorHandler for LogErrors {
    fn on_error<C: ClientInfo>(&self, client: &C, error: &mut PgWireError) {
        let user = client.metadata().get("user").cloned().unwrap_or_default();
        tracing::info!(user, error = %error, "postgres wire: statement refused or failed");
    }
}

/// The session a role's connections query through, for one state of the metadata store.
struct World {
    ctx: Arc<SessionContext>,
    reader: parse::SqlReader,
    /// The guard first, then session statements (cursors, `SET`/`SHOW`, transactions).
    hooks: Vec<Arc<dyn QueryHook>>,
    /// Runs prepared statements' plans.
    service: Arc<DfSessionService>,
    generation: i64,
    /// The catalog's name (the target's database).
    database: String,
    system_tables: std::collections::HashSet<String>,
}

fn api(e: datafusion::error::DataFusionError) -> PgWireError {
    PgWireError::ApiError(Box::new(e))
}

impl World {
    /// The statements of `sql`, with unqualified table names found through the client's
    /// search path.
    fn read(&self, sql: &str, client: &(impl ClientInfo + ?Sized)) -> PgWireResult<Vec<Statement>> {
        let mut statements = self.reader.parse(sql)?;
        let path = search_path::of(client);
        if !path.is_empty() {
            let catalog = self.ctx.catalog(&self.database);
            let exists = |schema: &str, table: &str| {
                !self.system_tables.contains(table)
                    && catalog
                        .as_ref()
                        .and_then(|c| c.schema(schema))
                        .is_some_and(|s| s.table_exist(table))
            };
            for statement in &mut statements {
                search_path::qualify(statement, &path, &exists);
            }
        }
        Ok(statements)
    }

    /// Plan one statement, unless a hook answers it.
    async fn plan(
        &self,
        statement: &Statement,
        client: &(dyn ClientInfo + Send + Sync),
    ) -> PgWireResult<LogicalPlan> {
        for hook in &self.hooks {
            if let Some(plan) = hook
                .handle_extended_parse_query(statement, &self.ctx, client)
                .await
            {
                return plan;
            }
        }
        self.ctx
            .state()
            .statement_to_plan(datafusion::sql::parser::Statement::Statement(Box::new(
                statement.clone(),
            )))
            .await
            .map_err(api)
    }
}

/// The client's `statement_timeout`, as `SET` keeps it.
fn statement_timeout(client: &dyn ClientInfo) -> Option<std::time::Duration> {
    client
        .metadata()
        .get("statement_timeout_ms")
        .and_then(|ms| ms.parse::<u64>().ok())
        .filter(|ms| *ms > 0)
        .map(std::time::Duration::from_millis)
}

/// One [`World`] per role, reopened when the metadata store changed.
struct Worlds {
    warehouses: Arc<crate::Warehouses>,
    slots: Mutex<HashMap<Role, Arc<World>>>,
}

fn internal(message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".into(),
        "XX000".into(),
        message,
    )))
}

impl Worlds {
    fn get(&self, role: Role) -> PgWireResult<Arc<World>> {
        let generation = self.warehouses.generation().map_err(internal)?;
        if let Some(world) = self
            .slots
            .lock()
            .map_err(|_| internal("a session failed to open".into()))?
            .get(&role)
            .filter(|w| w.generation == generation)
        {
            return Ok(world.clone());
        }
        let world = Arc::new(self.open(role, generation)?);
        self.slots
            .lock()
            .map_err(|_| internal("a session failed to open".into()))?
            .insert(role, world.clone());
        Ok(world)
    }

    fn open(&self, role: Role, generation: i64) -> PgWireResult<World> {
        let warehouse = self.warehouses.open(generation).map_err(internal)?;
        let ctx: SessionContext = warehouse.session().clone();
        let (database, default_schema) = {
            let state = ctx.state();
            let options = &state.config().options().catalog;
            (
                options.default_catalog.clone(),
                options.default_schema.clone(),
            )
        };
        served::install(&ctx, &database, role).map_err(internal)?;
        compat::register(&ctx);
        let guard = Arc::new(Guard {
            role,
            default_schema,
            system_tables: served::system_tables(),
        });
        let hooks: Vec<Arc<dyn QueryHook>> = vec![
            guard,
            Arc::new(CursorStatementHook),
            Arc::new(SetShowHook),
            Arc::new(TransactionStatementHook),
        ];
        let ctx = Arc::new(ctx);
        Ok(World {
            service: Arc::new(DfSessionService::new_with_hooks(ctx.clone(), hooks.clone())),
            ctx,
            reader: parse::SqlReader::new(served::system_tables()),
            hooks,
            generation,
            database,
            system_tables: served::system_tables(),
        })
    }

    fn for_client<C: ClientInfo + ?Sized>(&self, client: &C) -> PgWireResult<Arc<World>> {
        let login = client.session_extensions().get::<Login>().ok_or_else(|| {
            PgWireError::UserError(Box::new(ErrorInfo::new(
                "FATAL".into(),
                "28000".into(),
                "not logged in".into(),
            )))
        })?;
        self.get(login.role)
    }

    /// Any open world: describing a parsed statement needs no session.
    fn any(&self) -> PgWireResult<Arc<World>> {
        self.slots
            .lock()
            .map_err(|_| internal("a session failed to open".into()))?
            .values()
            .next()
            .cloned()
            .ok_or_else(|| internal("no session is open".into()))
    }
}

/// Checks each statement before anything plans it, and answers `SAVEPOINT` and `RELEASE`
/// (there are no writes to undo).
struct Guard {
    role: Role,
    default_schema: String,
    system_tables: std::collections::HashSet<String>,
}

impl Guard {
    fn check(&self, statement: &Statement, client: &dyn ClientInfo) -> PgWireResult<()> {
        guard::check(statement, self.role, &self.default_schema, &|t| {
            self.system_tables.contains(&t.to_lowercase())
        })
        .inspect_err(|e| {
            let user = client.metadata().get("user").cloned().unwrap_or_default();
            tracing::warn!(user, role = self.role.as_str(), error = %e, statement = %statement, "postgres wire: statement refused");
        })
    }
}

fn savepoint_tag(statement: &Statement) -> Option<Response> {
    match statement {
        Statement::Savepoint { .. } => Some(Response::Execution(Tag::new("SAVEPOINT"))),
        Statement::ReleaseSavepoint { .. } => Some(Response::Execution(Tag::new("RELEASE"))),
        _ => None,
    }
}

#[async_trait]
impl QueryHook for Guard {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        _ctx: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        if let Err(e) = self.check(statement, client) {
            return Some(Err(e));
        }
        if let Some(schemas) = search_path::assignment(statement) {
            search_path::remember(client, &schemas);
            return Some(Ok(Response::Execution(Tag::new("SET"))));
        }
        savepoint_tag(statement).map(Ok)
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        _ctx: &SessionContext,
        client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        if let Err(e) = self.check(statement, client) {
            return Some(Err(e));
        }
        let answered =
            savepoint_tag(statement).is_some() || search_path::assignment(statement).is_some();
        answered.then(|| {
            Ok(LogicalPlan::EmptyRelation(
                datafusion::logical_expr::EmptyRelation {
                    produce_one_row: false,
                    schema: Arc::new(datafusion::common::DFSchema::empty()),
                },
            ))
        })
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        _plan: &LogicalPlan,
        _params: &ParamValues,
        _ctx: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        if let Some(schemas) = search_path::assignment(statement) {
            search_path::remember(client, &schemas);
            return Some(Ok(Response::Execution(Tag::new("SET"))));
        }
        savepoint_tag(statement).map(Ok)
    }
}

/// Queries, simple and extended, each run in its role's session.
struct Queries {
    worlds: Arc<Worlds>,
}

type ParsedStatement = <DfSessionService as ExtendedQueryHandler>::Statement;

#[async_trait]
impl SimpleQueryHandler for Queries {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo
            + ClientPortalStore
            + futures::Sink<PgWireBackendMessage>
            + Unpin
            + Send
            + Sync,
        C::PortalStore: PortalStore,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as futures::Sink<PgWireBackendMessage>>::Error>,
    {
        let world = self.worlds.for_client(client)?;
        let statements = world.read(query, client)?;
        if statements.is_empty() {
            return Ok(vec![Response::EmptyQuery]);
        }
        let mut results = Vec::with_capacity(statements.len());
        'statements: for statement in statements {
            for hook in &world.hooks {
                if let Some(result) = hook
                    .handle_simple_query(&statement, &world.ctx, client)
                    .await
                {
                    results.push(result?);
                    continue 'statements;
                }
            }
            let plan = world.plan(&statement, client).await?;
            let run = world.ctx.execute_logical_plan(plan);
            let frame = match statement_timeout(client) {
                Some(limit) => tokio::time::timeout(limit, run).await.map_err(|_| {
                    PgWireError::UserError(Box::new(ErrorInfo::new(
                        "ERROR".into(),
                        "57014".into(),
                        "canceling statement due to statement timeout".into(),
                    )))
                })?,
                None => run.await,
            }
            .map_err(api)?;
            let format = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
            results.push(Response::Query(
                encode_dataframe(frame, &Format::UnifiedText, Some(format)).await?,
            ));
        }
        Ok(results)
    }
}

#[async_trait]
impl ExtendedQueryHandler for Queries {
    type Statement = ParsedStatement;
    type QueryParser = RoleParser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        Arc::new(RoleParser {
            worlds: self.worlds.clone(),
        })
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Self::Statement>,
        max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo
            + ClientPortalStore
            + futures::Sink<PgWireBackendMessage>
            + Unpin
            + Send
            + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as futures::Sink<PgWireBackendMessage>>::Error>,
    {
        let world = self.worlds.for_client(client)?;
        <DfSessionService as ExtendedQueryHandler>::do_query(
            &world.service,
            client,
            portal,
            max_rows,
        )
        .await
    }
}

/// Parses prepared statements in the session of the client's role.
struct RoleParser {
    worlds: Arc<Worlds>,
}

#[async_trait]
impl QueryParser for RoleParser {
    type Statement = ParsedStatement;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Option<Self::Statement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let world = self.worlds.for_client(client)?;
        let mut statements = world.read(sql, client)?;
        if statements.is_empty() {
            return Ok(None);
        }
        let statement = statements.remove(0);
        let plan = world.plan(&statement, client).await?;
        Ok(Some((statement.to_string(), Some((statement, plan)))))
    }

    fn get_parameter_types(&self, stmt: &Self::Statement) -> PgWireResult<Vec<Type>> {
        self.worlds
            .any()?
            .service
            .query_parser()
            .get_parameter_types(stmt)
    }

    fn get_result_schema(
        &self,
        stmt: &Self::Statement,
        column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        self.worlds
            .any()?
            .service
            .query_parser()
            .get_result_schema(stmt, column_format)
    }
}
