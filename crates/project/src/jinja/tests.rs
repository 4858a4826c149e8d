use std::path::{Path, PathBuf};

use super::*;

fn globals() -> Globals {
    let mut g = Globals {
        project_name: "shop".into(),
        ..Globals::default()
    };
    g.project_vars
        .insert("start".into(), serde_json::json!("2024-01-01"));
    g.target.insert("name".into(), serde_json::json!("dev"));
    g.target
        .insert("schema".into(), serde_json::json!("analytics"));
    g.docs.insert("orders".into(), "One row per order.".into());
    g
}

fn node() -> NodeInfo {
    NodeInfo {
        unique_id: "model.shop.m".into(),
        name: "m".into(),
        package: "shop".into(),
        resource_type: "model".into(),
        fqn: vec!["shop".into(), "m".into()],
        original_file_path: PathBuf::from("models/m.sql"),
        config: NodeConfig::new(),
        relation: Some(Relation::new("strata", "analytics", "m")),
    }
}

#[derive(Debug)]
struct Fixed;

impl Resolver for Fixed {
    fn resolve_ref(&self, call: &RefCall) -> Result<Resolved, String> {
        if call.name == "eph" {
            return Ok(Resolved {
                relation: Relation::new("strata", "analytics", "eph"),
                ephemeral: Some(("model.shop.eph".into(), "__dbt__cte__eph".into())),
                filter: None,
            });
        }
        Ok(Resolved {
            relation: Relation::new("strata", "analytics", call.name.clone()),
            ephemeral: None,
            filter: None,
        })
    }
    fn resolve_source(&self, source: &str, table: &str) -> Result<Resolved, String> {
        Ok(Resolved {
            relation: Relation::new("strata", source, table),
            ephemeral: None,
            filter: None,
        })
    }
}

fn env_with(model: &str, macros: &[(&str, &str)]) -> JinjaEnv {
    let files: Vec<(PathBuf, String, String)> = macros
        .iter()
        .map(|(p, s)| (PathBuf::from(p), "shop".to_string(), s.to_string()))
        .collect();
    let mut env = JinjaEnv::new(globals(), &files).expect("env");
    env.add_template(Path::new("models/m.sql"), model.to_string())
        .expect("template");
    env
}

/// The model template of `env` rendered in parse mode.
fn parsed(env: &JinjaEnv) -> String {
    env.render(Path::new("models/m.sql"), Mode::Parse, node(), None)
        .expect("render")
        .0
}

#[test]
fn parse_records_refs_sources_and_config() {
    let env = env_with(
        "{{ config(materialized='table', tags=['a']) }}select * from {{ ref('a') }} join {{ ref('pkg', 'b') }} join {{ source('raw', 'orders') }} join {{ ref('a') }}",
        &[],
    );
    let (_, c) = env
        .render(Path::new("models/m.sql"), Mode::Parse, node(), None)
        .expect("render");
    assert_eq!(c.refs.len(), 2);
    assert_eq!(c.refs[1].package.as_deref(), Some("pkg"));
    assert_eq!(c.sources, vec![("raw".to_string(), "orders".to_string())]);
    assert_eq!(c.config.materialized(), "table");
    assert_eq!(c.config.tags(), vec!["a"]);
}

#[test]
fn compile_renders_quoted_relations_and_ctes() {
    let env = env_with(
        "select * from {{ ref('a') }}, {{ ref('eph') }}, {{ source('raw','t') }} -- {{ this }} {{ this.identifier }}",
        &[],
    );
    let (sql, c) = env
        .render(
            Path::new("models/m.sql"),
            Mode::Compile,
            node(),
            Some(Arc::new(Fixed)),
        )
        .expect("render");
    assert_eq!(
        sql,
        r#"select * from "strata"."analytics"."a", __dbt__cte__eph, "strata"."raw"."t" -- "strata"."analytics"."m" m"#
    );
    assert_eq!(c.ephemerals.len(), 1);
}

#[test]
fn macros_are_global_and_return_values() {
    let macros = "{% macro cents_to_dollars(col, scale=2) %}round({{ col }} / 100, {{ scale }}){% endmacro %}\n\
                  {% macro statuses() %}{{ return(['placed', 'shipped']) }}{% endmacro %}\n\
                  {% macro n_statuses() %}{{ return(statuses() | length) }}{% endmacro %}";
    let env = env_with(
        "select {{ cents_to_dollars('amount') }}, {{ cents_to_dollars('x', scale=0) }}{% for s in statuses() %}, '{{ s }}'{% endfor %}, {{ n_statuses() }}",
        &[("macros/money.sql", macros)],
    );
    let (sql, _) = env
        .render(
            Path::new("models/m.sql"),
            Mode::Compile,
            node(),
            Some(Arc::new(Fixed)),
        )
        .expect("render");
    assert_eq!(
        sql,
        "select round(amount / 100, 2), round(x / 100, 0), 'placed', 'shipped', 2"
    );
}

#[test]
fn vars_env_vars_docs_target_and_datetime() {
    let env = env_with(
        "{{ var('start') }}|{{ var('missing', 'd') }}|{{ env_var('STRATA_JINJA_TEST_UNSET', 'fb') }}|{{ doc('orders') }}|{{ target.name }}|{{ modules.datetime.date(2024, 2, 3).strftime('%Y/%m/%d') }}|{{ run_started_at.year }}",
        &[],
    );
    let out = parsed(&env);
    assert_eq!(
        out,
        "2024-01-01|d|fb|One row per order.|dev|2024/02/03|1970"
    );
}

#[test]
fn datetime_today_and_replace_with_microseconds() {
    let env = env_with(
        "{{ modules.datetime.datetime.today().replace(hour=0, minute=0, second=0, microsecond=0).strftime('%H:%M:%S.%f') }}|{{ modules.datetime.datetime.strptime('2024-01-02 03:04:05', '%Y-%m-%d %H:%M:%S').replace(microsecond=7).strftime('%S.%f') }}",
        &[],
    );
    let out = parsed(&env);
    assert_eq!(out, "00:00:00.000000|05.000007");
}

#[test]
fn missing_var_and_env_var_are_errors_that_say_how_to_fix() {
    let env = env_with("{{ var('nope') }}", &[]);
    let err = env
        .render(Path::new("models/m.sql"), Mode::Parse, node(), None)
        .expect_err("missing var");
    assert!(
        describe_error(&err).contains("--vars"),
        "{}",
        describe_error(&err)
    );
    let env = env_with("{{ env_var('STRATA_JINJA_TEST_UNSET') }}", &[]);
    let err = env
        .render(Path::new("models/m.sql"), Mode::Parse, node(), None)
        .expect_err("missing env var");
    assert!(describe_error(&err).contains("not set"));
}

#[test]
fn config_get_sees_project_and_inline_config() {
    let mut n = node();
    n.config.set("materialized", serde_json::json!("view"));
    let env = env_with(
        "{{ config(alias='x') }}{{ config.get('materialized') }}/{{ config.get('alias') }}/{{ config.get('nope', 'dflt') }}",
        &[],
    );
    let (out, _) = env
        .render(Path::new("models/m.sql"), Mode::Parse, n, None)
        .expect("render");
    assert_eq!(out, "view/x/dflt");
}

#[test]
fn lists_grow_as_in_python() {
    let env = env_with(
        "{% set parts = [] %}{% for x in ['a', 'b', 'c'] %}{% do parts.append(x) %}{% if not loop.last %}{%- do parts.append('-') -%}{% endif %}{% endfor %}{% do parts.extend(['d']) %}{% do parts.insert(0, '>') %}{{ parts | join('') }}|{{ parts | length }}|{{ parts.pop() }}|{{ parts[1] }}|{{ ['x', 'y'].index('y') }}|{{ parts.count('-') }}",
        &[],
    );
    let out = parsed(&env);
    assert_eq!(out, ">a-b-cd|7|d|a|1|2");
    let env = env_with(
        "{% set grown = ['a', ['n', 'm']] %}{% do grown.append('b') %}{{ grown | length }}{{ grown[0] }}{{ grown[2] }}",
        &[],
    );
    let out = parsed(&env);
    assert_eq!(out, "3ab");
    // A list inside a longer expression stays as it is.
    let env = env_with(
        "{% set d = [] if not x %}{{ d | length }}{% set e = ['a'] %}{{ e | length }}",
        &[],
    );
    let out = parsed(&env);
    assert_eq!(out, "01");
    // An argument defaulting to [] gets a list of its own at each call.
    let env = env_with(
        "{{ grow() }}|{{ grow() }}",
        &[(
            "macros/g.sql",
            "{% macro grow(cols = []) %}{% set kept = cols %}{% do kept.append('x') %}{{ kept | join }}{% endmacro %}",
        )],
    );
    let out = parsed(&env);
    assert_eq!(out, "x|x");
    // Literals anywhere are Python's: a list inside a dict, a list passed inline.
    let env = env_with(
        "{% set d = {} %}{% for r in ['a', 'b'] %}{% do d.update({r: []}) %}{% do d[r].append(r ~ 1) %}{% endfor %}{% do d['a'].append('a2') %}{{ d['a'] | join(',') }}/{{ d['b'] | join(',') }}",
        &[],
    );
    let out = parsed(&env);
    assert_eq!(out, "a1,a2/b1");
    // Values assigned by set are the template's own: a concatenation, a filter's result.
    let env = env_with(
        "{% set a = ['x'] %}{% set c = a + ['y'] %}{% do c.append('z') %}{% set s = 'qp' | list | sort %}{% do s.append('r') %}{{ c | join }}{{ a | join }}{{ s | join }}{{ c == ['x', 'y', 'z'] }}",
        &[],
    );
    let out = parsed(&env);
    assert_eq!(out, "xyzxpqrTrue");
    let env = env_with("{% do (['x'] + ['y']).append('z') %}", &[]);
    let err = env
        .render(Path::new("models/m.sql"), Mode::Parse, node(), None)
        .expect_err("a concatenation not assigned");
    assert!(
        describe_error(&err).contains("{% set name = ... %}"),
        "{}",
        describe_error(&err)
    );
}

#[test]
fn python_dicts_strings_and_re() {
    let env = env_with(
        "{% set seen = {} %}{% do seen.update({'a': 1}) %}{% do seen.update({'b': 2}) %}{{ seen | length }}|{{ seen.get('a') }}|{{ seen.get('z', 'none') }}|{{ seen.pop('a') }}|{{ seen | list | join(',') }}|{{ 'Order_ID'.endswith('_ID') }}|{{ '  x '.strip() }}|{{ modules.re.sub('[ -]+', '_', 'a b-c') }}|{{ modules.re.sub('(a)(b)', '\\\\2\\\\1', 'ab') }}|{{ modules.re.search('[0-9]+', 'x42y').group() }}|{{ modules.re.match('[0-9]', 'x1') is none }}|{{ modules.re.findall('[a-z]', 'a1b2') | join }}",
        &[],
    );
    let out = parsed(&env);
    assert_eq!(out, "2|1|none|1|b|True|x|a_b_c|ba|42|True|ab");
}

#[test]
fn macros_using_kwargs_take_undeclared_keyword_arguments() {
    let env = env_with(
        "{{ outer(1, at_least=0.5, note='x') }}|{{ plain(a=1) }}",
        &[(
            "macros/k.sql",
            "{% macro outer(n, group_by=[]) %}{{ inner(n, group_by, **kwargs) }}{% endmacro %}{% macro inner(n, group_by) %}{{ n }}:{{ kwargs.at_least }}:{{ kwargs | length }}:{{ group_by | length }}{% endmacro %}{% macro plain(a) %}{{ a }}{% endmacro %}",
        )],
    );
    let out = parsed(&env);
    assert_eq!(out, "1:0.5:2:0|1");
    let env = env_with(
        "{{ plain(a=1, b=2) }}",
        &[("macros/k.sql", "{% macro plain(a) %}{{ a }}{% endmacro %}")],
    );
    assert!(
        env.render(Path::new("models/m.sql"), Mode::Parse, node(), None)
            .is_err(),
        "a macro that does not use kwargs refuses unknown ones"
    );
}

#[test]
fn macros_using_varargs_take_extra_positional_arguments() {
    let env = env_with(
        "{{ cols('a', 'b', 'c') }}|{{ cols('a') }}",
        &[(
            "macros/v.sql",
            "{% macro cols(first) %}{{ first }}+{{ varargs | join(',') }}({{ varargs | length }}){% endmacro %}",
        )],
    );
    let out = parsed(&env);
    assert_eq!(out, "a+b,c(2)|a+(0)");
}

#[test]
fn sets_compare_without_order() {
    let env = env_with(
        "{% set a = set(['x', 'y', 'x']) %}{% set b = set(['y', 'x']) %}{{ a == b }} {{ a | length }} {{ a != set(['x']) }} {% do b.add('z') %}{{ b | sort | join }} {{ 'z' in b }} {{ a.issubset(b) }} {{ b.difference(a) | join }}",
        &[],
    );
    let out = parsed(&env);
    assert_eq!(out, "True 2 True xyz True True z");
}

#[test]
fn dates_add_and_subtract_as_in_python() {
    let env = env_with(
        "{% set end = modules.datetime.datetime(2024, 3, 1, 5) %}{% set start = (end - modules.datetime.timedelta(days=10)) %}{{ start.strftime('%Y-%m-%d %H') }}|{{ (end - start).days }}|{{ (start.date() + modules.datetime.timedelta(days=1)).isoformat() }}|{{ 3 - 1 + 4 }}|{{ 'a' + 'b' }}",
        &[],
    );
    let out = parsed(&env);
    assert_eq!(out, "2024-02-20 05|10|2024-02-21|6|ab");
}

#[test]
fn json_yaml_zip_itertools_and_pytz() {
    let env = env_with(
        "{{ tojson({'b': 1, 'a': [1, 2]}, sort_keys=True) }}|{{ fromjson('{\"x\": [3]}').x[0] }}|{{ fromyaml('a: 5').a }}|{{ toyaml({'k': 'v'}) | trim }}|{% for a, b in zip([1, 2, 3], ['x', 'y']) %}{{ a }}{{ b }}{% endfor %}|{{ modules.itertools.chain([1], [2, 3]) | join }}|{{ modules.itertools.product([1, 2], ['a']) | map('join') | join(',') }}|{{ modules.itertools.combinations([1, 2, 3], 2) | length }}|{{ modules.datetime.datetime(2024, 7, 1, 12).astimezone(modules.pytz.timezone('Europe/Berlin')).strftime('%H:%M') }}|{{ modules.pytz.utc }}",
        &[],
    );
    let out = parsed(&env);
    assert_eq!(
        out,
        "{\"a\":[1,2],\"b\":1}|3|5|k: v|1x2y|123|1a,2a|3|14:00|UTC"
    );
}

#[test]
fn the_root_project_name_is_a_namespace() {
    let env = env_with(
        "{{ shop.greet() }}",
        &[("macros/g.sql", "{% macro greet() %}hi{% endmacro %}")],
    );
    let out = parsed(&env);
    assert_eq!(out, "hi");
}
