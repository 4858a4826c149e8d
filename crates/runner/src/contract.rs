//! Model contracts: `contract: {enforced: true}` with a `data_type` for every column. The
//! model's query must produce exactly those columns with those types; it is checked before
//! anything is written, and the table gets the contract's column order.

use datafusion::arrow::datatypes::DataType;
use strata_common::quote_ident;
use strata_project::Model;

use strata_engine::Warehouse;

/// Whether the model's contract is enforced.
pub fn enforced(model: &Model) -> bool {
    match model.config.get("contract") {
        Some(serde_json::Value::Object(c)) => c
            .get("enforced")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false),
        _ => false,
    }
}

/// Types that a warehouse would call the same: text of any width, timestamps of any unit.
fn same_type(a: &DataType, b: &DataType) -> bool {
    use DataType::*;
    match (a, b) {
        (Utf8 | Utf8View | LargeUtf8, Utf8 | Utf8View | LargeUtf8) => true,
        (Timestamp(_, x), Timestamp(_, y)) => x == y,
        (Dictionary(_, v), other) | (other, Dictionary(_, v)) => same_type(v, other),
        _ => a == b,
    }
}

/// Check the contract of `model` against its compiled query. Returns the SQL to build (the
/// query with its columns in contract order), or a message with the differences.
pub async fn enforce(
    warehouse: &dyn Warehouse,
    model: &Model,
    sql: &str,
) -> Result<String, String> {
    if !enforced(model) {
        return Ok(sql.to_string());
    }
    let missing_types: Vec<&str> = model
        .columns
        .values()
        .filter(|c| c.data_type.as_deref().is_none_or(|t| t.trim().is_empty()))
        .map(|c| c.name.as_str())
        .collect();
    if model.columns.is_empty() || !missing_types.is_empty() {
        return Err(format!(
            "the contract of model `{}` is enforced, but {} — give every column a `data_type` in the model's properties file",
            model.name,
            if model.columns.is_empty() {
                "it lists no columns".to_string()
            } else {
                format!(
                    "these columns have no data_type: {}",
                    missing_types.join(", ")
                )
            }
        ));
    }
    let actual = warehouse.describe(sql).await.map_err(|e| e.to_string())?;
    let mut rows = Vec::new();
    let mut ok = true;
    for c in model.columns.values() {
        let declared = c.data_type.clone().unwrap_or_default();
        let expected = warehouse
            .describe(&format!("select cast(null as {declared}) as x"))
            .await
            .map_err(|e| {
                format!(
                    "column `{}`: `{declared}` is not a type Strata knows: {e}",
                    c.name
                )
            })?;
        let expected = expected.field(0).data_type().clone();
        match actual.field_with_name(&c.name) {
            Ok(f) if same_type(f.data_type(), &expected) => {
                rows.push((c.name.clone(), declared, f.data_type().to_string(), "ok"));
            }
            Ok(f) => {
                ok = false;
                rows.push((
                    c.name.clone(),
                    declared,
                    f.data_type().to_string(),
                    "type differs",
                ));
            }
            Err(_) => {
                ok = false;
                rows.push((
                    c.name.clone(),
                    declared,
                    "(missing)".into(),
                    "missing from the query",
                ));
            }
        }
    }
    for f in actual.fields() {
        if !model.columns.contains_key(f.name()) {
            ok = false;
            rows.push((
                f.name().clone(),
                "(missing)".into(),
                f.data_type().to_string(),
                "not in the contract",
            ));
        }
    }
    if !ok {
        let width = rows.iter().map(|r| r.0.len()).max().unwrap_or(6).max(6);
        let decl_w = rows.iter().map(|r| r.1.len()).max().unwrap_or(8).max(8);
        let act_w = rows.iter().map(|r| r.2.len()).max().unwrap_or(5).max(5);
        let mut text = format!(
            "the query of model `{}` does not match its contract; nothing was written:\n  {:width$}  {:decl_w$}  {:act_w$}\n",
            model.name, "column", "contract", "query"
        );
        for (name, declared, found, verdict) in rows {
            text.push_str(&format!(
                "  {name:width$}  {declared:decl_w$}  {found:act_w$}  {verdict}\n"
            ));
        }
        return Err(text.trim_end().to_string());
    }
    let columns: Vec<String> = model.columns.keys().map(|c| quote_ident(c)).collect();
    Ok(format!(
        "select {} from (\n{sql}\n) as contracted",
        columns.join(", ")
    ))
}
