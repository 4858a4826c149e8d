//! Schema evolution of a bronze table as loads arrive: a new column is added; a column that
//! arrives narrower than the table's (an integer into a double column) is cast to the table's
//! type; one that arrives wider (a double into an integer column) widens the table, its rows
//! rewritten in the load's commit; any other change fails the load, naming the column, both
//! types and where the rows came from, and nothing is written.

use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::prelude::{DataFrame, cast, col};
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

/// How one load's columns meet the table's.
#[derive(Debug, Default)]
pub struct Evolution {
    /// Columns of the table to widen to the load's type.
    pub widen: Vec<(String, DataType)>,
}

/// Fit `df` (rows from `origin`: a file, or an endpoint) to the table's `table` schema: casts
/// its narrower columns up; records in `evolution` the table columns to widen; fails on an
/// incompatible column.
pub fn fit(
    df: DataFrame,
    table: &Schema,
    origin: &str,
    name: &str,
    evolution: &mut Evolution,
) -> Result<DataFrame> {
    let mut df = df;
    let incoming: Vec<(String, DataType)> = df
        .schema()
        .fields()
        .iter()
        .map(|f| (f.name().clone(), f.data_type().clone()))
        .collect();
    for (column, arrives) in incoming {
        let Ok(field) = table.field_with_name(&column) else {
            continue; // a new column: added
        };
        let has = field.data_type();
        if arrives == *has {
            continue;
        }
        if widens(&arrives, has) {
            df = df
                .with_column(&column, cast(col(q(&column)), has.clone()))
                .map_err(|e| Error::user(format!("source `{name}`: {e}")))?;
        } else if widens(has, &arrives) {
            if !evolution.widen.iter().any(|(c, _)| c == &column) {
                evolution.widen.push((column, arrives));
            }
        } else {
            return Err(Error::user(format!(
                "source `{name}`: column `{column}` is {} in {origin} but {} in the table; nothing was written",
                strata_engine::types::sql_type(&arrives),
                strata_engine::types::sql_type(has)
            ))
            .with_hint(
                "fix the data, or rebuild the table with the new type: strata ingest --full-refresh",
            ));
        }
    }
    Ok(df)
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
