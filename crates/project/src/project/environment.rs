//! The Jinja environment of a project: its macros and its packages' macros, dbt's dispatch
//! search orders, Strata's built-in macros and the `target` the templates see.

use std::collections::HashMap;
use std::path::PathBuf;

use indexmap::IndexMap;
use strata_common::{Location, relative_to};

use crate::config::yaml_to_json;
use crate::error::{Error, Result, read_to_string};
use crate::jinja::{Globals, JinjaEnv};
use crate::profile::Target;

use super::Loader;
use super::files::files_with_ext;

/// Strata's own generic tests: not_null, unique, accepted_values, relationships.
const BUILTIN_GENERIC_TESTS: &str = include_str!("../builtin/generic_tests.sql");

/// Strata's implementations of dbt's cross-database macros (`dbt.datediff`, ...).
const BUILTIN_CROSS_DB: &str = include_str!("../builtin/cross_db.sql");

fn target_context(t: &Target) -> IndexMap<String, serde_json::Value> {
    let mut m = t.raw.clone();
    // Secrets never reach templates through `target`.
    for secret in ["password", "private_key", "private_key_passphrase", "token"] {
        m.shift_remove(secret);
    }
    m.insert("name".into(), t.name.clone().into());
    m.insert("target_name".into(), t.name.clone().into());
    m.insert("profile_name".into(), t.profile_name.clone().into());
    m.insert("type".into(), t.kind.clone().into());
    m.insert("schema".into(), t.schema.clone().into());
    m.insert("database".into(), t.database.clone().into());
    m.insert("threads".into(), t.threads.into());
    m
}

impl Loader {
    /// Every macro file, as (file, package, text): Strata's built-ins, then the packages', then
    /// the project's (macro paths, and generic tests under test paths), so later definitions
    /// win. A macro defined twice in the project is an error.
    pub(super) fn macro_files(
        &self,
        packages: &[crate::packages::Package],
    ) -> Result<Vec<(PathBuf, String, String)>> {
        let package = self.config.name.clone();
        // Macros: project macro paths and generic tests under test paths (`tests/generic`).
        let generic_dirs = self.generic_dirs();
        let mut macro_files = Vec::new();
        for (abs, rel) in files_with_ext(&self.root, &self.config.macro_paths, &["sql"])
            .into_iter()
            .chain(files_with_ext(&self.root, &generic_dirs, &["sql"]))
        {
            let text = crate::jinja::tests_as_macros(&read_to_string(&abs)?);
            macro_files.push((rel, package.clone(), text));
        }
        let mut seen_macros: HashMap<String, PathBuf> = HashMap::new();
        for (file, _, text) in &macro_files {
            for (name, line, _) in crate::jinja::find_macros(text) {
                if let Some(first) = seen_macros.insert(name.clone(), file.clone()) {
                    return Err(Error::at(
                        Location::line(file, line),
                        format!("macro `{name}` is also defined in {}", first.display()),
                    )
                    .with_hint("rename one of them; macro names are global to a project"));
                }
            }
        }
        // Package macros come before the root project's, so the root's definitions win.
        let mut package_macros = Vec::new();
        for pkg in packages {
            let dirs: Vec<String> = pkg
                .config
                .macro_paths
                .iter()
                .cloned()
                .chain(
                    pkg.config
                        .test_paths
                        .iter()
                        .map(|t| format!("{}/generic", t.trim_end_matches('/'))),
                )
                .collect();
            for (abs, _) in files_with_ext(&pkg.root, &dirs, &["sql"]) {
                let text = crate::jinja::tests_as_macros(&read_to_string(&abs)?);
                package_macros.push((relative_to(&abs, &self.root), pkg.name.clone(), text));
            }
        }
        macro_files.splice(0..0, package_macros);
        // Built-in macros come first, so a project's own definitions replace them.
        macro_files.insert(
            0,
            (
                PathBuf::from("<strata>/generic_tests.sql"),
                "strata".to_string(),
                crate::jinja::tests_as_macros(BUILTIN_GENERIC_TESTS),
            ),
        );
        macro_files.insert(
            1,
            (
                PathBuf::from("<strata>/cross_db.sql"),
                "strata".to_string(),
                BUILTIN_CROSS_DB.to_string(),
            ),
        );
        Ok(macro_files)
    }

    /// The project file's `dispatch:` list: for each `macro_namespace`, its `search_order`.
    fn dispatch_search_orders(&self) -> Result<IndexMap<String, Vec<String>>> {
        let mut out = IndexMap::new();
        let Some(entries) = self.config.other.get("dispatch") else {
            return Ok(out);
        };
        let bad = || {
            Error::at(
                Location::file(&self.config_path),
                "`dispatch:` must be a list of `{macro_namespace: <package>, search_order: [<package>, ...]}`",
            )
        };
        let yaml_serde::Value::Sequence(entries) = entries else {
            return Err(bad());
        };
        for entry in entries {
            let namespace = entry.get("macro_namespace").and_then(|v| v.as_str());
            let order = entry.get("search_order").and_then(|v| v.as_sequence());
            let (Some(namespace), Some(order)) = (namespace, order) else {
                return Err(bad());
            };
            let order: Option<Vec<String>> = order
                .iter()
                .map(|p| p.as_str().map(str::to_string))
                .collect();
            out.insert(namespace.to_string(), order.ok_or_else(bad)?);
        }
        Ok(out)
    }

    /// The Jinja environment: the dbt context (vars, target, docs, ...) and every macro.
    pub(super) fn jinja_env(
        &self,
        docs: &HashMap<String, String>,
        macro_files: &[(PathBuf, String, String)],
    ) -> Result<JinjaEnv> {
        let globals = Globals {
            project_name: self.config.name.clone(),
            project_vars: self
                .config
                .vars
                .iter()
                .map(|(k, v)| (k.clone(), yaml_to_json(v)))
                .collect(),
            cli_vars: self.cli_vars.clone(),
            docs: docs.clone(),
            target: target_context(&self.target),
            run_started_at: self.run_started_at,
            invocation_id: self.invocation_id.clone(),
            full_refresh: self.full_refresh,
            dispatch: self.dispatch_search_orders()?,
        };
        JinjaEnv::new(globals, macro_files).map_err(|(file, e)| {
            Error::jinja(file, &e).with_hint(
                "fix the macro's Jinja syntax: every {% macro %} needs an {% endmacro %}",
            )
        })
    }
}
