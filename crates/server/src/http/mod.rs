//! The web UI: server-rendered HTML and SVG over the target's catalog, behind a login.
//! Pages: dashboards (`dashboards`), and the run history, data quality, catalog, lineage and
//! SQL explorer (`pages`).
//!
//! Access: a login form checks the user's argon2 hash and sets a session cookie (HttpOnly,
//! SameSite=Strict, 12 hours). `admin` sees every page; `bi_reader` sees dashboards and the
//! gold layer's catalog only. `--dev` serves without a login, on a loopback address only.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Form, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use password_hash::rand_core::{OsRng, RngCore};
use strata_meta::MetaStore;
use strata_project::Project;

use crate::users::{Role, verify};

mod dashboards;
mod pages;
mod pipelines;

use dashboards::{chart_csv, dashboard, dashboards};
use pages::{catalog, catalog_entry, lineage, quality, run, runs, sql_explorer};

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
    /// The warehouse, reopened when the metadata store changed.
    pub warehouses: Arc<crate::Warehouses>,
}

struct Session {
    user: String,
    role: Role,
    until: Instant,
}

struct AppState {
    dev: bool,
    project: Arc<Project>,
    meta: Arc<MetaStore>,
    warehouses: Arc<crate::Warehouses>,
    sessions: Mutex<HashMap<String, Session>>,
}

/// Check the options: `--dev` binds to loopback only; without it, someone must be able to log
/// in.
pub fn check(opts: &HttpOptions) -> Result<(), String> {
    crate::check_access(opts.dev, opts.addr, &opts.meta, "--http", "admin")
}

/// The web UI's routes.
pub fn router(opts: &HttpOptions) -> Router {
    let state = Arc::new(AppState {
        dev: opts.dev,
        project: opts.project.clone(),
        meta: opts.meta.clone(),
        warehouses: opts.warehouses.clone(),
        sessions: Mutex::new(HashMap::new()),
    });
    Router::new()
        .route("/", get(home))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/runs", get(runs))
        .route("/runs/{id}", get(run))
        .route("/pipelines/runs/{id}", get(pipelines::run))
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
    let listener = crate::listen(opts.addr).await?;
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
