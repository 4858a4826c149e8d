//! Schema evolution of a bronze table as loads arrive, under the source's contract.
//!
//! With `contract: evolve` (the default) a new column is added; a column that arrives
//! narrower than the table's (an integer into a double column) is cast to the table's type;
//! one that arrives wider (a double into an integer column) widens the table, its rows
//! rewritten in the load's commit; any other change fails the load, naming the column, both
//! types, where the rows came from and the first value that does not fit, and nothing is
//! written. `freeze` fails on any change of the table's columns. `discard_value` keeps the
//! table's columns: a new column's values are left out, a value that does not fit its
//! column's type becomes NULL. `discard_row` leaves out the rows that have a value in a new
//! column or a value that does not fit.

use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::prelude::{DataFrame, cast, col, try_cast};
use strata_common::quote_ident as q;
use strata_engine::{Error, Result};

/// Whether every value of `from` is a value of `to`.
pub fn widens(from: &DataType, to: &DataType) -> bool {
    use DataType::*;
    let int_bits = |t: &DataType| match t {
        Int8 => Some(8),
        Int16 => Some(16),
        Int32 => Some(32),
        Int64 => Some(64),
        _ => None,
    };
    let uint_bits = |t: &DataType| match t {
        UInt8 => Some(8),
        UInt16 => Some(16),
        UInt32 => Some(32),
        _ => None,
    };
    match (from, to) {
        (a, b) if a == b => true,
        (Null, _) => true,
        (a, b) if int_bits(a).zip(int_bits(b)).is_some_and(|(x, y)| x < y) => true,
        (a, b) if uint_bits(a).zip(int_bits(b)).is_some_and(|(x, y)| x < y) => true,
        (a, Float64) if int_bits(a).or(uint_bits(a)).is_some() => true,
        (Float16 | Float32, Float64) => true,
        (a, Decimal128(p, s)) if int_bits(a).is_some() => {
            let digits = match a {
                Int8 => 3,
                Int16 => 5,
                Int32 => 10,
                _ => 19,
            };
            (i32::from(*p) - i32::from(*s)) >= digits
        }
        (Decimal128(p1, s1), Decimal128(p2, s2)) => {
            s2 >= s1 && (i32::from(*p2) - i32::from(*s2)) >= (i32::from(*p1) - i32::from(*s1))
        }
        (Date32, Timestamp(_, _)) => true,
        (Utf8, LargeUtf8 | Utf8View) => true,
        _ => false,
    }
}

/// What a load does with rows that do not fit the table (a source's `contract:`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Contract {
    /// Add new columns, widen columns safely, fail on anything else.
    #[default]
    Evolve,
    /// Fail on any change of the table's columns or any value that does not fit.
    Freeze,
    /// Leave out the rows that do not fit.
    DiscardRow,
    /// Leave out the values that do not fit (NULL in their place; new columns not added).
    DiscardValue,
}

impl Contract {
    /// The contract a source's `contract:` names.
    pub fn parse(text: &str) -> Option<Contract> {
        Some(match text {
            "evolve" => Contract::Evolve,
            "freeze" => Contract::Freeze,
            "discard_row" => Contract::DiscardRow,
            "discard_value" => Contract::DiscardValue,
            _ => return None,
        })
    }

    fn discards(self) -> bool {
        matches!(self, Contract::DiscardRow | Contract::DiscardValue)
    }
}

/// How one load's columns meet the table's.
#[derive(Debug, Default)]
pub struct Evolution {
    /// The source's contract.
    pub contract: Contract,
    /// Columns of the table to widen to the load's type.
    pub widen: Vec<(String, DataType)>,
}

impl Evolution {
    pub fn new(contract: Contract) -> Self {
        Evolution {
            contract,
            widen: Vec::new(),
        }
    }
}

/// Fit `df` (rows from `origin`: a file, or an endpoint) to the table's `table` schema under
/// the contract: casts its narrower columns up; records in `evolution` the table columns to
/// widen; leaves out (or fails on) what does not fit.
pub async fn fit(
    df: DataFrame,
    table: &Schema,
    origin: &str,
    name: &str,
    evolution: &mut Evolution,
) -> Result<DataFrame> {
    let failed =
        |e: datafusion::error::DataFusionError| Error::user(format!("source `{name}`: {e}"));
    let contract = evolution.contract;
    let mut df = df;
    let incoming: Vec<(String, DataType)> = df
        .schema()
        .fields()
        .iter()
        .map(|f| (f.name().clone(), f.data_type().clone()))
        .collect();
    for (column, arrives) in incoming {
        let Ok(field) = table.field_with_name(&column) else {
            // A new column: added, refused, or left out (with its rows).
            match contract {
                Contract::Evolve => {}
                Contract::Freeze => {
                    return Err(Error::user(format!(
                        "source `{name}`: column `{column}` ({}) in {origin} is not in the table, and the source's contract is `freeze`; nothing was written",
                        strata_engine::types::sql_type(&arrives)
                    ))
                    .with_hint("to take it in, set `contract: evolve` (or rebuild with strata ingest --full-refresh)"));
                }
                Contract::DiscardRow => {
                    df = df
                        .filter(col(q(&column)).is_null())
                        .and_then(|d| d.drop_columns(&[column.as_str()]))
                        .map_err(failed)?;
                }
                Contract::DiscardValue => {
                    df = df.drop_columns(&[column.as_str()]).map_err(failed)?;
                }
            }
            continue;
        };
        let has = field.data_type();
        if arrives == *has {
            continue;
        }
        if widens(&arrives, has) {
            df = df
                .with_column(&column, cast(col(q(&column)), has.clone()))
                .map_err(failed)?;
        } else if widens(has, &arrives) && contract == Contract::Evolve {
            if !evolution.widen.iter().any(|(c, _)| c == &column) {
                evolution.widen.push((column, arrives));
            }
        } else if contract.discards() {
            // Values that do not fit the table's type: NULL, or their rows left out.
            let fitted = try_cast(col(q(&column)), has.clone());
            if contract == Contract::DiscardRow {
                df = df
                    .filter(col(q(&column)).is_null().or(fitted.clone().is_not_null()))
                    .map_err(failed)?;
            }
            df = df.with_column(&column, fitted).map_err(failed)?;
        } else {
            let first = first_misfit(&df, &column, has).await;
            return Err(Error::user(format!(
                "source `{name}`: column `{column}` is {} in {origin} but {} in the table{}{}; nothing was written",
                strata_engine::types::sql_type(&arrives),
                strata_engine::types::sql_type(has),
                first
                    .map(|(row, value)| format!(" (row {row}: `{value}` is not {})", strata_engine::types::sql_type(has)))
                    .unwrap_or_default(),
                match contract {
                    Contract::Freeze => " and the source's contract is `freeze`",
                    _ => "",
                }
            ))
            .with_hint(
                "fix the data; or leave out what does not fit with `contract: discard_row` (or `discard_value`); or rebuild the table with the new type: strata ingest --full-refresh",
            ));
        }
    }
    Ok(df)
}

/// The first row of `df` (from 1, in the order it is read) whose `column` has a value that
/// is not a `to`, with that value as text.
async fn first_misfit(df: &DataFrame, column: &str, to: &DataType) -> Option<(u64, String)> {
    use datafusion::execution::SessionStateBuilder;
    use datafusion::functions_window::expr_fn::row_number;
    // One partition: rows numbered in the order the file holds them.
    let state = df.clone().into_parts().0;
    let config = state.config().clone().with_target_partitions(1);
    let state = SessionStateBuilder::new_from_existing(state)
        .with_config(config)
        .build();
    let value = col(q(column));
    let rows = DataFrame::new(state, df.logical_plan().clone())
        .select(vec![
            row_number().alias("__strata_row"),
            cast(value.clone(), DataType::Utf8).alias("__strata_value"),
            try_cast(value.clone(), to.clone()).alias("__strata_fitted"),
        ])
        .ok()?
        .filter(
            col("__strata_value")
                .is_not_null()
                .and(col("__strata_fitted").is_null()),
        )
        .ok()?
        .limit(0, Some(1))
        .ok()?
        .collect()
        .await
        .ok()?;
    let batch = rows.first().filter(|b| b.num_rows() > 0)?;
    let row = datafusion::arrow::util::display::array_value_to_string(batch.column(0), 0).ok()?;
    let value = datafusion::arrow::util::display::array_value_to_string(batch.column(1), 0).ok()?;
    Some((row.parse().ok()?, value))
}

/// The table's rows with its widened columns cast to their new types.
pub fn widened(table_rows: DataFrame, evolution: &Evolution, name: &str) -> Result<DataFrame> {
    let mut df = table_rows;
    for (column, to) in &evolution.widen {
        df = df
            .with_column(column, cast(col(q(column)), to.clone()))
            .map_err(|e| Error::user(format!("source `{name}`: {e}")))?;
    }
    Ok(df)
}

#[cfg(test)]
mod tests {
    use super::*;
    use DataType::*;

    #[test]
    fn safe_widenings() {
        assert!(widens(&Int32, &Int64));
        assert!(widens(&Int64, &Float64));
        assert!(widens(&Int64, &Decimal128(20, 0)));
        assert!(!widens(&Int64, &Decimal128(18, 2)));
        assert!(widens(&Float32, &Float64));
        assert!(!widens(&Float64, &Int64));
        assert!(!widens(&Utf8, &Int64));
        assert!(!widens(&Int64, &Utf8));
    }
}
