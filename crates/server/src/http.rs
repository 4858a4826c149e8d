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
        sessions: Mutex::new(HashMap::new()),
    });
    Router::new()
        .route("/", get(home))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/runs", get(runs))
        .route("/runs/{id}", get(run))
        .route("/quality", get(quality))
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
            "<nav><a href=\"/\">Home</a> <a href=\"/runs\">Runs</a> <a href=\"/quality\">Quality</a>\
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
button{padding:5px 12px}
";
