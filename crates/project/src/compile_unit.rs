//! Compile a unit test (see [`crate::unit_tests`]): its model rendered with each given input
//! replaced by a CTE of the given rows, and the query of the rows that differ from the
//! expected ones.

use std::collections::HashMap;
use std::sync::Arc;

use crate::compile::{Compiler, ProjectResolver, inject_ctes};
use crate::data_tests::DataTest;
use crate::error::{Error, Result};
use crate::jinja::{Introspector, Overrides, Resolved, Resolver};
use crate::node::RefCall;
use crate::unit_tests::{Input, UnitTest, diff_sql, expected_columns, rows_sql};

/// Marks the ephemeral ids that stand for a unit test's given inputs.
const GIVEN: &str = "__unit_given__.";

/// The project's resolver, with a unit test's inputs answered by CTEs of their rows.
#[derive(Debug)]
struct GivenResolver {
    inner: Arc<ProjectResolver>,
    given: HashMap<Input, String>,
}

impl GivenResolver {
    fn replaced(&self, input: &Input, real: Result<Resolved, String>) -> Result<Resolved, String> {
        match self.given.get(input) {
            Some(cte) => Ok(Resolved {
                relation: real
                    .map(|r| r.relation)
                    .unwrap_or_else(|_| crate::node::Relation::new("", "", cte.clone())),
                ephemeral: Some((format!("{GIVEN}{cte}"), cte.clone())),
                filter: None,
            }),
            None => real,
        }
    }
}

impl Resolver for GivenResolver {
    fn resolve_ref(&self, call: &RefCall) -> Result<Resolved, String> {
        let real = self.inner.resolve_ref(call);
        self.replaced(&Input::Ref(call.name.clone()), real)
    }

    fn resolve_source(&self, source: &str, table: &str) -> Result<Resolved, String> {
        let real = self.inner.resolve_source(source, table);
        self.replaced(&Input::Source(source.into(), table.into()), real)
    }

    fn introspector(&self) -> Option<&dyn Introspector> {
        self.inner.introspector()
    }
}

impl Compiler {
    /// A unit test's query: the rows by which its model's output on the given rows differs
    /// from the expected rows (none when it passes), each marked `-` (expected, missing) or
    /// `+` (produced, unexpected).
    pub(crate) fn compile_unit_test(&mut self, test: &DataTest, unit: &UnitTest) -> Result<String> {
        let fail = |msg: String| Error::user(msg).with_node(format!("unit test `{}`", test.name));
        let model = self
            .project()
            .models
            .values()
            .find(|m| m.name == unit.model && m.refable())
            .cloned()
            .ok_or_else(|| fail(format!("model `{}` does not exist", unit.model)))?;
        let resolver = self.resolver().clone();
        let introspector = resolver.introspector();
        // Each input's rows, typed as the input relation's columns when it exists.
        let mut inputs: HashMap<String, String> = HashMap::new();
        let mut given = HashMap::new();
        for g in &unit.given {
            let real = match &g.input {
                Input::Ref(m) => resolver.resolve_ref(&RefCall {
                    package: None,
                    name: m.clone(),
                }),
                Input::Source(s, t) => resolver.resolve_source(s, t),
            };
            let columns = match (&real, introspector) {
                (Ok(r), Some(i)) => i.columns(&r.relation).map_err(fail)?,
                _ => None,
            };
            let cte = g.input.cte();
            inputs.insert(
                format!("{GIVEN}{cte}"),
                rows_sql(&g.rows, columns.as_deref()),
            );
            given.insert(g.input.clone(), cte);
        }
        let given_resolver: Arc<dyn Resolver> = Arc::new(GivenResolver {
            inner: resolver.clone(),
            given,
        });
        let overrides = Overrides {
            vars: unit.vars.clone(),
            macros: unit.macros.clone(),
            env_vars: unit.env_vars.clone(),
        };
        let (body, captured) = self
            .project()
            .jinja
            .render_with_overrides(
                &model.template,
                self.node_info(&model),
                Some(given_resolver),
                overrides,
            )
            .map_err(|e| {
                Error::jinja(model.original_file_path.clone(), &e).with_node(format!(
                    "unit test `{}` (model `{}`)",
                    test.name, model.name
                ))
            })?;
        let mut ctes = Vec::new();
        for (eph_id, cte) in &captured.ephemerals {
            let sql = match inputs.get(eph_id) {
                Some(rows) => rows.clone(),
                None => self.compile(eph_id)?.sql,
            };
            ctes.push((cte.clone(), sql));
        }
        let actual = inject_ctes(&crate::compile::clean_sql(&body), &ctes);
        // The expected rows take the types of the model's output columns they name.
        let columns = expected_columns(&unit.expect);
        let output: Option<Vec<(String, String)>> = match introspector {
            Some(i) => {
                let probe = format!("select * from (\n{actual}\n) as __unit_probe limit 0");
                i.run_query(&probe).ok().map(|r| r.columns)
            }
            None => None,
        };
        let typed: Option<Vec<(String, String)>> = output.map(|out| {
            columns
                .iter()
                .map(|c| {
                    let ty = out
                        .iter()
                        .find(|(n, _)| n.eq_ignore_ascii_case(c))
                        .map(|(_, t)| t.clone())
                        .unwrap_or_else(|| "VARCHAR".into());
                    (c.clone(), ty)
                })
                .collect()
        });
        let expected = rows_sql(&unit.expect, typed.as_deref());
        Ok(diff_sql(&actual, &expected, &columns))
    }
}
