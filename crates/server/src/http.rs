//! The web UI: server-rendered HTML over the target's catalog, behind a login. Pages so far:
//! the run history (each run's nodes with their timings) and the quality report. Dashboards
//! and the data catalog join them.
//!
//! Access: a login form checks the user's argon2 hash and sets a session cookie (HttpOnly,
//! SameSite=Strict, 12 hours). `admin` sees every page; `bi_reader` sees what is served from
//! the gold layer only. `--dev` serves without a login, on a loopback address only.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Form, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use password_hash::rand_core::{OsRng, RngCore};
use strata_meta::MetaStore;
use strata_project::Project;

use crate::users::{Role, verify};

/// How long a login lasts.
const SESSION: Duration = Duration::from_secs(12 * 3600);
/// The largest request body taken (a login form is far smaller).
const BODY_LIMIT: usize = 16 * 1024;
const COOKIE: &str = "strata_session";

/// What the web UI serves.
pub struct HttpOptions {
    pub addr: SocketAddr,
    /// No login, loopback only.
    pub dev: bool,
    pub project: Arc<Project>,
    pub meta: Arc<MetaStore>,
    /// Opens the target's warehouse: once per dashboard request, so each reads the tables'
    /// latest versions.
    pub warehouse: Opener,
}

/// Opens the target's warehouse.
pub type Opener = Arc<dyn Fn() -> Result<strata_engine::EmbeddedWarehouse, String> + Send + Sync>;

struct Session {
    user: String,
    role: Role,
    until: Instant,
}

struct AppState {
    dev: bool,
    project: Arc<Project>,
    meta: Arc<MetaStore>,
    warehouse: Opener,
    sessions: Mutex<HashMap<String, Session>>,
}

/// Check the options: `--dev` binds to loopback only; without it, someone must be able to log
/// in.
pub fn check(opts: &HttpOptions) -> Result<(), String> {
    if opts.dev && !opts.addr.ip().is_loopback() {
        return Err(format!(
            "--dev serves without a login, so only on a loopback address, not {}; use --http 127.0.0.1:{}",
            opts.addr.ip(),
            opts.addr.port()
        ));
    }
    if !opts.dev && opts.meta.users().map_err(|e| e.to_string())?.is_empty() {
        return Err(
            "no one can log in: add a user first (`strata users add NAME --role admin`), or serve with --dev on this machine"
                .into(),
        );
    }
    Ok(())
}

/// The web UI's routes.
pub fn router(opts: &HttpOptions) -> Router {
    let state = Arc::new(AppState {
        dev: opts.dev,
        project: opts.project.clone(),
        meta: opts.meta.clone(),
        warehouse: opts.warehouse.clone(),
        sessions: Mutex::new(HashMap::new()),
    });
    Router::new()
        .route("/", get(home))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/runs", get(runs))
        .route("/runs/{id}", get(run))
        .route("/quality", get(quality))
        .route("/sql", get(sql_explorer))
        .route("/catalog", get(catalog))
        .route("/catalog/{id}", get(catalog_entry))
        .route("/lineage", get(lineage))
        .route("/dashboards", get(dashboards))
        .route("/dashboards/{name}", get(dashboard))
        .route("/dashboards/{name}/charts/{chart}", get(chart_csv))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

/// Serve until `shutdown` resolves.
pub async fn serve(
    opts: HttpOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    check(&opts)?;
    let listener = tokio::net::TcpListener::bind(opts.addr)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", opts.addr))?;
    axum::serve(
        listener,
        router(&opts).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
    .map_err(|e| e.to_string())
}

/// Who is asking: the session's user, or the developer in `--dev`.
fn user(state: &AppState, headers: &HeaderMap) -> Option<(String, Role)> {
    if state.dev {
        return Some(("dev".into(), Role::Admin));
    }
    let token = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(&format!("{COOKIE}=")))?
        .to_string();
    let mut sessions = state.sessions.lock().ok()?;
    let now = Instant::now();
    sessions.retain(|_, s| s.until > now);
    sessions.get(&token).map(|s| (s.user.clone(), s.role))
}

/// The page for `role`s at least: a login redirect for no one, 403 for a role without access.
fn allowed(
    state: &AppState,
    headers: &HeaderMap,
    admin_only: bool,
) -> Result<(String, Role), Box<Response>> {
    match user(state, headers) {
        None => Err(Box::new(Redirect::to("/login").into_response())),
        Some((_, Role::BiReader)) if admin_only => Err(Box::new((
            StatusCode::FORBIDDEN,
            page(
                "Not for this role",
                "",
                "<p>This page is for the <code>admin</code> role; <code>bi_reader</code> sees what is served from the gold layer.</p>",
            ),
        )
            .into_response())),
        Some(u) => Ok(u),
    }
}

async fn home(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let (name, role) = match allowed(&state, &headers, false) {
        Ok(u) => u,
        Err(r) => return *r,
    };
    let mut body = format!(
        "<p>Signed in as <b>{}</b> ({}).</p><ul>",
        esc(&name),
        role.as_str()
    );
    if role == Role::Admin {
        body.push_str(
            "<li><a href=\"/runs\">Runs</a>: every run, its nodes and their timings</li>",
        );
        body.push_str("<li><a href=\"/quality\">Data quality</a>: each check's history and metric trends</li>");
        body.push_str(
            "<li><a href=\"/sql\">SQL</a>: read-only queries, with ref() and source()</li>",
        );
    }
    body.push_str("<li><a href=\"/dashboards\">Dashboards</a></li><li><a href=\"/catalog\">Catalog</a>: tables, columns, tests</li>");
    if role == Role::Admin {
        body.push_str("<li><a href=\"/lineage\">Lineage</a>: sources to dashboards</li>");
    }
    body.push_str("</ul>");
    page(&state.project.config.name, &name, &body).into_response()
}

async fn login_page(State(state): State<Arc<AppState>>) -> Response {
    login_form(&state, StatusCode::OK, "")
}

fn login_form(state: &AppState, status: StatusCode, error: &str) -> Response {
    let error = match error {
        "" => String::new(),
        e => format!("<p class=\"bad\">{}</p>", esc(e)),
    };
    let body = format!(
        "<form method=\"post\" action=\"/login\" class=\"login\">{error}\
         <label>User <input name=\"user\" autocomplete=\"username\" required autofocus></label>\
         <label>Password <input name=\"password\" type=\"password\" autocomplete=\"current-password\" required></label>\
         <button type=\"submit\">Sign in</button></form>"
    );
    (
        status,
        page(
            &format!("Sign in · {}", state.project.config.name),
            "",
            &body,
        ),
    )
        .into_response()
}

#[derive(serde::Deserialize)]
struct LoginForm {
    user: String,
    password: String,
}

async fn login(
    State(state): State<Arc<AppState>>,
    axum::extract::ConnectInfo(from): axum::extract::ConnectInfo<SocketAddr>,
    Form(form): Form<LoginForm>,
) -> Response {
    let found = state.meta.user(&form.user).ok().flatten();
    let ok = match &found {
        Some((_, secrets)) => verify(&form.password, secrets),
        // The same work as a real check, so timing does not tell which users exist.
        None => {
            let _ = crate::users::secrets("not-a-user-password");
            false
        }
    };
    let Some((record, _)) = found.filter(|_| ok) else {
        tracing::warn!(
            "web login refused for user `{}` from {}",
            form.user,
            from.ip()
        );
        return login_form(
            &state,
            StatusCode::UNAUTHORIZED,
            "Wrong user name or password.",
        );
    };
    let role = Role::parse(&record.role).unwrap_or(Role::BiReader);
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    if let Ok(mut s) = state.sessions.lock() {
        s.insert(
            token.clone(),
            Session {
                user: record.name.clone(),
                role,
                until: Instant::now() + SESSION,
            },
        );
    }
    tracing::info!("web login of `{}` from {}", record.name, from.ip());
    let mut response = Redirect::to("/").into_response();
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        SESSION.as_secs()
    )) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

async fn logout(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Some(token) = headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split(';')
                .find_map(|c| c.trim().strip_prefix(&format!("{COOKIE}=")))
        })
        && let Ok(mut s) = state.sessions.lock()
    {
        s.remove(token);
    }
    let mut response = Redirect::to("/login").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("strata_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
    );
    response
}

async fn runs(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let (name, _) = match allowed(&state, &headers, true) {
        Ok(u) => u,
        Err(r) => return *r,
    };
    let runs = match state.meta.runs(100) {
        Ok(r) => r,
        Err(e) => return error(&e.to_string()),
    };
    let mut body = String::from(
        "<table class=\"grid\"><thead><tr><th>Run</th><th>Command</th><th>Target</th><th>Started</th><th>Status</th></tr></thead><tbody>",
    );
    for r in &runs {
        let _ = write!(
            body,
            "<tr><td><a href=\"/runs/{0}\">{1}</a></td><td><code>{2}</code></td><td>{3}</td><td>{4}</td><td><span class=\"pill {5}\">{5}</span></td></tr>",
            esc(&r.run_id),
            esc(r.run_id.get(..8).unwrap_or(&r.run_id)),
            esc(&r.args),
            esc(&r.target),
            esc(&r.started_at),
            esc(&r.status)
        );
    }
    body.push_str("</tbody></table>");
    if runs.is_empty() {
        body = "<p>No run yet: <code>strata build</code> records its first.</p>".into();
    }
    page("Runs", &name, &body).into_response()
}

async fn run(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let (name, _) = match allowed(&state, &headers, true) {
        Ok(u) => u,
        Err(r) => return *r,
    };
    let nodes = match state.meta.node_results(&id) {
        Ok(n) => n,
        Err(e) => return error(&e.to_string()),
    };
    if nodes.is_empty() {
        return not_found().await;
    }
    let longest = nodes
        .iter()
        .map(|n| n.seconds)
        .fold(0.0f64, f64::max)
        .max(1e-3);
    let mut body = String::from(
        "<table class=\"grid\"><thead><tr><th>Node</th><th>Status</th><th>Seconds</th><th></th><th>Rows</th><th>Message</th></tr></thead><tbody>",
    );
    for n in &nodes {
        let width = (160.0 * n.seconds / longest).max(1.0);
        let _ = write!(
            body,
            "<tr><td>{}</td><td><span class=\"pill {1}\">{1}</span></td><td>{2:.2}</td>\
             <td><svg width=\"160\" height=\"10\" role=\"img\" aria-label=\"{2:.2} s\"><rect width=\"{width:.1}\" height=\"10\" rx=\"2\" class=\"bar\"><title>{2:.2} s</title></rect></svg></td>\
             <td>{3}</td><td>{4}</td></tr>",
            esc(&n.unique_id),
            esc(&n.status),
            n.seconds,
            n.rows_affected.map(|r| r.to_string()).unwrap_or_default(),
            esc(n.message.as_deref().unwrap_or(""))
        );
    }
    body.push_str("</tbody></table>");
    page(&format!("Run {}", id.get(..8).unwrap_or(&id)), &name, &body).into_response()
}

async fn quality(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Err(r) = allowed(&state, &headers, true) {
        return *r;
    }
    match strata_quality::report::gather(&state.project, &state.meta) {
        Ok(nodes) => {
            let generated = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string();
            let title = format!(
                "{} ({})",
                state.project.config.name, state.project.target.name
            );
            Html(strata_quality::report::render(&title, &generated, &nodes)).into_response()
        }
        Err(e) => error(&e.to_string()),
    }
}

/// The catalog's entries a role may see: `bi_reader` the gold layer and dashboards only.
fn catalog_entries(state: &AppState, role: Role) -> Result<Vec<crate::catalog::Entry>, String> {
    let (metrics, dashboards) = definitions(state)?;
    let boards: Vec<(String, String, Vec<String>)> = dashboards
        .iter()
        .map(|d| {
            let mut models: Vec<String> = Vec::new();
            for c in &d.charts {
                match &c.source {
                    crate::dashboards::Source::Metric { metric, .. } => {
                        if let Ok(m) = crate::metrics::find(&metrics, metric) {
                            models.push(m.model.clone());
                        }
                    }
                    crate::dashboards::Source::Sql(sql) => {
                        models.extend(crate::catalog::refs_in(sql))
                    }
                }
            }
            models.sort();
            models.dedup();
            (d.name.clone(), d.title.clone(), models)
        })
        .collect();
    let all = crate::catalog::entries(&state.project, &state.meta, &boards);
    Ok(match role {
        Role::Admin => all,
        Role::BiReader => all
            .into_iter()
            .filter(|e| e.kind == "dashboard" || crate::catalog::is_gold(&e.schema))
            .collect(),
    })
}

async fn catalog(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let (name, role) = match allowed(&state, &headers, false) {
        Ok(u) => u,
        Err(r) => return *r,
    };
    match catalog_entries(&state, role) {
        Ok(entries) => page("Catalog", &name, &crate::catalog::list(&entries)).into_response(),
        Err(e) => error(&e),
    }
}

async fn catalog_entry(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let (name, role) = match allowed(&state, &headers, false) {
        Ok(u) => u,
        Err(r) => return *r,
    };
    let entries = match catalog_entries(&state, role) {
        Ok(e) => e,
        Err(e) => return error(&e),
    };
    let Some(entry) = entries.iter().find(|e| e.id == id && e.kind != "dashboard") else {
        return not_found().await;
    };
    let relation = state
        .project
        .node(&id)
        .map(|n| n.relation().clone())
        .or_else(|| state.project.sources.get(&id).map(|s| s.relation.clone()));
    // Column types from the relation itself, when it exists.
    let mut types = Vec::new();
    if let (Some(r), Ok(w)) = (relation, (state.warehouse)()) {
        use strata_engine::Warehouse;
        if let Ok(schema) = w.describe(&format!("select * from {r}")).await {
            types = schema
                .fields()
                .iter()
                .map(|f| {
                    (
                        f.name().clone(),
                        strata_engine::types::sql_type(f.data_type()),
                    )
                })
                .collect();
        }
    }
    let body = crate::catalog::detail(entry, &types, &entries);
    page(&entry.name, &name, &body).into_response()
}

async fn lineage(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let (name, _) = match allowed(&state, &headers, true) {
        Ok(u) => u,
        Err(r) => return *r,
    };
    match catalog_entries(&state, Role::Admin) {
        Ok(entries) => {
            let body = format!(
                "<p class=\"muted\">Sources and seeds on the left; each arrow goes to what reads it; dashboards on the right.</p><div class=\"scroll\">{}</div>",
                crate::catalog::lineage(&entries)
            );
            page("Lineage", &name, &body).into_response()
        }
        Err(e) => error(&e),
    }
}

/// Rows the SQL explorer shows at most.
const EXPLORER_ROWS: usize = 1000;
/// How long an explorer query may run.
const EXPLORER_TIMEOUT: Duration = Duration::from_secs(30);

/// The SQL explorer: a read-only query (Jinja with `ref()` and `source()` allowed), at most
/// [`EXPLORER_ROWS`] rows, stopped after [`EXPLORER_TIMEOUT`].
async fn sql_explorer(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    axum::extract::Query(params): axum::extract::Query<HashMap<String, String>>,
) -> Response {
    let (name, _) = match allowed(&state, &headers, true) {
        Ok(u) => u,
        Err(r) => return *r,
    };
    let sql = params
        .get("q")
        .map(|q| q.trim().to_string())
        .unwrap_or_default();
    let mut body = format!(
        "<form method=\"get\" class=\"explorer\"><textarea name=\"q\" rows=\"6\" spellcheck=\"false\" placeholder=\"select * from {{{{ ref('orders') }}}} limit 10\">{}</textarea>\
         <button type=\"submit\">Run</button> <span class=\"muted\">read-only; at most {EXPLORER_ROWS} rows; {} s</span></form>",
        esc(&sql),
        EXPLORER_TIMEOUT.as_secs()
    );
    if !sql.is_empty() {
        let result = match (state.warehouse)() {
            Ok(w) => {
                let started = Instant::now();
                match tokio::time::timeout(
                    EXPLORER_TIMEOUT,
                    query_rows(&state, &w, &sql, EXPLORER_ROWS),
                )
                .await
                {
                    Ok(Ok(rows)) => {
                        let n = rows.cells.len();
                        let table = crate::dashboards::render(
                            &crate::dashboards::Chart {
                                title: String::new(),
                                kind: "table".into(),
                                source: crate::dashboards::Source::Sql(String::new()),
                                stacked: false,
                            },
                            &rows,
                        );
                        format!(
                            "<p class=\"muted\">{n} row{}{} in {:.2} s</p>{table}",
                            if n == 1 { "" } else { "s" },
                            if n == EXPLORER_ROWS {
                                " (the first)"
                            } else {
                                ""
                            },
                            started.elapsed().as_secs_f64()
                        )
                    }
                    Ok(Err(e)) => format!("<pre class=\"bad\">{}</pre>", esc(&e)),
                    Err(_) => format!(
                        "<p class=\"bad\">The query ran longer than {} s and was stopped.</p>",
                        EXPLORER_TIMEOUT.as_secs()
                    ),
                }
            }
            Err(e) => format!("<pre class=\"bad\">{}</pre>", esc(&e)),
        };
        tracing::info!("SQL explorer query by `{name}`: {}", sql.replace('\n', " "));
        body.push_str(&result);
    }
    page("SQL", &name, &body).into_response()
}

/// The project's metrics and dashboards, read afresh (editing them needs no restart).
fn definitions(
    state: &AppState,
) -> Result<
    (
        Vec<crate::metrics::Metric>,
        Vec<crate::dashboards::Dashboard>,
    ),
    String,
> {
    let names: Vec<&str> = state
        .project
        .models
        .values()
        .map(|m| m.name.as_str())
        .chain(state.project.seeds.values().map(|s| s.name.as_str()))
        .collect();
    let metrics = crate::metrics::load(&state.project.root, &names).map_err(|e| e.to_string())?;
    let dashboards =
        crate::dashboards::load(&state.project.root, &metrics).map_err(|e| e.to_string())?;
    Ok((metrics, dashboards))
}

async fn dashboards(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let (name, _) = match allowed(&state, &headers, false) {
        Ok(u) => u,
        Err(r) => return *r,
    };
    let (_, list) = match definitions(&state) {
        Ok(d) => d,
        Err(e) => return error(&e),
    };
    let mut body = String::from("<ul>");
    for d in &list {
        let _ = write!(
            body,
            "<li><a href=\"/dashboards/{}\">{}</a> <span class=\"muted\">{}</span></li>",
            esc(&d.name),
            esc(&d.title),
            esc(&d.description)
        );
    }
    body.push_str("</ul>");
    if list.is_empty() {
        body = format!(
            "<p>No dashboards yet: define them in <code>{}/*.yml</code>.</p>",
            crate::dashboards::FOLDER
        );
    }
    page("Dashboards", &name, &body).into_response()
}

/// The filters' values, from the query string.
fn chosen(
    d: &crate::dashboards::Dashboard,
    params: &HashMap<String, String>,
) -> crate::dashboards::Chosen {
    let mut c = crate::dashboards::Chosen::default();
    let value = |k: &str| params.get(k).filter(|v| !v.trim().is_empty()).cloned();
    for f in &d.filters {
        match f {
            crate::dashboards::Filter::DateRange { .. } => {
                c.start = value("start");
                c.end = value("end");
            }
            crate::dashboards::Filter::Select { name, dimension } => {
                if let Some(v) = value(name) {
                    c.selected.push((dimension.clone(), v));
                }
            }
        }
    }
    c
}

async fn dashboard(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    axum::extract::Query(params): axum::extract::Query<HashMap<String, String>>,
) -> Response {
    let (user_name, _) = match allowed(&state, &headers, false) {
        Ok(u) => u,
        Err(r) => return *r,
    };
    let (metrics, list) = match definitions(&state) {
        Ok(d) => d,
        Err(e) => return error(&e),
    };
    let Some(d) = list.iter().find(|d| d.name == name) else {
        return not_found().await;
    };
    let warehouse = match (state.warehouse)() {
        Ok(w) => w,
        Err(e) => return error(&e),
    };
    let chosen = chosen(d, &params);
    let query_string: String = params
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{}={}", url_encode(k), url_encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    // The filters, as a form that reloads the page.
    let mut body = format!("<p class=\"muted\">{}</p>", esc(&d.description));
    if !d.filters.is_empty() {
        body.push_str("<form method=\"get\" class=\"filters\">");
        for f in &d.filters {
            match f {
                crate::dashboards::Filter::DateRange { .. } => {
                    let _ = write!(
                        body,
                        "<label>From <input type=\"date\" name=\"start\" value=\"{}\"></label><label>Before <input type=\"date\" name=\"end\" value=\"{}\"></label>",
                        esc(chosen.start.as_deref().unwrap_or("")),
                        esc(chosen.end.as_deref().unwrap_or(""))
                    );
                }
                crate::dashboards::Filter::Select { name, dimension } => {
                    let values = dimension_values(&state, &warehouse, &metrics, dimension).await;
                    let current = params.get(name).cloned().unwrap_or_default();
                    let _ = write!(
                        body,
                        "<label>{} <select name=\"{}\"><option value=\"\">all</option>",
                        esc(name),
                        esc(name)
                    );
                    for v in values {
                        let _ = write!(
                            body,
                            "<option{}>{}</option>",
                            if v == current { " selected" } else { "" },
                            esc(&v)
                        );
                    }
                    body.push_str("</select></label>");
                }
            }
        }
        body.push_str("<button type=\"submit\">Apply</button></form>");
    }
    body.push_str("<div class=\"charts\">");
    for (i, chart) in d.charts.iter().enumerate() {
        let drawn = match chart_rows(&state, &warehouse, &metrics, chart, &chosen).await {
            Ok(rows) => crate::dashboards::render(chart, &rows),
            Err(e) => format!("<p class=\"bad\">{}</p>", esc(&e)),
        };
        let _ = write!(
            body,
            "<figure class=\"card kind-{}\"><figcaption><b>{}</b> <a class=\"csv\" href=\"/dashboards/{}/charts/{i}?{}\">CSV</a></figcaption>{drawn}</figure>",
            esc(&chart.kind),
            esc(&chart.title),
            esc(&d.name),
            esc(&query_string)
        );
    }
    body.push_str("</div>");
    page(&d.title, &user_name, &body).into_response()
}

async fn chart_csv(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path((name, chart)): Path<(String, usize)>,
    axum::extract::Query(params): axum::extract::Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = allowed(&state, &headers, false) {
        return *r;
    }
    let (metrics, list) = match definitions(&state) {
        Ok(d) => d,
        Err(e) => return error(&e),
    };
    let Some((d, c)) = list
        .iter()
        .find(|d| d.name == name)
        .and_then(|d| d.charts.get(chart).map(|c| (d, c)))
    else {
        return not_found().await;
    };
    let warehouse = match (state.warehouse)() {
        Ok(w) => w,
        Err(e) => return error(&e),
    };
    match chart_rows(&state, &warehouse, &metrics, c, &chosen(d, &params)).await {
        Ok(rows) => {
            let mut csv = rows
                .columns
                .iter()
                .map(|c| csv_cell(c))
                .collect::<Vec<_>>()
                .join(",");
            csv.push('\n');
            for r in &rows.cells {
                csv.push_str(
                    &r.iter()
                        .map(|(t, _)| csv_cell(t))
                        .collect::<Vec<_>>()
                        .join(","),
                );
                csv.push('\n');
            }
            let file = format!("{}-{chart}.csv", d.name);
            let mut response = csv.into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            );
            if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{file}\"")) {
                response
                    .headers_mut()
                    .insert(header::CONTENT_DISPOSITION, v);
            }
            response
        }
        Err(e) => error(&e),
    }
}

fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Run a chart's query and read its rows.
async fn chart_rows(
    state: &AppState,
    warehouse: &strata_engine::EmbeddedWarehouse,
    metrics: &[crate::metrics::Metric],
    chart: &crate::dashboards::Chart,
    chosen: &crate::dashboards::Chosen,
) -> Result<crate::dashboards::Rows, String> {
    let sql = chart.sql(metrics, chosen)?;
    query_rows(state, warehouse, &sql, CHART_ROWS).await
}

/// Rows a chart reads at most.
const CHART_ROWS: usize = 10_000;

/// Values of a dimension for a pick-list: from the first metric that has it.
async fn dimension_values(
    state: &AppState,
    warehouse: &strata_engine::EmbeddedWarehouse,
    metrics: &[crate::metrics::Metric],
    dimension: &str,
) -> Vec<String> {
    let Some((m, d)) = metrics.iter().find_map(|m| {
        m.dimensions
            .iter()
            .find(|d| d.name == dimension)
            .map(|d| (m, d))
    }) else {
        return Vec::new();
    };
    let sql = format!(
        "select distinct {} as v from {{{{ ref('{}') }}}} where {} is not null order by 1 limit 200",
        d.expr, m.model, d.expr
    );
    query_rows(state, warehouse, &sql, 200)
        .await
        .map(|r| {
            r.cells
                .into_iter()
                .filter_map(|c| c.into_iter().next().map(|x| x.0))
                .collect()
        })
        .unwrap_or_default()
}

/// Compile SQL (with `ref()`) and read its rows as text and numbers.
async fn query_rows(
    state: &AppState,
    warehouse: &strata_engine::EmbeddedWarehouse,
    sql: &str,
    limit: usize,
) -> Result<crate::dashboards::Rows, String> {
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::{DataType, Float64Type};
    use futures::TryStreamExt;
    use strata_engine::Warehouse;
    let compiled = strata_project::compile::Compiler::new(state.project.clone())
        .with_introspector(warehouse.introspector())
        .compile_inline(sql)
        .map_err(|e| e.to_string())?;
    let batches: Vec<datafusion::arrow::record_batch::RecordBatch> = warehouse
        .query(&compiled, Some(limit))
        .await
        .map_err(|e| e.to_string())?
        .try_collect()
        .await
        .map_err(|e| strata_engine::error::describe_datafusion_error(&e))?;
    let mut rows = crate::dashboards::Rows::default();
    let Some(first) = batches.first() else {
        return Ok(rows);
    };
    rows.columns = first
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let options = datafusion::arrow::util::display::FormatOptions::default().with_null("");
    for b in &batches {
        let mut columns = Vec::new();
        for c in b.columns() {
            let text =
                datafusion::arrow::util::display::ArrayFormatter::try_new(c.as_ref(), &options)
                    .map_err(|e| e.to_string())?;
            let numbers = match c.data_type().is_numeric() {
                true => datafusion::arrow::compute::cast(c, &DataType::Float64).ok(),
                false => None,
            };
            columns.push((text, numbers));
        }
        for row in 0..b.num_rows() {
            rows.cells.push(
                columns
                    .iter()
                    .map(|(text, numbers)| {
                        let n = numbers.as_ref().and_then(|a| {
                            a.as_primitive_opt::<Float64Type>()
                                .filter(|p| p.is_valid(row))
                                .map(|p| p.value(row))
                        });
                        (text.value(row).to_string(), n)
                    })
                    .collect(),
            );
        }
    }
    Ok(rows)
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        page(
            "Not found",
            "",
            "<p>There is no such page. <a href=\"/\">Home</a></p>",
        ),
    )
        .into_response()
}

fn error(message: &str) -> Response {
    tracing::error!("web UI: {message}");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        page(
            "Something went wrong",
            "",
            &format!("<pre>{}</pre>", esc(message)),
        ),
    )
        .into_response()
}

/// A page in the UI's frame.
fn page(title: &str, user: &str, body: &str) -> Html<String> {
    let nav = match user {
        "" => String::new(),
        u => format!(
            "<nav><a href=\"/\">Home</a> <a href=\"/dashboards\">Dashboards</a> <a href=\"/catalog\">Catalog</a> <a href=\"/lineage\">Lineage</a> <a href=\"/runs\">Runs</a> <a href=\"/quality\">Quality</a> <a href=\"/sql\">SQL</a>\
             <form method=\"post\" action=\"/logout\"><span>{}</span> <button type=\"submit\">Sign out</button></form></nav>",
            esc(u)
        ),
    };
    Html(format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · Strata</title><style>{STYLE}</style></head><body><header><b>Strata</b>{nav}</header>\
         <main><h1>{}</h1>{body}</main></body></html>\n",
        esc(title),
        esc(title)
    ))
}

fn esc(s: &str) -> String {
    strata_quality::report::esc(s)
}

const STYLE: &str = "
*{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;color:#1d2430;background:#f8fafc}
header{display:flex;gap:18px;align-items:center;padding:10px 24px;background:#fff;border-bottom:1px solid #e5e7eb}
nav{display:flex;gap:14px;align-items:center;flex:1}nav form{margin-left:auto}a{color:#1d4ed8;text-decoration:none}
main{padding:12px 24px 40px;max-width:1200px}h1{font-size:20px}table.grid{border-collapse:collapse;width:100%;background:#fff}
table.grid th,table.grid td{text-align:left;padding:5px 8px;border-bottom:1px solid #e5e7eb;overflow-wrap:anywhere;vertical-align:top}table.grid th{background:#f9fafb}
.pill{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600;background:#e5e7eb}
.pill.success,.pill.pass{background:#dcfce7;color:#15803d}.pill.warn{background:#fef3c7;color:#b45309}
.pill.error,.pill.fail,.pill.cancelled,.pill.interrupted{background:#fee2e2;color:#b91c1c}.bar{fill:#2563eb}
.login{display:flex;flex-direction:column;gap:10px;max-width:320px}.login input{display:block;width:100%;padding:6px}.bad{color:#b91c1c}
button{padding:5px 12px}.muted{color:#6b7280}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(420px,1fr));gap:14px}
.card{margin:0;background:#fff;border:1px solid #e5e7eb;border-radius:8px;padding:10px 12px}.card figcaption{display:flex;justify-content:space-between;margin-bottom:6px}
.csv{font-size:12px}.chart{width:100%;height:auto}.chart .grid{stroke:#e5e7eb}.chart .axis{font-size:10px;fill:#6b7280}
.line{fill:none;stroke-width:2}.area{opacity:.35;stroke:none}
.s0{fill:#2563eb;stroke:#2563eb}.s1{fill:#f59e0b;stroke:#f59e0b}.s2{fill:#10b981;stroke:#10b981}.s3{fill:#ef4444;stroke:#ef4444}.s4{fill:#8b5cf6;stroke:#8b5cf6}.s5{fill:#0891b2;stroke:#0891b2}
polyline.line{fill:none}.legend{display:flex;gap:12px;font-size:12px;flex-wrap:wrap}.legend i{display:inline-block;width:10px;height:10px;margin-right:4px;border-radius:2px}
i.s0{background:#2563eb}i.s1{background:#f59e0b}i.s2{background:#10b981}i.s3{background:#ef4444}i.s4{background:#8b5cf6}i.s5{background:#0891b2}
.kpi .value{font-size:34px;font-weight:700}.up{color:#15803d}.down{color:#b91c1c}.num{text-align:right}
.filters{display:flex;gap:12px;align-items:end;margin:8px 0 14px;flex-wrap:wrap}
.explorer textarea{width:100%;font:13px ui-monospace,monospace;padding:8px}
.scroll{overflow:auto;background:#fff;border:1px solid #e5e7eb;border-radius:8px}.lineage text{font-size:12px;fill:#1d2430;pointer-events:none}
.lineage .edge{fill:none;stroke:#9ca3af;stroke-width:1.2}.lineage .node{fill:#eff6ff;stroke:#93c5fd}.lineage .node.source{fill:#f0fdf4;stroke:#86efac}
.lineage .node.seed{fill:#fefce8;stroke:#fde047}.lineage .node.snapshot{fill:#faf5ff;stroke:#d8b4fe}.lineage .node.dashboard{fill:#fff7ed;stroke:#fdba74}
";
