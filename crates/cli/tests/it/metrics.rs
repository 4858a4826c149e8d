//! Metrics defined once in `metrics/*.yml` and answered by name.

use crate::project::TestProject;

const METRICS: &str = "metrics:
  - name: revenue
    label: Revenue
    model: orders
    measure: sum(amount)
    time: {column: ordered_at, grains: [day, month]}
    dimensions: [status, {name: size, expr: \"case when amount >= 100 then 'big' else 'small' end\"}]
    filters: [\"status <> 'test'\"]
  - name: customers
    model: orders
    measure: count(distinct customer)
";

fn project() -> TestProject {
    TestProject::with_files(&[
        (
            "seeds/orders.csv",
            "id,customer,status,amount,ordered_at\n1,a,placed,50,2026-01-05\n2,b,shipped,150,2026-01-20\n3,a,placed,20,2026-02-01\n4,c,test,999,2026-02-02\n5,c,shipped,100,2026-02-15\n",
        ),
        ("metrics/sales.yml", METRICS),
    ])
}

#[test]
fn a_metric_is_answered_by_grain_and_dimension_as_defined() {
    let p = project();
    p.ok(&["build"]);
    let list = p.ok(&["metrics", "list"]);
    assert!(
        list.contains("revenue (Revenue): sum(amount) over orders by ordered_at (day, month); dimensions: status, size"),
        "{list}"
    );
    // The filter in the definition always applies (the `test` order is left out).
    let total = p.ok(&["metrics", "query", "revenue", "-o", "csv"]);
    assert_eq!(total.trim(), "revenue\n320");
    let by_month = p.ok(&["metrics", "query", "Revenue", "--by", "month", "-o", "csv"]);
    assert_eq!(
        by_month.trim(),
        "month,revenue\n2026-01-01,200\n2026-02-01,120"
    );
    let by_size = p.ok(&[
        "metrics",
        "query",
        "revenue",
        "--by",
        "month",
        "--dimension",
        "size",
        "--where",
        "customer <> 'b'",
        "-o",
        "csv",
    ]);
    assert_eq!(
        by_size.trim(),
        "month,size,revenue\n2026-01-01,small,50\n2026-02-01,big,100\n2026-02-01,small,20"
    );
    let bounded = p.ok(&[
        "metrics",
        "query",
        "revenue",
        "--start",
        "2026-02-01",
        "--end",
        "2026-02-10",
        "-o",
        "csv",
    ]);
    assert_eq!(bounded.trim(), "revenue\n20");
    assert_eq!(
        p.ok(&["metrics", "query", "customers", "-o", "csv"]).trim(),
        "customers\n3"
    );
    let sql = p.ok(&["metrics", "query", "revenue", "--by", "day", "--sql"]);
    assert!(
        sql.contains("date_trunc('day'") && sql.contains("\"main\".\"orders\""),
        "{sql}"
    );
}

#[test]
fn wrong_metrics_and_queries_are_named() {
    let p = project();
    p.ok(&["build"]);
    let out = p.fails(&["metrics", "query", "revenu"], 2);
    assert!(
        out.contains("no metric named `revenu`") && out.contains("did you mean `revenue`"),
        "{out}"
    );
    let out = p.fails(&["metrics", "query", "revenue", "--by", "year"], 2);
    assert!(out.contains("read by day, month, not by year"), "{out}");
    let out = p.fails(&["metrics", "query", "revenue", "--by", "fortnight"], 2);
    assert!(
        out.contains("the grains are day, week, month, quarter, year"),
        "{out}"
    );
    let out = p.fails(&["metrics", "query", "revenue", "--dimension", "stauts"], 2);
    assert!(out.contains("did you mean `status`"), "{out}");
    let out = p.fails(&["metrics", "query", "customers", "--by", "month"], 2);
    assert!(out.contains("has no `time` column"), "{out}");

    p.write(
        "metrics/sales.yml",
        "metrics:\n  - name: revenue\n    model: order\n    measure: sum(amount)\n",
    );
    let out = p.fails(&["metrics", "list"], 2);
    assert!(
        out.contains("metrics/sales.yml:3") && out.contains("did you mean `orders`"),
        "{out}"
    );
    p.write(
        "metrics/sales.yml",
        "metrics:\n  - name: revenue\n    model: orders\n    mesure: sum(amount)\n",
    );
    let out = p.fails(&["metrics", "list"], 2);
    assert!(
        out.contains("metrics/sales.yml:4") && out.contains("did you mean `measure`"),
        "{out}"
    );
}
