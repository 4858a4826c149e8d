//! Row quarantine: the row checks a model declares in its `quarantine:` config. Rows failing
//! one are set aside in `<schema>_quarantine.<model>` instead of failing the build; the rest
//! are written in the same run.
//!
//! ```yaml
//! quarantine:
//!   - not_null: id                                   # or a list of columns
//!   - accepted_values: {column: status, values: [placed, shipped]}
//!   - expression: "amount >= 0"
//! ```
//!
//! As in dbt's tests, NULL is not judged by `accepted_values` or `expression` (use
//! `not_null` for that).

use serde_json::Value as Json;

/// The config key.
pub const KEY: &str = "quarantine";

/// Where a model's quarantined rows go: `<schema>_quarantine.<model>`, in its database.
pub fn relation(model: &crate::Relation) -> crate::Relation {
    crate::Relation::new(
        &model.database,
        format!("{}_quarantine", model.schema),
        &model.identifier,
    )
}

/// One row check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowCheck {
    /// How it is named in the quarantine table (`not_null(id)`).
    pub name: String,
    /// The column it checks, if one (checked against the model's columns before a build).
    pub column: Option<String>,
    /// SQL true exactly when a row fails the check (never NULL).
    pub failing: String,
}

/// The checks of a `quarantine:` config; an error says what is wrong and how to write it.
pub fn checks(value: &Json) -> Result<Vec<RowCheck>, String> {
    const FORMS: &str = "write each check as `not_null: id`, `accepted_values: {column: status, values: [a, b]}` or `expression: \"amount >= 0\"`";
    const KINDS: [&str; 3] = ["not_null", "accepted_values", "expression"];
    let Json::Array(items) = value else {
        return Err(format!(
            "`quarantine` must be a list of row checks; {FORMS}"
        ));
    };
    let mut out = Vec::new();
    for item in items {
        let Some((kind, arg)) = item
            .as_object()
            .filter(|m| m.len() == 1)
            .and_then(|m| m.iter().next())
        else {
            return Err(format!("cannot read the quarantine check {item}; {FORMS}"));
        };
        match kind.as_str() {
            "not_null" => {
                let columns: Vec<&str> = match arg {
                    Json::String(s) => vec![s.as_str()],
                    Json::Array(a) => a.iter().filter_map(Json::as_str).collect(),
                    _ => Vec::new(),
                };
                if columns.is_empty() || matches!(arg, Json::Array(a) if a.len() != columns.len()) {
                    return Err(format!(
                        "`not_null` takes a column or a list of columns, not {arg}"
                    ));
                }
                for c in columns {
                    out.push(RowCheck {
                        name: format!("not_null({c})"),
                        column: Some(c.to_string()),
                        failing: format!("{c} is null"),
                    });
                }
            }
            "accepted_values" => {
                let m = arg.as_object().ok_or_else(|| {
                    format!("`accepted_values` takes {{column: ..., values: [...]}}, not {arg}")
                })?;
                for k in m.keys() {
                    if !["column", "values", "quote"].contains(&k.as_str()) {
                        return Err(format!(
                            "`accepted_values` takes column, values and quote, not `{k}`{}",
                            strata_common::did_you_mean(k, ["column", "values", "quote"])
                        ));
                    }
                }
                let column = m.get("column").and_then(Json::as_str).ok_or(
                    "`accepted_values` needs `column`: the column whose values are checked",
                )?;
                let values = m
                    .get("values")
                    .and_then(Json::as_array)
                    .filter(|v| !v.is_empty())
                    .ok_or("`accepted_values` needs `values`: a list of the values accepted")?;
                let quote = m.get("quote").and_then(Json::as_bool).unwrap_or(true);
                let listed: Vec<String> = values
                    .iter()
                    .map(|v| {
                        let text = match v {
                            Json::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        match quote {
                            true => strata_common::quote_literal(&text),
                            false => text,
                        }
                    })
                    .collect();
                out.push(RowCheck {
                    name: format!("accepted_values({column})"),
                    column: Some(column.to_string()),
                    failing: format!(
                        "coalesce(cast({column} as varchar) not in ({}), false)",
                        if quote {
                            listed.join(", ")
                        } else {
                            listed
                                .iter()
                                .map(|v| format!("cast({v} as varchar)"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        }
                    ),
                });
            }
            "expression" => {
                let expr = arg
                    .as_str()
                    .filter(|e| !e.trim().is_empty())
                    .ok_or_else(|| format!("`expression` takes SQL text, not {arg}"))?;
                out.push(RowCheck {
                    name: format!("expression({})", expr.trim()),
                    column: None,
                    failing: format!("coalesce(not ({expr}), false)"),
                });
            }
            other => {
                return Err(format!(
                    "`{other}` is not a quarantine check{}; {FORMS}",
                    strata_common::did_you_mean(other, KINDS)
                ));
            }
        }
    }
    if out.is_empty() {
        return Err(format!("`quarantine` lists no checks; {FORMS}"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_read_as_sql() {
        let v: Json = serde_json::json!([
            {"not_null": ["id", "status"]},
            {"accepted_values": {"column": "status", "values": ["a", "b's"]}},
            {"expression": "amount >= 0"}
        ]);
        let c = checks(&v).expect("checks");
        assert_eq!(c.len(), 4);
        assert_eq!(c[0].failing, "id is null");
        assert_eq!(c[1].name, "not_null(status)");
        assert_eq!(
            c[2].failing,
            "coalesce(cast(status as varchar) not in ('a', 'b''s'), false)"
        );
        assert_eq!(c[3].failing, "coalesce(not (amount >= 0), false)");
    }

    #[test]
    fn wrong_checks_say_how_to_write_them() {
        let e = checks(&serde_json::json!([{"not_nul": "id"}])).expect_err("error");
        assert!(e.contains("did you mean `not_null`"), "{e}");
        let e = checks(&serde_json::json!({"not_null": "id"})).expect_err("error");
        assert!(e.contains("must be a list"), "{e}");
        let e =
            checks(&serde_json::json!([{"accepted_values": {"column": "s"}}])).expect_err("error");
        assert!(e.contains("needs `values`"), "{e}");
    }
}
