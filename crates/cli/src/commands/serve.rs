//! `strata serve`: the web UI (see `strata_server::http`) and, with `--pg`, the Postgres wire
//! protocol (see `strata_server::pg`), over the target's catalog.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow};
use clap::Args;

use crate::GlobalArgs;
use crate::context::load_project;
use crate::report::Console;

/// Options of `strata serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The address of the web UI.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub http: String,
    /// Also serve the Postgres wire protocol at this address (e.g. 127.0.0.1:5433), for BI
    /// tools and drivers; read-only, SCRAM-SHA-256 logins.
    #[arg(long, value_name = "ADDR")]
    pub pg: Option<String>,
    /// Serve without a login, for working on this machine: loopback addresses only.
    #[arg(long)]
    pub dev: bool,
    /// Memory for gold tables, in MiB: each is read once per build, then served from memory
    /// with an index for filtered columns; tables that do not fit are read from disk. 0 turns
    /// it off.
    #[arg(long, value_name = "MIB", default_value_t = 1024)]
    pub cache_mb: usize,
}

/// Run the command until Ctrl-C.
pub async fn serve(global: &GlobalArgs, args: &ServeArgs) -> Result<ExitCode> {
    let project = std::sync::Arc::new(load_project(global)?);
    let addr: SocketAddr = args.http.parse().with_context(|| {
        format!(
            "`--http {}` is not an address such as 127.0.0.1:8080",
            args.http
        )
    })?;
    let pg_addr: Option<SocketAddr> = args
        .pg
        .as_deref()
        .map(|pg| {
            pg.parse()
                .with_context(|| format!("`--pg {pg}` is not an address such as 127.0.0.1:5433"))
        })
        .transpose()?;
    let meta = crate::context::open_meta(&project)?;
    let opener_project = project.clone();
    let opener: strata_server::Opener = std::sync::Arc::new(move || {
        crate::context::open_warehouse(&opener_project)
            .map(|(w, _)| w)
            .map_err(|e| e.to_string())
    });
    let warehouses =
        strata_server::Warehouses::new(opener, meta.clone(), args.cache_mb.saturating_mul(1 << 20));
    let opts = strata_server::http::HttpOptions {
        addr,
        dev: args.dev,
        project,
        meta: meta.clone(),
        warehouses: warehouses.clone(),
    };
    strata_server::http::check(&opts).map_err(|e| anyhow!(e))?;
    let pg_opts = pg_addr.map(|addr| strata_server::pg::PgOptions {
        addr,
        dev: args.dev,
        meta,
        warehouses,
    });
    if let Some(pg) = &pg_opts {
        strata_server::pg::check(pg).map_err(|e| anyhow!(e))?;
    }
    let console = Console::new(global);
    let dev_note = if args.dev {
        " in dev mode: no login, this machine only"
    } else {
        ""
    };
    console.info(&format!(
        "Serving the web UI at http://{addr}/{dev_note} (Ctrl-C to stop)"
    ));
    // The first to end (Ctrl-C, or a server failing) stops the others.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let stop = &stop;
    let until_stopped = || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.changed().await;
        }
    };
    let pg = async {
        match pg_opts {
            Some(opts) => {
                console.info(&format!(
                    "Serving the Postgres wire protocol at {} (psql -h {} -p {} -U USER){dev_note}",
                    opts.addr,
                    opts.addr.ip(),
                    opts.addr.port()
                ));
                let ended = strata_server::pg::serve(opts, until_stopped()).await;
                let _ = stop.send(true);
                ended
            }
            None => Ok(()),
        }
    };
    let http = async {
        let ended = strata_server::http::serve(opts, until_stopped()).await;
        let _ = stop.send(true);
        ended
    };
    let ctrl_c = async {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = until_stopped() => {}
        }
        let _ = stop.send(true);
    };
    let (http, pg, ()) = tokio::join!(http, pg, ctrl_c);
    http.map_err(|e| anyhow!(e))?;
    pg.map_err(|e| anyhow!(e))?;
    console.info("Stopped serving");
    Ok(ExitCode::SUCCESS)
}
