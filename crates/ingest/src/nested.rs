//! Nested records (JSON objects within objects): kept as struct columns, or, with `flatten:
//! true`, spread into one column per leaf named by its path (`customer__address__city`).

use datafusion::arrow::datatypes::DataType;
use datafusion::functions::core::expr_fn::get_field;
use datafusion::prelude::{DataFrame, col};
use strata_common::quote_ident as q;
use strata_engine::{Error, Result};

/// The separator of a flattened column's path.
pub const SEPARATOR: &str = "__";

/// `df` with every struct column replaced by its fields, as columns `parent__child`, down to
/// the leaves (lists stay lists).
pub fn flatten(df: DataFrame, name: &str) -> Result<DataFrame> {
    let mut df = df;
    loop {
        let fields = df.schema().fields().clone();
        if !fields
            .iter()
            .any(|f| matches!(f.data_type(), DataType::Struct(_)))
        {
            return Ok(df);
        }
        let mut columns = Vec::new();
        for f in fields.iter() {
            match f.data_type() {
                DataType::Struct(children) => {
                    for c in children.iter() {
                        columns.push(
                            get_field(col(q(f.name())), c.name().as_str()).alias(format!(
                                "{}{SEPARATOR}{}",
                                f.name(),
                                c.name()
                            )),
                        );
                    }
                }
                _ => columns.push(col(q(f.name()))),
            }
        }
        df = df
            .select(columns)
            .map_err(|e| Error::user(format!("source `{name}`: flattening: {e}")))?;
    }
}
