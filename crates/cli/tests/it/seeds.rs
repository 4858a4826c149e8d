//! Seeds: CSV files loaded as tables with dbt's type inference.

use crate::project::TestProject;

fn seeded() -> TestProject {
    TestProject::with_files(&[
        (
            "seeds/kinds.csv",
            "id,name,price,active,day,ts,note\r\n1,a,1.5,true,2024-01-02,2024-01-02 10:00:00,x\r\n2,b,2,false,2024-02-03,2024-02-03 11:30:00,\r\n3,,,,,,\r\n",
        ),
        ("seeds/geo/zips.csv", "zip;amount\n01234;12.5\n99999;3\n"),
        (
            "seeds/props.yml",
            "version: 2\nseeds:\n  - name: zips\n    description: Postal codes.\n    config:\n      delimiter: ';'\n      column_types: {zip: varchar, amount: 'decimal(10,2)'}\n",
        ),
        (
            "models/joined.sql",
            "select k.id, z.zip from {{ ref('kinds') }} as k cross join {{ ref('zips') }} as z where z.amount > 10",
        ),
    ])
}

#[test]
fn seeds_load_with_inferred_and_declared_types() {
    let p = seeded();
    let out = p.ok(&["seed"]);
    assert!(out.contains("OK loaded seed file main.kinds"), "{out}");
    assert!(out.contains("[SELECT 3 in"), "{out}");
    assert!(out.contains("PASS=2"), "{out}");
    assert_eq!(
        p.query(
            "select arrow_typeof(id) as i, arrow_typeof(price) as p, arrow_typeof(active) as a, \
             arrow_typeof(day) as d, arrow_typeof(ts) as t from {{ ref('kinds') }} limit 1"
        ),
        vec!["i,p,a,d,t", "Int64,Float64,Boolean,Date32,Timestamp(µs)"]
    );
    // Empty fields are NULL, in text columns too.
    assert_eq!(
        p.query("select count(*) as n from {{ ref('kinds') }} where name is null and price is null and note is null and day is null"),
        vec!["n", "1"]
    );
    assert_eq!(
        p.query("select count(*) as n from {{ ref('kinds') }} where note is null"),
        vec!["n", "2"]
    );
    // column_types: leading zeros survive, decimals are exact.
    assert_eq!(
        p.query(
            "select zip, cast(amount as varchar) as amount from {{ ref('zips') }} order by zip"
        ),
        vec!["zip,amount", "01234,12.50", "99999,3.00"]
    );
    // Models ref seeds; `run` does not load seeds, `ls` lists them.
    let out = p.ok(&["run"]);
    assert!(out.contains("TOTAL=1"), "{out}");
    assert_eq!(
        p.query("select * from joined order by id"),
        vec!["id,zip", "1,01234", "2,01234", "3,01234"]
    );
    assert_eq!(
        p.ok(&["ls", "--resource-type", "seed", "-o", "name"]),
        "kinds\nzips\n"
    );
    assert_eq!(
        p.ok(&["ls", "-s", "resource_type:seed", "-o", "path"]),
        "seeds/kinds.csv\nseeds/geo/zips.csv\n"
    );
    let manifest: serde_json::Value =
        serde_json::from_str(&p.read("target/manifest.json")).expect("manifest");
    assert_eq!(
        manifest["nodes"]["seed.t.zips"]["description"],
        "Postal codes."
    );
    assert_eq!(
        manifest["parent_map"]["model.t.joined"],
        serde_json::json!(["seed.t.kinds", "seed.t.zips"])
    );
}

#[test]
fn reloading_a_seed_replaces_it() {
    let p = seeded();
    p.ok(&["seed", "-s", "kinds"]);
    p.write("seeds/kinds.csv", "id,name\n10,z\n");
    p.ok(&["seed", "-s", "kinds"]);
    assert_eq!(
        p.query("select * from {{ ref('kinds') }}"),
        vec!["id,name", "10,z"]
    );
}

#[test]
fn a_malformed_seed_row_is_located_and_loses_nothing() {
    let p = seeded();
    p.ok(&["seed"]);
    p.write("seeds/kinds.csv", "id,name\n1,a\n2,b,extra\n3,c\n");
    let out = p.fails(&["seed", "-s", "kinds"], 1);
    assert!(
        out.contains("Failure in seed kinds (seeds/kinds.csv)"),
        "{out}"
    );
    assert!(out.contains("seeds/kinds.csv"), "{out}");
    assert!(out.contains("line"), "{out}");
    // The previous load is intact.
    assert_eq!(
        p.query("select count(*) as n from {{ ref('kinds') }}"),
        vec!["n", "3"]
    );
}

#[test]
fn column_types_must_name_real_columns() {
    let p = seeded();
    p.write(
        "seeds/props.yml",
        "version: 2\nseeds:\n  - name: zips\n    config:\n      delimiter: ';'\n      column_types: {zipp: varchar}\n",
    );
    let out = p.fails(&["seed"], 1);
    assert!(out.contains("column_types names column `zipp`"), "{out}");
    assert!(out.contains("did you mean `zip`"), "{out}");
}

#[test]
fn a_seed_and_a_model_cannot_share_a_name() {
    let p = seeded();
    p.write("models/kinds.sql", "select 1 as x");
    let out = p.fails(&["seed"], 2);
    assert!(out.contains("`kinds` is both"), "{out}");
}

#[test]
fn a_seed_described_under_models_is_patched_and_tested() {
    let p = TestProject::with_files(&[
        ("seeds/codes.csv", "code,label\na,Alpha\na,Again\n"),
        (
            "models/schema.yml",
            "version: 2\nmodels:\n  - name: codes\n    description: Country codes.\n    columns:\n      - name: code\n        data_tests: [unique]\n",
        ),
    ]);
    let out = p.fails(&["build"], 1);
    assert!(!out.contains("there is no model file"), "{out}");
    assert!(out.contains("FAIL 1 unique_codes_code"), "{out}");
    let manifest: serde_json::Value =
        serde_json::from_str(&p.read("target/manifest.json")).expect("manifest");
    assert_eq!(
        manifest["nodes"]["seed.t.codes"]["description"],
        "Country codes."
    );
}
