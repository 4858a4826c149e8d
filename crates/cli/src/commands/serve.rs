//! `strata serve`: the web UI over the target's catalog (see `strata_server::http`).

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
    /// Serve without a login, for working on this machine: loopback addresses only.
    #[arg(long)]
    pub dev: bool,
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
    let meta = std::sync::Arc::new(strata_meta::MetaStore::open(&project.target.metadata)?);
    let opener_project = project.clone();
    let opts = strata_server::http::HttpOptions {
        addr,
        dev: args.dev,
        project,
        meta,
        warehouse: std::sync::Arc::new(move || {
            crate::context::open_warehouse(&opener_project)
                .map(|(w, _)| w)
                .map_err(|e| e.to_string())
        }),
    };
    strata_server::http::check(&opts).map_err(|e| anyhow!(e))?;
    let console = Console::new(global);
    console.info(&format!(
        "Serving the web UI at http://{addr}/{} (Ctrl-C to stop)",
        if args.dev {
            " in dev mode: no login, this machine only"
        } else {
            ""
        }
    ));
    strata_server::http::serve(opts, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
    .map_err(|e| anyhow!(e))?;
    console.info("Stopped serving");
    Ok(ExitCode::SUCCESS)
}
