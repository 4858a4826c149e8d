//! `strata demo [DIR]`: the SaaS example end to end — the project written, its raw data
//! generated, loaded into bronze, built into silver and gold, tested — and its headline
//! numbers printed.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use datafusion::arrow::array::AsArray;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type};

use super::init::{is_missing_or_empty, templates, write_template};
use crate::GlobalArgs;
use crate::report::Console;

/// Run the demo in `dir` (default ./strata-demo). A folder holding the demo from an earlier
/// run is used as it is: the data is the same, so nothing new loads, and the build runs again.
pub async fn demo(global: &GlobalArgs, dir: Option<PathBuf>) -> Result<ExitCode> {
    let started = Instant::now();
    let dir = dir.unwrap_or_else(|| PathBuf::from("strata-demo"));
    let console = Console::new(global);
    if is_missing_or_empty(&dir)? {
        write_template(&dir, templates::SAAS)?;
        console.info(&format!(
            "[1/4] Wrote the SaaS example project (examples/saas) to {}",
            dir.display()
        ));
    } else if is_saas_project(&dir) {
        console.info(&format!(
            "[1/4] Using the SaaS example project already in {}",
            dir.display()
        ));
    } else {
        bail!(
            "{} already exists and holds something other than the demo\n  hint: give the demo a new folder: `strata demo my-demo`",
            dir.display()
        );
    }

    let mut g = global.clone();
    g.project_dir = Some(dir.clone());
    g.profiles_dir = Some(dir.clone());

    console.info("[2/4] Generating two years of a SaaS product's data (scale 1: 1,000 accounts)");
    super::datagen::generate_saas(
        &g,
        &super::datagen::SaasArgs {
            scale: 1.0,
            out: dir.join("data/raw"),
            seed: 1,
        },
    )?;

    console.info(
        "[3/4] Loading bronze, building silver and gold, and running every test (strata build --ingest)",
    );
    let code = super::run::build(
        &g,
        &super::run::BuildArgs {
            select: Default::default(),
            event_time: Default::default(),
            fail_fast: false,
            full_refresh: false,
            empty: false,
            ingest: true,
            resource_type: Vec::new(),
            exclude_resource_type: Vec::new(),
        },
    )
    .await?;
    if code != ExitCode::SUCCESS {
        console.info(&format!(
            "The build did not succeed; see above, and the log in {}",
            dir.join("logs").display()
        ));
        return Ok(code);
    }

    console.info("[4/4] The headline numbers (gold.mart_mrr)");
    let months = headline(&g).await?;
    println!();
    print!("{}", months.table());
    println!();
    println!("{}", months.churn_summary());
    println!();
    console.info(&format!(
        "Done in {:.1}s. Explore it:",
        started.elapsed().as_secs_f64()
    ));
    let d = dir.display();
    if !on_path("strata") {
        println!(
            "  (`strata` is not on your PATH yet: `cargo install --path crates/cli` from the clone puts it there)"
        );
    }
    for line in [
        format!("  cd {d}"),
        "  strata show --select mart_mrr --limit 24         # every month".into(),
        "  strata metrics query mrr_movement --by quarter --dimension movement".into(),
        "  strata show --inline \"select * from {{ ref('dim_account') }} where status = 'churned'\"".into(),
        "  strata users add admin --role admin && strata serve   # dashboards at http://127.0.0.1:8080/dashboards/mrr".into(),
        "  strata trigger daily                              # the pipeline: ingest, transform, test".into(),
        "  see README.md in the project for its layers and models".into(),
    ] {
        println!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Whether an executable named `name` is in a folder of PATH.
fn on_path(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|p| p.join(name).is_file()))
}

fn is_saas_project(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("strata.yml"))
        .map(|text| text.lines().any(|l| l.trim() == "name: saas"))
        .unwrap_or(false)
}

/// One month of mart_mrr.
struct Month {
    month: String,
    values: [f64; 10],
}

const COLUMNS: [&str; 10] = [
    "mrr",
    "new_mrr",
    "expansion_mrr",
    "reactivation_mrr",
    "contraction_mrr",
    "churned_mrr",
    "paying_accounts",
    "churned_accounts",
    "logo_churn_rate",
    "revenue_churn_rate",
];

struct Headline(Vec<Month>);

async fn headline(global: &GlobalArgs) -> Result<Headline> {
    let columns: Vec<String> = COLUMNS
        .iter()
        .map(|c| format!("coalesce(cast({c} as double), 0) as {c}"))
        .collect();
    let sql = format!(
        "select * from (select cast(month as varchar) as month, {} from {{{{ ref('mart_mrr') }}}} \
         order by month desc limit 6) order by month",
        columns.join(", ")
    );
    let batches = super::show::inline_rows(global, &sql)
        .await
        .context("cannot read gold.mart_mrr")?;
    let mut months = Vec::new();
    for batch in &batches {
        let names = cast(batch.column(0), &DataType::Utf8)?;
        let names = names.as_string::<i32>();
        for row in 0..batch.num_rows() {
            let mut values = [0.0; 10];
            for (i, v) in values.iter_mut().enumerate() {
                *v = batch.column(i + 1).as_primitive::<Float64Type>().value(row);
            }
            months.push(Month {
                month: names.value(row).chars().take(7).collect(),
                values,
            });
        }
    }
    if months.is_empty() {
        bail!("gold.mart_mrr has no rows: did the data generate?");
    }
    Ok(Headline(months))
}

impl Headline {
    fn table(&self) -> String {
        let head = [
            "month",
            "MRR",
            "new",
            "expansion",
            "reactivated",
            "contraction",
            "churned",
            "paying",
            "churned",
        ];
        let sub = ["", "", "", "", "", "", "", "accounts", "accounts"];
        let mut rows: Vec<Vec<String>> = vec![
            head.iter().map(|s| s.to_string()).collect(),
            sub.iter().map(|s| s.to_string()).collect(),
        ];
        for m in &self.0 {
            let v = &m.values;
            let mut row = vec![m.month.clone(), money(v[0])];
            row.extend(v[1..6].iter().map(|x| signed_money(*x)));
            row.push(format!("{}", v[6] as i64));
            row.push(format!("{}", v[7] as i64));
            rows.push(row);
        }
        let widths: Vec<usize> = (0..head.len())
            .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
            .collect();
        let mut out = String::new();
        for (i, row) in rows.iter().enumerate() {
            let cells: Vec<String> = row
                .iter()
                .enumerate()
                .map(|(c, cell)| {
                    if c == 0 {
                        format!("{cell:<w$}", w = widths[c])
                    } else {
                        format!("{cell:>w$}", w = widths[c])
                    }
                })
                .collect();
            out.push_str("  ");
            out.push_str(cells.join("  ").trim_end());
            out.push('\n');
            if i == 1 {
                let total: usize = widths.iter().sum::<usize>() + 2 * (widths.len() - 1);
                out.push_str(&format!("  {}\n", "-".repeat(total)));
            }
        }
        out
    }

    fn churn_summary(&self) -> String {
        let last = &self.0[self.0.len() - 1];
        let avg_logo: f64 = self.0.iter().map(|m| m.values[8]).sum::<f64>() / self.0.len() as f64;
        let avg_revenue: f64 =
            self.0.iter().map(|m| m.values[9]).sum::<f64>() / self.0.len() as f64;
        format!(
            "  Churn in {}: {} of the accounts paying the month before stopped ({:.1}%), taking {:.1}% of MRR\n  \
             (with contraction). Over these 6 months: {:.1}% logo churn and {:.1}% revenue churn a month.",
            last.month,
            last.values[7] as i64,
            100.0 * last.values[8],
            100.0 * last.values[9],
            100.0 * avg_logo,
            100.0 * avg_revenue,
        )
    }
}

/// `$12,345.67`.
fn money(x: f64) -> String {
    let cents = (x.abs() * 100.0).round() as u64;
    let (whole, frac) = (cents / 100, cents % 100);
    let digits = whole.to_string();
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("{}${grouped}.{frac:02}", if x < 0.0 { "-" } else { "" })
}

/// `+$1.00`, `-$1.00`, or `$0.00`.
fn signed_money(x: f64) -> String {
    if x > 0.005 {
        format!("+{}", money(x))
    } else if x < -0.005 {
        money(x)
    } else {
        money(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_is_grouped() {
        assert_eq!(money(1234567.891), "$1,234,567.89");
        assert_eq!(money(0.0), "$0.00");
        assert_eq!(money(-999.5), "-$999.50");
        assert_eq!(signed_money(12.0), "+$12.00");
        assert_eq!(signed_money(-0.001), "$0.00");
    }
}
