//! `strata init` and `strata demo`: the starter project.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};

use crate::GlobalArgs;
use crate::report::Console;

/// The starter project's files, relative to its root.
const STARTER: &[(&str, &str)] = &[
    ("strata.yml", include_str!("../../starter/strata.yml")),
    ("profiles.yml", include_str!("../../starter/profiles.yml")),
    (".gitignore", include_str!("../../starter/.gitignore")),
    (
        "data/customers.csv",
        include_str!("../../starter/data/customers.csv"),
    ),
    (
        "data/orders.csv",
        include_str!("../../starter/data/orders.csv"),
    ),
    (
        "data/payments.csv",
        include_str!("../../starter/data/payments.csv"),
    ),
    (
        "macros/cents_to_dollars.sql",
        include_str!("../../starter/macros/cents_to_dollars.sql"),
    ),
    (
        "macros/generate_schema_name.sql",
        include_str!("../../starter/macros/generate_schema_name.sql"),
    ),
    (
        "snapshots/customers_history.sql",
        include_str!("../../starter/snapshots/customers_history.sql"),
    ),
    (
        "models/docs.md",
        include_str!("../../starter/models/docs.md"),
    ),
    (
        "models/staging/sources.yml",
        include_str!("../../starter/models/staging/sources.yml"),
    ),
    (
        "models/staging/stg_customers.sql",
        include_str!("../../starter/models/staging/stg_customers.sql"),
    ),
    (
        "models/staging/stg_orders.sql",
        include_str!("../../starter/models/staging/stg_orders.sql"),
    ),
    (
        "models/staging/stg_payments.sql",
        include_str!("../../starter/models/staging/stg_payments.sql"),
    ),
    (
        "models/marts/marts.yml",
        include_str!("../../starter/models/marts/marts.yml"),
    ),
    (
        "models/marts/orders.sql",
        include_str!("../../starter/models/marts/orders.sql"),
    ),
    (
        "models/marts/customers.sql",
        include_str!("../../starter/models/marts/customers.sql"),
    ),
    (
        "metrics/sales.yml",
        include_str!("../../starter/metrics/sales.yml"),
    ),
    (
        "dashboards/overview.yml",
        include_str!("../../starter/dashboards/overview.yml"),
    ),
];

/// Write the starter project into `dir`, which must be missing or empty.
pub fn write_starter(dir: &Path) -> Result<()> {
    if dir.exists() {
        let mut entries =
            std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
        if entries.next().is_some() {
            bail!(
                "{} already exists and is not empty\n  hint: choose a new folder, e.g. `strata init my_project`",
                dir.display()
            );
        }
    }
    for (rel, text) in STARTER {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// `strata init [dir]`.
pub fn init(global: &GlobalArgs, dir: Option<PathBuf>) -> Result<ExitCode> {
    let dir = dir.unwrap_or_else(|| PathBuf::from("strata_project"));
    write_starter(&dir)?;
    let console = Console::new(global);
    console.info(&format!("Created a starter project in {}", dir.display()));
    console.info(&format!("Next: strata --project-dir {} run", dir.display()));
    Ok(ExitCode::SUCCESS)
}

/// `strata demo [dir]`: the starter project, built and queried.
pub async fn demo(global: &GlobalArgs, dir: Option<PathBuf>) -> Result<ExitCode> {
    let dir = match dir {
        Some(d) => d,
        None => std::env::temp_dir().join(format!("strata-demo-{}", std::process::id())),
    };
    write_starter(&dir)?;
    let console = Console::new(global);
    console.info(&format!("Demo project created in {}", dir.display()));
    let mut g = global.clone();
    g.project_dir = Some(dir.clone());
    g.profiles_dir = Some(dir.clone());
    let code = super::run::run(
        &g,
        &super::run::RunArgs {
            select: Default::default(),
            event_time: Default::default(),
            fail_fast: false,
            full_refresh: false,
            empty: false,
        },
    )
    .await?;
    if code != ExitCode::SUCCESS {
        return Ok(code);
    }
    println!();
    console.info("Top customers by lifetime value (gold.customers):");
    super::show::show(
        &g,
        &super::show::ShowArgs {
            select: None,
            inline: Some(
                "select first_name, last_name, number_of_orders, lifetime_value, average_order_value \
                 from {{ ref('customers') }} order by lifetime_value desc"
                    .into(),
            ),
            limit: 5,
            output: super::show::ShowOutput::Table,
        },
    )
    .await?;
    console.info(&format!(
        "Explore it: strata --project-dir {} ls | show --select orders | run --select +customers",
        dir.display()
    ));
    Ok(ExitCode::SUCCESS)
}
