//! SQL names of Arrow types, as a warehouse catalog reports them.

use datafusion::arrow::datatypes::DataType;

/// The SQL name of an Arrow type (`BIGINT`, `VARCHAR`, `DECIMAL(10,2)`, ...).
pub fn sql_type(t: &DataType) -> String {
    match t {
        DataType::Boolean => "BOOLEAN".into(),
        DataType::Int8 => "TINYINT".into(),
        DataType::Int16 => "SMALLINT".into(),
        DataType::Int32 => "INTEGER".into(),
        DataType::Int64 => "BIGINT".into(),
        DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64 => {
            "UBIGINT".into()
        }
        DataType::Float16 | DataType::Float32 => "REAL".into(),
        DataType::Float64 => "DOUBLE".into(),
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => format!("DECIMAL({p},{s})"),
        DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 => "VARCHAR".into(),
        DataType::Date32 | DataType::Date64 => "DATE".into(),
        DataType::Timestamp(_, None) => "TIMESTAMP".into(),
        DataType::Timestamp(_, Some(_)) => "TIMESTAMP WITH TIME ZONE".into(),
        DataType::Binary | DataType::BinaryView | DataType::LargeBinary => "BLOB".into(),
        DataType::Dictionary(_, v) => sql_type(v),
        other => other.to_string().to_uppercase(),
    }
}

/// A SQL type to cast to that keeps an Arrow type's precision: as [`sql_type`], except that
/// timestamps keep their unit (`TIMESTAMP(6)` for microseconds, which reach year 9999).
pub fn cast_type(t: &DataType) -> String {
    use datafusion::arrow::datatypes::TimeUnit;
    match t {
        DataType::Timestamp(unit, None) => format!(
            "TIMESTAMP({})",
            match unit {
                TimeUnit::Second => 0,
                TimeUnit::Millisecond => 3,
                TimeUnit::Microsecond => 6,
                TimeUnit::Nanosecond => 9,
            }
        ),
        DataType::Dictionary(_, v) => cast_type(v),
        other => sql_type(other),
    }
}
