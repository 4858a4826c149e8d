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
