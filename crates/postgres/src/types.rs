//! PostgreSQL column types and the Arrow types they land as.
//!
//! Types with a binary form worth decoding are read in COPY's binary format; every other type
//! (time, interval, money, inet, ranges, composites, enums, …) is cast to `text` by the
//! extraction query, so any table can be loaded and nothing is silently dropped. Delta Lake
//! has no time-of-day or interval type, which is why those arrive as text.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, TimeUnit};
use tokio_postgres::types::{Kind as PgKind, Type};

/// Unconstrained `numeric` (no precision given) lands as this decimal: 28 digits before the
/// point, 10 after (values with more decimals are rounded).
pub const NUMERIC_DEFAULT: (u8, i8) = (38, 10);

/// How a column is decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Bool,
    Int2,
    Int4,
    Int8,
    /// `oid` (unsigned 32 bits) as a 64-bit integer.
    Oid,
    Float4,
    Float8,
    /// `numeric(p, s)` as decimal(p, s) (p at most 38).
    Numeric(u8, i8),
    /// Text, and every type cast to text.
    Text,
    /// `jsonb`: a version byte, then the text.
    Jsonb,
    Bytea,
    Date,
    Timestamp,
    TimestampTz,
    Uuid,
    /// A one-dimensional array of elements of a decoded kind.
    Array(Box<Kind>),
}

impl Kind {
    /// The Arrow type a column of this kind lands as.
    pub fn arrow(&self) -> DataType {
        match self {
            Kind::Bool => DataType::Boolean,
            Kind::Int2 => DataType::Int16,
            Kind::Int4 => DataType::Int32,
            Kind::Int8 | Kind::Oid => DataType::Int64,
            Kind::Float4 => DataType::Float32,
            Kind::Float8 => DataType::Float64,
            Kind::Numeric(p, s) => DataType::Decimal128(*p, *s),
            Kind::Text | Kind::Jsonb | Kind::Uuid => DataType::Utf8,
            Kind::Bytea => DataType::Binary,
            Kind::Date => DataType::Date32,
            Kind::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            Kind::TimestampTz => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            Kind::Array(item) => DataType::List(Arc::new(Field::new("item", item.arrow(), true))),
        }
    }

    /// Whether the column can be an incremental cursor (values that only grow).
    pub fn is_cursor(&self) -> bool {
        matches!(
            self,
            Kind::Int2
                | Kind::Int4
                | Kind::Int8
                | Kind::Numeric(..)
                | Kind::Date
                | Kind::Timestamp
                | Kind::TimestampTz
        )
    }

    /// Whether the column's values are integers (a key the load can split into ranges).
    pub fn is_integer(&self) -> bool {
        matches!(self, Kind::Int2 | Kind::Int4 | Kind::Int8)
    }
}

/// A column of the extraction query.
#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    /// The type PostgreSQL gives it (`numeric(12,2)`, `mood`), for messages.
    pub pg_type: String,
    pub kind: Kind,
    /// Whether the extraction query casts it to text.
    pub as_text: bool,
}

/// How a column of `ty` (with type modifier `typmod`) is read.
pub fn column(name: &str, ty: &Type, typmod: i32) -> Column {
    let (kind, as_text) = match kind_of(ty, typmod) {
        Some(k) => (k, false),
        None => (Kind::Text, true),
    };
    Column {
        name: name.to_string(),
        pg_type: type_name(ty, typmod),
        kind,
        as_text,
    }
}

fn kind_of(ty: &Type, typmod: i32) -> Option<Kind> {
    Some(match *ty {
        Type::BOOL => Kind::Bool,
        Type::INT2 => Kind::Int2,
        Type::INT4 => Kind::Int4,
        Type::INT8 => Kind::Int8,
        Type::OID => Kind::Oid,
        Type::FLOAT4 => Kind::Float4,
        Type::FLOAT8 => Kind::Float8,
        Type::NUMERIC => {
            let (p, s) = numeric_modifier(typmod);
            Kind::Numeric(p, s)
        }
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::JSON | Type::UNKNOWN => {
            Kind::Text
        }
        Type::JSONB => Kind::Jsonb,
        Type::BYTEA => Kind::Bytea,
        Type::DATE => Kind::Date,
        Type::TIMESTAMP => Kind::Timestamp,
        Type::TIMESTAMPTZ => Kind::TimestampTz,
        Type::UUID => Kind::Uuid,
        _ => match ty.kind() {
            PgKind::Domain(base) => return kind_of(base, -1),
            PgKind::Array(item) => match kind_of(item, typmod)? {
                Kind::Array(_) => return None,
                k => Kind::Array(Box::new(k)),
            },
            _ => return None,
        },
    })
}

/// `numeric(p, s)`'s precision and scale, as decimal(p, s) holds them: unconstrained
/// `numeric` as [`NUMERIC_DEFAULT`]; a precision above 38 as 38.
fn numeric_modifier(typmod: i32) -> (u8, i8) {
    if typmod < 4 {
        return NUMERIC_DEFAULT;
    }
    let precision = ((typmod - 4) >> 16) & 0xffff;
    let scale = (typmod - 4) & 0xffff;
    // A negative scale (PostgreSQL 15) is stored in 11 bits, two's complement.
    let scale = if scale > 1000 { scale - 2048 } else { scale };
    let precision = precision.clamp(1, 38);
    let scale = scale.clamp(0, precision);
    (precision as u8, scale as i8)
}

/// The type as PostgreSQL writes it (`numeric(12,2)`, `varchar`, `mood`).
fn type_name(ty: &Type, typmod: i32) -> String {
    match *ty {
        Type::NUMERIC if typmod >= 4 => {
            let (p, s) = numeric_modifier(typmod);
            format!("numeric({p},{s})")
        }
        _ => ty.name().to_string(),
    }
}

/// The PostgreSQL type a cursor value is cast back to in the extraction query.
pub fn cursor_cast(kind: &Kind) -> &'static str {
    match kind {
        Kind::Int2 | Kind::Int4 | Kind::Int8 => "bigint",
        Kind::Numeric(..) => "numeric",
        Kind::Date => "date",
        Kind::Timestamp => "timestamp",
        _ => "timestamptz",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_modifiers() {
        // numeric(12,2): typmod = (12 << 16 | 2) + 4
        assert_eq!(numeric_modifier((12 << 16 | 2) + 4), (12, 2));
        assert_eq!(numeric_modifier(-1), NUMERIC_DEFAULT);
        assert_eq!(numeric_modifier((60 << 16 | 5) + 4), (38, 5));
    }

    #[test]
    fn kinds() {
        assert_eq!(
            kind_of(&Type::INT4_ARRAY, -1),
            Some(Kind::Array(Box::new(Kind::Int4)))
        );
        assert_eq!(kind_of(&Type::INTERVAL, -1), None);
        assert_eq!(kind_of(&Type::TIME, -1), None);
        assert!(Kind::TimestampTz.is_cursor());
        assert!(!Kind::Text.is_cursor());
    }
}
