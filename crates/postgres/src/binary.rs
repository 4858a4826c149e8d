//! Decoding of `COPY … TO STDOUT (FORMAT binary)` into Arrow record batches.
//!
//! The format: an 11-byte signature, flags and a header extension; then one tuple per row (a
//! 16-bit field count, then per field a 32-bit length, -1 for NULL, and that many bytes in the
//! type's binary form); then a count of -1. Rows may be split across the chunks the server
//! sends: a row is decoded only once all its bytes are in.

use std::sync::Arc;

use datafusion::arrow::array::builder::NullBufferBuilder;
use datafusion::arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Float32Builder,
    Float64Builder, Int16Builder, Int32Builder, Int64Builder, ListArray, RecordBatch,
    StringBuilder, TimestampMicrosecondBuilder,
};
use datafusion::arrow::buffer::{OffsetBuffer, ScalarBuffer};
use datafusion::arrow::datatypes::{Field, FieldRef, SchemaRef};

use crate::types::{Column, Kind};

const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";
/// Days from 1970-01-01 (Arrow's epoch) to 2000-01-01 (PostgreSQL's).
const EPOCH_DAYS: i32 = 10_957;
/// Microseconds from 1970-01-01 to 2000-01-01.
const EPOCH_MICROS: i64 = 946_684_800_000_000;

/// What to do with a value that has no place in its column (a numeric NaN, an infinite date).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnBad {
    /// Fail the load, naming the row and the column.
    Fail,
    /// Load NULL in its place.
    Null,
    /// Leave the row out.
    DropRow,
}

/// A value that could not be loaded.
#[derive(Debug)]
pub struct BadValue {
    /// The row's number in the extraction (from 1).
    pub row: u64,
    pub column: String,
    pub pg_type: String,
    pub why: String,
}

/// Decodes a COPY binary stream into batches of rows.
pub struct Decoder {
    schema: SchemaRef,
    columns: Vec<Column>,
    builders: Vec<Builder>,
    on_bad: OnBad,
    header_read: bool,
    /// The end of the data was read.
    pub finished: bool,
    pending: Vec<u8>,
    /// Rows decoded so far (all batches).
    pub rows: u64,
    buffered: usize,
    /// Rows of the current batch to leave out (with `OnBad::DropRow`).
    dropped: Vec<usize>,
    /// Values replaced by NULL or rows left out, with the first such value.
    pub discarded: (u64, Option<BadValue>),
}

impl Decoder {
    pub fn new(schema: SchemaRef, columns: Vec<Column>, on_bad: OnBad) -> Self {
        let builders = columns.iter().map(|c| Builder::new(&c.kind)).collect();
        Decoder {
            schema,
            columns,
            builders,
            on_bad,
            header_read: false,
            finished: false,
            pending: Vec::new(),
            rows: 0,
            buffered: 0,
            dropped: Vec::new(),
            discarded: (0, None),
        }
    }

    /// Rows decoded and not yet taken by [`Decoder::batch`].
    pub fn buffered(&self) -> usize {
        self.buffered
    }

    /// Decode the complete rows of `chunk` (with what was left of the chunk before).
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), DecodeError> {
        if self.pending.is_empty() {
            let used = self.parse(chunk)?;
            self.pending.extend_from_slice(&chunk[used..]);
        } else {
            let mut data = std::mem::take(&mut self.pending);
            data.extend_from_slice(chunk);
            let used = self.parse(&data)?;
            data.drain(..used);
            self.pending = data;
        }
        Ok(())
    }

    /// Whether the stream ended cleanly (the end marker read, no partial row left).
    pub fn check_end(&self) -> Result<(), DecodeError> {
        match (self.finished, self.pending.is_empty()) {
            (true, true) => Ok(()),
            _ => Err(DecodeError::Format(
                "the server's data ended in the middle of a row".into(),
            )),
        }
    }

    fn parse(&mut self, data: &[u8]) -> Result<usize, DecodeError> {
        let mut pos = 0;
        if !self.header_read {
            if data.len() < SIGNATURE.len() + 8 {
                return Ok(0);
            }
            if &data[..SIGNATURE.len()] != SIGNATURE {
                return Err(DecodeError::Format(
                    "the server's answer is not COPY binary data".into(),
                ));
            }
            let ext = be_i32(&data[SIGNATURE.len() + 4..]) as usize;
            if data.len() < SIGNATURE.len() + 8 + ext {
                return Ok(0);
            }
            pos = SIGNATURE.len() + 8 + ext;
            self.header_read = true;
        }
        let width = self.columns.len();
        while !self.finished && data.len() - pos >= 2 {
            let count = i16::from_be_bytes([data[pos], data[pos + 1]]);
            if count == -1 {
                self.finished = true;
                pos += 2;
                break;
            }
            if count as usize != width {
                return Err(DecodeError::Format(format!(
                    "a row has {count} fields where {width} were expected"
                )));
            }
            // The row is decoded only when all of it has arrived.
            let mut end = pos + 2;
            let mut complete = true;
            for _ in 0..width {
                if data.len() - end < 4 {
                    complete = false;
                    break;
                }
                let len = be_i32(&data[end..]);
                end += 4;
                if len > 0 {
                    if data.len() - end < len as usize {
                        complete = false;
                        break;
                    }
                    end += len as usize;
                }
            }
            if !complete {
                break;
            }
            self.rows += 1;
            let mut at = pos + 2;
            let mut drop_row = false;
            for (i, builder) in self.builders.iter_mut().enumerate() {
                let len = be_i32(&data[at..]);
                at += 4;
                let value = match len {
                    l if l < 0 => None,
                    l => {
                        let v = &data[at..at + l as usize];
                        at += l as usize;
                        Some(v)
                    }
                };
                if let Err(why) = builder.append(value) {
                    let column = &self.columns[i];
                    let bad = BadValue {
                        row: self.rows,
                        column: column.name.clone(),
                        pg_type: column.pg_type.clone(),
                        why,
                    };
                    if self.on_bad == OnBad::Fail {
                        return Err(DecodeError::Value(bad));
                    }
                    builder.append_null();
                    drop_row |= self.on_bad == OnBad::DropRow;
                    if self.discarded.1.is_none() {
                        self.discarded.1 = Some(bad);
                    }
                    if self.on_bad == OnBad::Null {
                        self.discarded.0 += 1;
                    }
                }
            }
            if drop_row {
                self.dropped.push(self.buffered);
                self.discarded.0 += 1;
            }
            self.buffered += 1;
            pos = end;
        }
        Ok(pos)
    }

    /// The rows decoded since the last batch, as a batch.
    pub fn batch(&mut self) -> Result<RecordBatch, DecodeError> {
        let arrays: Vec<ArrayRef> = self.builders.iter_mut().map(Builder::finish).collect();
        let batch = RecordBatch::try_new(self.schema.clone(), arrays)
            .map_err(|e| DecodeError::Format(e.to_string()))?;
        let rows = std::mem::take(&mut self.buffered);
        if self.dropped.is_empty() {
            return Ok(batch);
        }
        let mut keep = vec![true; rows];
        for i in self.dropped.drain(..) {
            keep[i] = false;
        }
        datafusion::arrow::compute::filter_record_batch(&batch, &keep.into())
            .map_err(|e| DecodeError::Format(e.to_string()))
    }
}

/// Why decoding stopped.
#[derive(Debug)]
pub enum DecodeError {
    /// The stream is not what COPY binary sends.
    Format(String),
    /// A value has no place in its column.
    Value(BadValue),
}

fn be_i32(b: &[u8]) -> i32 {
    i32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn be_i16(b: &[u8]) -> i16 {
    i16::from_be_bytes([b[0], b[1]])
}

fn fixed<const N: usize>(b: &[u8]) -> Result<[u8; N], String> {
    b.try_into()
        .map_err(|_| format!("has {} bytes where {N} were expected", b.len()))
}

/// A column being built.
enum Builder {
    Bool(BooleanBuilder),
    I16(Int16Builder),
    I32(Int32Builder),
    I64(Int64Builder),
    Oid(Int64Builder),
    F32(Float32Builder),
    F64(Float64Builder),
    Dec(Decimal128Builder, u8, i8),
    Text(StringBuilder),
    Jsonb(StringBuilder),
    Uuid(StringBuilder),
    Bytes(BinaryBuilder),
    Date(Date32Builder),
    Ts(TimestampMicrosecondBuilder, Option<Arc<str>>),
    List {
        field: FieldRef,
        item: Box<Builder>,
        offsets: Vec<i32>,
        nulls: NullBufferBuilder,
    },
}

impl Builder {
    fn new(kind: &Kind) -> Builder {
        match kind {
            Kind::Bool => Builder::Bool(BooleanBuilder::new()),
            Kind::Int2 => Builder::I16(Int16Builder::new()),
            Kind::Int4 => Builder::I32(Int32Builder::new()),
            Kind::Int8 => Builder::I64(Int64Builder::new()),
            Kind::Oid => Builder::Oid(Int64Builder::new()),
            Kind::Float4 => Builder::F32(Float32Builder::new()),
            Kind::Float8 => Builder::F64(Float64Builder::new()),
            Kind::Numeric(p, s) => Builder::Dec(Decimal128Builder::new(), *p, *s),
            Kind::Text => Builder::Text(StringBuilder::new()),
            Kind::Jsonb => Builder::Jsonb(StringBuilder::new()),
            Kind::Uuid => Builder::Uuid(StringBuilder::new()),
            Kind::Bytea => Builder::Bytes(BinaryBuilder::new()),
            Kind::Date => Builder::Date(Date32Builder::new()),
            Kind::Timestamp => Builder::Ts(TimestampMicrosecondBuilder::new(), None),
            Kind::TimestampTz => {
                Builder::Ts(TimestampMicrosecondBuilder::new(), Some("UTC".into()))
            }
            Kind::Array(item) => Builder::List {
                field: Arc::new(Field::new("item", item.arrow(), true)),
                item: Box::new(Builder::new(item)),
                offsets: vec![0],
                nulls: NullBufferBuilder::new(0),
            },
        }
    }

    fn append_null(&mut self) {
        match self {
            Builder::Bool(b) => b.append_null(),
            Builder::I16(b) => b.append_null(),
            Builder::I32(b) => b.append_null(),
            Builder::I64(b) | Builder::Oid(b) => b.append_null(),
            Builder::F32(b) => b.append_null(),
            Builder::F64(b) => b.append_null(),
            Builder::Dec(b, ..) => b.append_null(),
            Builder::Text(b) | Builder::Jsonb(b) | Builder::Uuid(b) => b.append_null(),
            Builder::Bytes(b) => b.append_null(),
            Builder::Date(b) => b.append_null(),
            Builder::Ts(b, _) => b.append_null(),
            Builder::List { offsets, nulls, .. } => {
                offsets.push(*offsets.last().unwrap_or(&0));
                nulls.append_null();
            }
        }
    }

    /// Append one value (None: NULL); on a value with no place in the column, say why and
    /// append nothing.
    fn append(&mut self, value: Option<&[u8]>) -> Result<(), String> {
        let Some(v) = value else {
            self.append_null();
            return Ok(());
        };
        match self {
            Builder::Bool(b) => b.append_value(v.first().is_some_and(|x| *x != 0)),
            Builder::I16(b) => b.append_value(i16::from_be_bytes(fixed(v)?)),
            Builder::I32(b) => b.append_value(i32::from_be_bytes(fixed(v)?)),
            Builder::I64(b) => b.append_value(i64::from_be_bytes(fixed(v)?)),
            Builder::Oid(b) => b.append_value(i64::from(u32::from_be_bytes(fixed(v)?))),
            Builder::F32(b) => b.append_value(f32::from_be_bytes(fixed(v)?)),
            Builder::F64(b) => b.append_value(f64::from_be_bytes(fixed(v)?)),
            Builder::Dec(b, p, s) => b.append_value(numeric(v, *p, *s)?),
            Builder::Text(b) => b.append_value(text(v)?),
            Builder::Jsonb(b) => match v.split_first() {
                Some((1, rest)) => b.append_value(text(rest)?),
                _ => return Err("is jsonb of an unknown version".into()),
            },
            Builder::Uuid(b) => b.append_value(uuid(&fixed::<16>(v)?)),
            Builder::Bytes(b) => b.append_value(v),
            Builder::Date(b) => match i32::from_be_bytes(fixed(v)?) {
                i32::MAX => return Err("is the date 'infinity'".into()),
                i32::MIN => return Err("is the date '-infinity'".into()),
                d => b.append_value(d.saturating_add(EPOCH_DAYS)),
            },
            Builder::Ts(b, _) => match i64::from_be_bytes(fixed(v)?) {
                i64::MAX => return Err("is the timestamp 'infinity'".into()),
                i64::MIN => return Err("is the timestamp '-infinity'".into()),
                t => b.append_value(t.saturating_add(EPOCH_MICROS)),
            },
            Builder::List {
                item,
                offsets,
                nulls,
                ..
            } => {
                let appended = array(v, item)?;
                let last = *offsets.last().unwrap_or(&0);
                offsets.push(last + appended);
                nulls.append_non_null();
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Builder::Bool(b) => Arc::new(b.finish()),
            Builder::I16(b) => Arc::new(b.finish()),
            Builder::I32(b) => Arc::new(b.finish()),
            Builder::I64(b) | Builder::Oid(b) => Arc::new(b.finish()),
            Builder::F32(b) => Arc::new(b.finish()),
            Builder::F64(b) => Arc::new(b.finish()),
            Builder::Dec(b, p, s) => Arc::new(
                b.finish()
                    .with_precision_and_scale(*p, *s)
                    .unwrap_or_else(|_| unreachable!("precision checked when mapped")),
            ),
            Builder::Text(b) | Builder::Jsonb(b) | Builder::Uuid(b) => Arc::new(b.finish()),
            Builder::Bytes(b) => Arc::new(b.finish()),
            Builder::Date(b) => Arc::new(b.finish()),
            Builder::Ts(b, tz) => Arc::new(b.finish().with_timezone_opt(tz.clone())),
            Builder::List {
                field,
                item,
                offsets,
                nulls,
            } => {
                let values = item.finish();
                let offsets = std::mem::replace(offsets, vec![0]);
                let offsets = OffsetBuffer::new(ScalarBuffer::from(offsets));
                Arc::new(ListArray::new(
                    field.clone(),
                    offsets,
                    values,
                    nulls.finish(),
                ))
            }
        }
    }
}

fn text(v: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(v).map_err(|_| "is not valid UTF-8 text".to_string())
}

fn uuid(b: &[u8; 16]) -> String {
    let mut s = String::with_capacity(36);
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push_str(&format!("{byte:02x}"));
    }
    s
}

/// The elements of a binary array value appended to `item`; their count.
fn array(v: &[u8], item: &mut Builder) -> Result<i32, String> {
    if v.len() < 12 {
        return Err("is a malformed array".into());
    }
    let dims = be_i32(v);
    if dims == 0 {
        return Ok(0);
    }
    if dims != 1 {
        return Err(format!(
            "is a {dims}-dimensional array; only one-dimensional arrays are loaded (cast it to text in a `query:`)"
        ));
    }
    if v.len() < 20 {
        return Err("is a malformed array".into());
    }
    let count = be_i32(&v[12..]);
    let mut at = 20;
    for _ in 0..count {
        if v.len() < at + 4 {
            return Err("is a malformed array".into());
        }
        let len = be_i32(&v[at..]);
        at += 4;
        if len < 0 {
            item.append_null();
            continue;
        }
        let end = at + len as usize;
        if v.len() < end {
            return Err("is a malformed array".into());
        }
        item.append(Some(&v[at..end]))
            .map_err(|why| format!("has an element that {why}"))?;
        at = end;
    }
    Ok(count)
}

/// A binary `numeric` as a decimal(precision, scale) value: base-10000 digits with a weight
/// (the power of 10000 of the first digit), rounded half away from zero to `scale`.
fn numeric(v: &[u8], precision: u8, scale: i8) -> Result<i128, String> {
    if v.len() < 8 {
        return Err("is a malformed numeric".into());
    }
    let ndigits = be_i16(v).max(0) as usize;
    let weight = i32::from(be_i16(&v[2..]));
    let sign = u16::from_be_bytes([v[4], v[5]]);
    match sign {
        0xC000 => return Err("is NaN".into()),
        0xD000 => return Err("is Infinity".into()),
        0xF000 => return Err("is -Infinity".into()),
        _ => {}
    }
    if v.len() < 8 + 2 * ndigits {
        return Err("is a malformed numeric".into());
    }
    let overflow = || format!("does not fit decimal({precision},{scale})");
    let mut value: i128 = 0;
    for i in 0..ndigits {
        let digit = i128::from(be_i16(&v[8 + 2 * i..]));
        // The power of ten this digit's units stand for, at the target scale.
        let power = 4 * (weight - i as i32) + i32::from(scale);
        if power >= 0 {
            let factor = 10i128.checked_pow(power as u32).ok_or_else(overflow)?;
            value = digit
                .checked_mul(factor)
                .and_then(|d| value.checked_add(d))
                .ok_or_else(overflow)?;
        } else {
            // The first digit past the scale: round on it, ignore the rest.
            let divisor = 10i128.pow((-power).min(4) as u32);
            let kept = if power > -4 { digit / divisor } else { 0 };
            let rest = if power > -4 { digit % divisor } else { digit };
            let half = if power > -4 { divisor } else { 10_000 };
            value += kept;
            if rest * 2 >= half {
                value += 1;
            }
            break;
        }
    }
    if value >= 10i128.pow(u32::from(precision)) {
        return Err(overflow());
    }
    Ok(if sign == 0x4000 { -value } else { value })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A numeric in binary form from its digits.
    fn num(digits: &[i16], weight: i16, negative: bool, dscale: i16) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend((digits.len() as i16).to_be_bytes());
        v.extend(weight.to_be_bytes());
        v.extend((if negative { 0x4000u16 } else { 0 }).to_be_bytes());
        v.extend(dscale.to_be_bytes());
        for d in digits {
            v.extend(d.to_be_bytes());
        }
        v
    }

    #[test]
    fn numerics() {
        // 1234.56 = [1234, 5600] weight 0
        assert_eq!(numeric(&num(&[1234, 5600], 0, false, 2), 12, 2), Ok(123456));
        assert_eq!(numeric(&num(&[1234, 5600], 0, true, 2), 12, 2), Ok(-123456));
        // 12345678.9 = [1234, 5678, 9000] weight 1
        assert_eq!(
            numeric(&num(&[1234, 5678, 9000], 1, false, 1), 38, 10),
            Ok(123456789 * 10i128.pow(9))
        );
        // 0.00015 = [1, 5000] weight -1 → at scale 4 rounds to 0.0002
        assert_eq!(numeric(&num(&[1, 5000], -1, false, 5), 10, 4), Ok(2));
        // 0.0001 at scale 2 → 0
        assert_eq!(numeric(&num(&[1], -1, false, 4), 10, 2), Ok(0));
        // 10^40 does not fit
        assert!(numeric(&num(&[1], 10, false, 0), 38, 0).is_err());
        // 1000 does not fit decimal(3,0)
        assert!(numeric(&num(&[1000], 0, false, 0), 3, 0).is_err());
        assert_eq!(numeric(&num(&[], 0, false, 0), 10, 2), Ok(0));
    }

    #[test]
    fn uuids() {
        let b: [u8; 16] = [
            0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8, 0xbb, 0x6d, 0x6b, 0xb9, 0xbd, 0x38,
            0x0a, 0x11,
        ];
        assert_eq!(uuid(&b), "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
    }

    #[test]
    fn rows_split_across_chunks() {
        let columns = vec![
            Column {
                name: "id".into(),
                pg_type: "int4".into(),
                kind: Kind::Int4,
                as_text: false,
            },
            Column {
                name: "name".into(),
                pg_type: "text".into(),
                kind: Kind::Text,
                as_text: false,
            },
        ];
        let schema = Arc::new(datafusion::arrow::datatypes::Schema::new(
            columns
                .iter()
                .map(|c| Field::new(&c.name, c.kind.arrow(), true))
                .collect::<Vec<_>>(),
        ));
        let mut data = SIGNATURE.to_vec();
        data.extend(0i32.to_be_bytes());
        data.extend(0i32.to_be_bytes());
        for (id, name) in [(1i32, Some("ada")), (2, None)] {
            data.extend(2i16.to_be_bytes());
            data.extend(4i32.to_be_bytes());
            data.extend(id.to_be_bytes());
            match name {
                Some(n) => {
                    data.extend((n.len() as i32).to_be_bytes());
                    data.extend(n.as_bytes());
                }
                None => data.extend((-1i32).to_be_bytes()),
            }
        }
        data.extend((-1i16).to_be_bytes());
        let mut d = Decoder::new(schema, columns, OnBad::Fail);
        for chunk in data.chunks(5) {
            d.push(chunk).expect("decodes");
        }
        d.check_end().expect("ends");
        let batch = d.batch().expect("batch");
        assert_eq!(batch.num_rows(), 2);
        assert_eq!(batch.column(1).null_count(), 1);
    }
}
