//! Hooks: SQL run before and after a model (`pre-hook`, `post-hook`) and at the start and end
//! of a run (`on-run-start`, `on-run-end`), as dbt has them. Hooks are kept as written and
//! rendered just before they run, in the context of their model (`this`, `config`, ...) or of
//! the run (`schemas`, `results`).
//!
//! A hook is a string of SQL, a `{sql: ..., transaction: ...}` map, or a list of either.
//! Hooks accumulate across configuration layers: the project file's first, then the
//! properties file's, then the model's own `config()`.

use serde::Serialize;
use serde_json::Value as Json;

/// One hook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hook {
    /// The SQL, unrendered.
    pub sql: String,
    /// `transaction: false` asks dbt to run it outside the model's transaction. Strata has no
    /// transaction around a model (each write is one atomic commit), so both run the same way;
    /// it is kept for the manifest.
    pub transaction: bool,
}

/// The hooks a configuration value holds, in order. `what` names it in errors
/// (`pre-hook`, `on-run-start`).
pub fn parse_hooks(value: &Json, what: &str) -> Result<Vec<Hook>, String> {
    let mut out = Vec::new();
    collect(value, what, &mut out)?;
    Ok(out)
}

fn collect(value: &Json, what: &str, out: &mut Vec<Hook>) -> Result<(), String> {
    match value {
        Json::Null => Ok(()),
        Json::String(sql) => {
            if !sql.trim().is_empty() {
                out.push(Hook {
                    sql: sql.clone(),
                    transaction: true,
                });
            }
            Ok(())
        }
        Json::Array(items) => items.iter().try_for_each(|v| collect(v, what, out)),
        Json::Object(map) => {
            let Some(Json::String(sql)) = map.get("sql") else {
                return Err(format!(
                    "a `{what}` given as a map needs `sql:` (a string of SQL)"
                ));
            };
            let transaction = match map.get("transaction") {
                None => true,
                Some(Json::Bool(b)) => *b,
                Some(other) => {
                    return Err(format!(
                        "`transaction` of a `{what}` must be true or false, not {other}"
                    ));
                }
            };
            if let Some(key) = map
                .keys()
                .find(|k| !matches!(k.as_str(), "sql" | "transaction"))
            {
                return Err(format!(
                    "a `{what}` map has `{key}`; it takes `sql` and `transaction`"
                ));
            }
            out.push(Hook {
                sql: sql.clone(),
                transaction,
            });
            Ok(())
        }
        other => Err(format!(
            "`{what}` must be SQL (a string), a map with `sql:`, or a list of them, not {other}"
        )),
    }
}

/// Join two layers of hooks: earlier layers' hooks run first. A hook already there is not
/// added again (a configuration seen twice, as by the parse and compile renders, runs once).
pub fn accumulate(earlier: Option<&Json>, later: Json) -> Json {
    let mut items = match earlier {
        Some(Json::Array(a)) => a.clone(),
        Some(Json::Null) | None => Vec::new(),
        Some(other) => vec![other.clone()],
    };
    let later = match later {
        Json::Array(a) => a,
        Json::Null => Vec::new(),
        other => vec![other],
    };
    for hook in later {
        if !items.contains(&hook) {
            items.push(hook);
        }
    }
    Json::Array(items)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strings_maps_and_lists() {
        let hooks = parse_hooks(
            &json!(["select 1", {"sql": "select 2", "transaction": false}, "  "]),
            "post-hook",
        )
        .expect("valid");
        assert_eq!(
            hooks,
            vec![
                Hook {
                    sql: "select 1".into(),
                    transaction: true
                },
                Hook {
                    sql: "select 2".into(),
                    transaction: false
                },
            ]
        );
        assert_eq!(parse_hooks(&json!(null), "pre-hook"), Ok(vec![]));
    }

    #[test]
    fn bad_hooks_say_what_is_wrong() {
        let err = parse_hooks(&json!(3), "pre-hook").expect_err("number");
        assert!(err.contains("`pre-hook` must be SQL"), "{err}");
        let err = parse_hooks(&json!({"transaction": true}), "post-hook").expect_err("no sql");
        assert!(err.contains("needs `sql:`"), "{err}");
        let err = parse_hooks(&json!({"sql": "x", "transaction": "no"}), "post-hook")
            .expect_err("bad flag");
        assert!(err.contains("must be true or false"), "{err}");
        let err = parse_hooks(&json!({"sql": "x", "sqll": "y"}), "post-hook").expect_err("key");
        assert!(err.contains("has `sqll`"), "{err}");
    }

    #[test]
    fn layers_accumulate_in_order() {
        let one = accumulate(None, json!("a"));
        let two = accumulate(Some(&one), json!(["b", "c"]));
        assert_eq!(two, json!(["a", "b", "c"]));
        assert_eq!(accumulate(Some(&two), json!("b")), two);
    }
}
