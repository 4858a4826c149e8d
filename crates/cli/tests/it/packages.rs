//! Packages: local ones in place, hub and git ones from dbt_packages/ when installed there;
//! `strata deps` installing all three kinds with package-lock.yml.

use crate::project::TestProject;

fn with_package(entry: &str, pkg_dir: &str) -> TestProject {
    TestProject::with_files(&[
        (
            &format!("{pkg_dir}/dbt_project.yml"),
            "name: my_utils\nversion: '1.0'\nconfig-version: 2\n",
        ),
        (
            &format!("{pkg_dir}/macros/money.sql"),
            "{% macro cents_to_units(x) %}({{ x }} / 100.0){% endmacro %}\n{% macro default__label(x) %}upper({{ x }}){% endmacro %}",
        ),
        (
            &format!("{pkg_dir}/tests/generic/is_positive.sql"),
            "{% test is_positive(model, column_name) %}select * from {{ model }} where {{ column_name }} <= 0{% endtest %}",
        ),
        ("packages.yml", entry),
        (
            "models/m.sql",
            "select {{ my_utils.cents_to_units('250') }} as units, {{ cents_to_units('100') }} as plain, {{ adapter.dispatch('label', 'my_utils')(\"'x'\") }} as l",
        ),
        (
            "models/schema.yml",
            "version: 2\nmodels:\n  - name: m\n    columns:\n      - name: units\n        tests: [my_utils.is_positive]\n",
        ),
    ])
}

#[test]
fn local_packages_provide_macros_and_tests() {
    let p = with_package("packages:\n  - local: vendor/my_utils\n", "vendor/my_utils");
    let out = p.ok(&["build"]);
    // dbt names a package's test with the package first.
    assert!(out.contains("PASS my_utils_is_positive_m_units"), "{out}");
    assert_eq!(
        p.query("select * from m"),
        vec!["units,plain,l", "2.5,1.0,X"]
    );
}

#[test]
fn hub_packages_are_used_when_installed_and_explained_when_not() {
    let p = with_package(
        "packages:\n  - package: acme/my_utils\n    version: 1.0.0\n",
        "dbt_packages/my_utils",
    );
    assert!(p.ok(&["run"]).contains("PASS=1"));
    let p = TestProject::with_files(&[(
        "packages.yml",
        "packages:\n  - package: dbt-labs/dbt_utils\n    version: [\">=1.0.0\"]\n",
    )]);
    let out = p.fails(&["run"], 2);
    assert!(
        out.contains("package `dbt-labs/dbt_utils` is not installed in dbt_packages/"),
        "{out}"
    );
    assert!(out.contains("run `strata deps`"), "{out}");
    assert!(out.contains("- local: path/to/dbt_utils"), "{out}");
}

#[test]
fn package_models_are_built_with_the_root_projects_configs() {
    let p = with_package("packages:\n  - local: vendor/my_utils\n", "vendor/my_utils");
    p.write(
        "vendor/my_utils/dbt_project.yml",
        "name: my_utils\nversion: '1.0'\nconfig-version: 2\nmodels:\n  my_utils:\n    +materialized: table\n",
    );
    p.write(
        "vendor/my_utils/models/calendar.sql",
        "select 1 as day union all select 2",
    );
    p.write(
        "models/uses_calendar.sql",
        "select count(*) as days from {{ ref('my_utils', 'calendar') }}",
    );
    p.write(
        "strata.yml",
        "name: t\nprofile: t\nmodels:\n  my_utils:\n    +schema: utils\n",
    );
    let out = p.ok(&["run"]);
    assert!(
        out.contains("OK created sql table model main_utils.calendar"),
        "{out}"
    );
    assert_eq!(p.query("select days from uses_calendar"), vec!["days", "2"]);
    let manifest: serde_json::Value =
        serde_json::from_str(&p.read("target/manifest.json")).expect("manifest");
    assert_eq!(
        manifest["nodes"]["model.my_utils.calendar"]["package_name"],
        "my_utils"
    );
    // A two-argument ref names the package that holds the model.
    p.write(
        "models/uses_calendar.sql",
        "select * from {{ ref('t', 'calendar') }}",
    );
    let out = p.fails(&["run"], 2);
    assert!(out.contains("is not in package `t`"), "{out}");
}

#[test]
fn packages_of_packages_are_loaded_as_dbt_deps_installs_them() {
    // my_utils (local) declares base_dates from the hub; `dbt deps` would have installed it in
    // the root's dbt_packages/, and my_utils also has a local package of its own.
    let p = with_package("packages:\n  - local: vendor/my_utils\n", "vendor/my_utils");
    p.write(
        "vendor/my_utils/packages.yml",
        "packages:\n  - package: acme/base_dates\n    version: 1.0.0\n  - local: extras\n",
    );
    p.write(
        "dbt_packages/base_dates/dbt_project.yml",
        "name: base_dates\nversion: '1.0'\n",
    );
    p.write(
        "dbt_packages/base_dates/macros/days.sql",
        "{% macro days_in_week() %}7{% endmacro %}",
    );
    p.write(
        "vendor/my_utils/extras/dbt_project.yml",
        "name: extras\nversion: '1.0'\n",
    );
    p.write(
        "vendor/my_utils/extras/macros/two.sql",
        "{% macro two() %}2{% endmacro %}",
    );
    p.write(
        "models/week.sql",
        "select {{ base_dates.days_in_week() }} as days, {{ extras.two() }} as two",
    );
    p.ok(&["run", "-s", "week"]);
    assert_eq!(p.query("select * from week"), vec!["days,two", "7,2"]);
    // A package that a package needs and nobody installed is named.
    std::fs::remove_dir_all(p.path().join("dbt_packages")).expect("rm");
    let out = p.fails(&["run"], 2);
    assert!(
        out.contains("vendor/my_utils/packages.yml") && out.contains("acme/base_dates"),
        "{out}"
    );
}

#[test]
fn a_package_qualified_test_uses_the_packages_macro() {
    let p = with_package("packages:\n  - local: vendor/my_utils\n", "vendor/my_utils");
    // The project has a test of the same name, with fewer arguments.
    p.write(
        "macros/tests.sql",
        "{% test is_positive(model, column_name) %}select 1 as broken{% endtest %}",
    );
    p.write(
        "vendor/my_utils/tests/generic/is_positive.sql",
        "{% test is_positive(model, column_name, strict=true) %}select * from {{ model }} where {{ column_name }} {{ '<=' if strict else '<' }} 0{% endtest %}",
    );
    p.write(
        "models/schema.yml",
        "version: 2\nmodels:\n  - name: m\n    columns:\n      - name: units\n        tests:\n          - my_utils.is_positive:\n              strict: false\n",
    );
    let out = p.ok(&["build"]);
    assert!(out.contains("PASS=2"), "{out}");
    let manifest: serde_json::Value =
        serde_json::from_str(&p.read("target/manifest.json")).expect("manifest");
    let test = manifest["nodes"]
        .as_object()
        .and_then(|n| n.values().find(|v| v["resource_type"] == "test"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(test["test_metadata"]["namespace"], "my_utils", "{test}");
}

#[test]
fn a_package_test_goes_through_its_own_wrapper_and_dispatch() {
    let p = with_package("packages:\n  - local: vendor/my_utils\n", "vendor/my_utils");
    // The wrapper gives `most` its default; the implementation has none, so calling it
    // directly would fail. `should_store_failures()` is dbt's helper.
    p.write(
        "vendor/my_utils/macros/at_most.sql",
        "{% test at_most(model, column_name, most = 10) %}{{ return(adapter.dispatch('test_at_most', 'my_utils')(model, column_name, most)) }}{% endtest %}\n\
         {% macro default__test_at_most(model, column_name, most) %}select {{ '*' if should_store_failures() else '1' }} from {{ model }} where {{ column_name }} > {{ most }}{% endmacro %}",
    );
    p.write(
        "models/schema.yml",
        "version: 2\nmodels:\n  - name: m\n    columns:\n      - name: units\n        tests:\n          - my_utils.at_most\n          - my_utils.at_most:\n              name: at_most_one\n              most: 1\n              config:\n                store_failures: true\n",
    );
    let out = p.fails(&["build"], 1);
    assert!(out.contains("PASS=2") && out.contains("ERROR=1"), "{out}");
    assert!(out.contains("FAIL 1 at_most_one"), "{out}");
}

#[test]
fn custom_materializations_load_and_a_model_using_one_is_told_plainly() {
    let mat = "{% macro helper() %}1{% endmacro %}\n\n{% materialization insert_only, default %}\n  {%- set target = this -%}\n  {% call statement('main') %}select 1{% endcall %}\n  {{ return({'relations': [target]}) }}\n{% endmaterialization %}\n{% macro after() %}2{% endmacro %}\n";
    let p = TestProject::with_files(&[
        ("macros/materializations.sql", mat),
        ("models/m.sql", "select {{ helper() }} + {{ after() }} as x"),
    ]);
    // The block loads; the macros around it work.
    p.ok(&["run"]);
    assert_eq!(p.query("select x from m"), vec!["x", "3"]);
    p.write(
        "models/n.sql",
        "{{ config(materialized='insert_only') }} select 1 as y",
    );
    let err = p.fails(&["run"], 2);
    assert!(
        err.contains(
            "materialized `insert_only` is a custom materialization (macros/materializations.sql:3)"
        ),
        "{err}"
    );
}

#[test]
fn dispatch_searches_the_root_project_then_the_package_unless_told_otherwise() {
    let files = [
        (
            "vendor/greeter/dbt_project.yml",
            "name: greeter\nversion: '1.0'\nconfig-version: 2\n",
        ),
        (
            "vendor/greeter/macros/greet.sql",
            "{% macro greet() %}{{ return(adapter.dispatch('greet', 'greeter')()) }}{% endmacro %}\n{% macro default__greet() %}'package default'{% endmacro %}\n{% macro duckdb__greet() %}'package duckdb'{% endmacro %}",
        ),
        ("packages.yml", "packages:\n  - local: vendor/greeter\n"),
        (
            "macros/mine.sql",
            "{% macro default__greet() %}'project default'{% endmacro %}",
        ),
        ("models/m.sql", "select {{ greeter.greet() }} as g"),
    ];
    // The root project's implementation comes first, even a less specific one.
    let p = TestProject::with_files(&files);
    p.ok(&["run"]);
    assert_eq!(p.query("select g from m"), vec!["g", "project default"]);
    // A `dispatch:` search order names the packages searched, in order; in each, the
    // duckdb__ implementation comes before default__.
    p.write(
        "strata.yml",
        &format!(
            "{}dispatch:\n  - macro_namespace: greeter\n    search_order: [greeter, t]\n",
            p.read("strata.yml")
        ),
    );
    p.ok(&["run"]);
    assert_eq!(p.query("select g from m"), vec!["g", "package duckdb"]);
    // Nothing to find: every name tried is listed.
    p.write(
        "models/m.sql",
        "select {{ adapter.dispatch('wave', 'greeter')() }} as g",
    );
    let err = p.fails(&["run"], 2);
    assert!(
        err.contains("tried greeter.strata__wave, greeter.duckdb__wave, greeter.default__wave"),
        "{err}"
    );
}

/// Run git in `dir`, failing the test when it fails.
fn git(dir: &std::path::Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .args([
            "-c",
            "user.name=Strata Tests",
            "-c",
            "user.email=tests@example.com",
        ])
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "protocol.file.allow=always",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A git repository holding a package `greetings` whose macro says `v1`, tagged v1.0.0, then
/// `v2` on main.
fn greetings_repo(p: &TestProject) -> String {
    let repo = p.path().join("repos/greetings");
    std::fs::create_dir_all(repo.join("macros")).expect("mkdir");
    std::fs::write(
        repo.join("dbt_project.yml"),
        "name: greetings\nversion: '1.0'\nconfig-version: 2\n",
    )
    .expect("write");
    let macro_file = repo.join("macros/hello.sql");
    std::fs::write(&macro_file, "{% macro hello() %}'v1'{% endmacro %}").expect("write");
    git(&repo, &["init", "--quiet"]);
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "--quiet", "-m", "v1"]);
    git(&repo, &["tag", "v1.0.0"]);
    std::fs::write(&macro_file, "{% macro hello() %}'v2'{% endmacro %}").expect("write");
    git(&repo, &["commit", "--quiet", "-am", "v2"]);
    format!("file://{}", repo.display())
}

#[test]
fn deps_installs_local_and_git_packages_pinned_in_the_lock() {
    let p = TestProject::with_files(&[
        (
            "vendor/helpers/dbt_project.yml",
            "name: helpers\nversion: '1.0'\nconfig-version: 2\n",
        ),
        (
            "vendor/helpers/macros/twice.sql",
            "{% macro twice(x) %}({{ x }} * 2){% endmacro %}",
        ),
        (
            "models/m.sql",
            "select {{ greetings.hello() }} as greeting, {{ helpers.twice(21) }} as n",
        ),
    ]);
    let url = greetings_repo(&p);
    let v1 = git(&p.path().join("repos/greetings"), &["rev-parse", "v1.0.0"]);
    p.write(
        "packages.yml",
        &format!(
            "packages:\n  - local: vendor/helpers\n  - git: \"{url}\"\n    revision: v1.0.0\n"
        ),
    );
    // Not installed yet: the run says how to install it.
    let err = p.fails(&["run"], 2);
    assert!(err.contains("run `strata deps`"), "{err}");
    let out = p.ok(&["deps"]);
    assert!(out.contains("Installed greetings (git"), "{out}");
    assert!(out.contains("wrote package-lock.yml"), "{out}");
    assert!(p.path().join("dbt_packages/helpers").is_symlink());
    assert!(!p.path().join("dbt_packages/greetings/.git").exists());
    let lock = p.read("package-lock.yml");
    assert!(lock.contains(&format!("revision: {v1}")), "{lock}");
    assert!(
        lock.contains("name: greetings") && lock.contains("sha1_hash:"),
        "{lock}"
    );
    p.ok(&["run"]);
    assert_eq!(p.query("select * from m"), vec!["greeting,n", "v1,42"]);
    // Unchanged declarations: installed from the lock.
    let out = p.ok(&["deps"]);
    assert!(out.contains("from package-lock.yml"), "{out}");
    // A new revision is resolved again; --lock only writes the lock.
    p.write(
        "packages.yml",
        &format!("packages:\n  - local: vendor/helpers\n  - git: \"{url}\"\n    revision: main\n"),
    );
    let out = p.ok(&["deps", "--lock"]);
    assert!(out.contains("Resolved greetings"), "{out}");
    assert!(!p.read("package-lock.yml").contains(&v1));
    assert!(
        p.read("dbt_packages/greetings/macros/hello.sql")
            .contains("v1")
    );
    p.ok(&["deps"]);
    p.ok(&["run"]);
    assert_eq!(p.query("select * from m"), vec!["greeting,n", "v2,42"]);
    // A revision that does not exist is named, and nothing is installed.
    p.write(
        "packages.yml",
        &format!("packages:\n  - git: \"{url}\"\n    revision: v9.9.9\n"),
    );
    let err = p.fails(&["deps"], 2);
    assert!(err.contains("revision `v9.9.9` does not exist"), "{err}");
    assert!(p.path().join("dbt_packages/greetings").exists());
}

#[test]
fn deps_installs_hub_packages_from_the_hub_index() {
    let p =
        TestProject::with_files(&[("models/m.sql", "select {{ greetings.hello() }} as greeting")]);
    // A package hub: its index (api/v1/ORG/NAME.json) and the versions' tarballs, served by
    // a real HTTP server (the public hub needs a network this test may not have).
    let hub = p.path().join("hub");
    for version in ["1.0.0", "1.2.0", "2.0.0"] {
        let pkg = hub.join(format!("src/greetings-{version}"));
        std::fs::create_dir_all(pkg.join("macros")).expect("mkdir");
        std::fs::write(
            pkg.join("dbt_project.yml"),
            "name: greetings\nversion: '1.0'\nconfig-version: 2\n",
        )
        .expect("write");
        std::fs::write(
            pkg.join("macros/hello.sql"),
            format!("{{% macro hello() %}}'{version}'{{% endmacro %}}"),
        )
        .expect("write");
        let status = std::process::Command::new("tar")
            .args(["-czf", &format!("greetings-{version}.tar.gz"), "-C", "src"])
            .arg(format!("greetings-{version}"))
            .current_dir(&hub)
            .status()
            .expect("tar");
        assert!(status.success());
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    let versions: serde_json::Map<String, serde_json::Value> = ["1.0.0", "1.2.0", "2.0.0"]
        .iter()
        .map(|v| {
            (
                v.to_string(),
                serde_json::json!({"name": "greetings", "packages": [],
                    "downloads": {"tarball": format!("http://127.0.0.1:{port}/greetings-{v}.tar.gz")}}),
            )
        })
        .collect();
    std::fs::create_dir_all(hub.join("api/v1/acme")).expect("mkdir");
    std::fs::write(
        hub.join("api/v1/acme/greetings.json"),
        serde_json::json!({"name": "greetings", "versions": versions}).to_string(),
    )
    .expect("write");
    let mut server = std::process::Command::new("python3")
        .args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .current_dir(&hub)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("python3 -m http.server");
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let hub_url = format!("http://127.0.0.1:{port}/");
    p.write(
        "packages.yml",
        "packages:\n  - package: acme/greetings\n    version: [\">=1.0.0\", \"<2.0.0\"]\n",
    );
    let deps = |args: &[&str]| {
        p.strata(args)
            .env("DBT_PACKAGE_HUB_URL", &hub_url)
            .output()
            .expect("deps")
    };
    let out = deps(&["deps"]);
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("Installed greetings (hub acme/greetings 1.2.0)"),
        "{text}"
    );
    assert!(p.read("package-lock.yml").contains("version: 1.2.0"));
    p.ok(&["run"]);
    assert_eq!(p.query("select * from m"), vec!["greeting", "1.2.0"]);
    // No version in range: the versions the hub has are listed.
    p.write(
        "packages.yml",
        "packages:\n  - package: acme/greetings\n    version: \">=3.0.0\"\n",
    );
    let out = deps(&["deps"]);
    let text = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains("no version matches >=3.0.0 (the hub has 1.0.0, 1.2.0, 2.0.0)"),
        "{text}"
    );
    let _ = server.kill();
    let _ = server.wait();
    // The hub cannot be reached: said, with what to do instead.
    let out = deps(&["deps"]);
    let text = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(text.contains("cannot read the package hub"), "{text}");
    assert!(
        text.contains("declare the package as `git:` or `local:`"),
        "{text}"
    );
    // Installing from the lock with the hub gone fails, and leaves what was installed.
    p.write(
        "packages.yml",
        "packages:\n  - package: acme/greetings\n    version: [\">=1.0.0\", \"<2.0.0\"]\n",
    );
    let out = deps(&["deps"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        p.read("dbt_packages/greetings/macros/hello.sql")
            .contains("1.2.0")
    );
    p.ok(&["run"]);
}
