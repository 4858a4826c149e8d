//! Serving gold to people and tools: metrics defined once in `metrics/*.yml` and queried by
//! name (`strata metrics query MRR --by month`), so "MRR" means one thing everywhere; users
//! and roles; the web UI (`strata serve`).

pub mod cache;
pub mod catalog;
pub mod dashboards;
pub mod http;
pub mod metrics;
pub mod pg;
pub mod users;
pub mod warehouses;

pub use warehouses::{Opener, Warehouses};

/// Whether a server may start: `--dev` (no login) binds to loopback only; without it,
/// someone must be able to log in. `flag` is the address's option (`--http`), `role` the role
/// the hint suggests.
pub(crate) fn check_access(
    dev: bool,
    addr: std::net::SocketAddr,
    meta: &strata_meta::MetaStore,
    flag: &str,
    role: &str,
) -> Result<(), String> {
    if dev && !addr.ip().is_loopback() {
        return Err(format!(
            "--dev serves without a login, so only on a loopback address, not {}; use {flag} 127.0.0.1:{}",
            addr.ip(),
            addr.port()
        ));
    }
    if !dev && meta.users().map_err(|e| e.to_string())?.is_empty() {
        return Err(format!(
            "no one can log in: add a user first (`strata users add NAME --role {role}`), or serve with --dev on this machine"
        ));
    }
    Ok(())
}

/// Listen on `addr`, or say why not.
pub(crate) async fn listen(addr: std::net::SocketAddr) -> Result<tokio::net::TcpListener, String> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))
}
