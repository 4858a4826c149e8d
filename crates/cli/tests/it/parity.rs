//! What a dbt user's commands, flags and project files do: analyses, clone, deps and the
//! flags dbt teams put in their jobs.

use crate::project::TestProject;

#[test]
fn analyses_are_compiled_never_run_and_cannot_be_referenced() {
    let p = TestProject::with_files(&[
        ("models/orders.sql", "select 1 as id, 'a' as kind"),
        (
            "analyses/kinds.sql",
            "select kind, count(*) as n from {{ ref('orders') }} group by 1",
        ),
    ]);
    let out = p.ok(&["run"]);
    assert!(out.contains("PASS=1 "), "{out}");
    assert!(!out.contains("kinds"), "{out}");
    let listed = p.ok(&["ls", "--resource-type", "analysis"]);
    assert_eq!(listed.trim(), "t.analysis.kinds");
    let sql = p.ok(&["compile", "-s", "kinds"]);
    assert!(sql.contains(r#"from "strata"."main"."orders""#), "{sql}");
    assert!(
        p.read("target/compiled/t/analyses/kinds.sql")
            .contains("group by 1")
    );
    let manifest: serde_json::Value =
        serde_json::from_str(&p.read("target/manifest.json")).expect("manifest");
    let node = &manifest["nodes"]["analysis.t.kinds"];
    assert_eq!(node["resource_type"], "analysis");
    assert_eq!(node["compiled"], true);
    assert_eq!(
        node["depends_on"]["nodes"],
        serde_json::json!(["model.t.orders"])
    );
    // A model cannot ref an analysis, as in dbt.
    p.write("models/uses.sql", "select * from {{ ref('kinds') }}");
    let err = p.fails(&["run"], 2);
    assert!(err.contains("ref('kinds') does not exist"), "{err}");
    assert!(err.contains("`kinds` is an analysis"), "{err}");
}
