//! Integer literals too wide for 64 bits are read as exact decimals. DataFusion reads them as
//! `DOUBLE`, which silently rounds `123456789012345678901234567890` to 17 digits; warehouses
//! (PostgreSQL, Snowflake) keep every digit. Such a literal is rewritten to
//! `CAST('…' AS DECIMAL(p, 0))` before planning; everything else in the SQL is kept byte for
//! byte.

use std::borrow::Cow;

use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

/// `sql` with integer literals beyond 64 bits written as exact decimals.
pub fn wide_integers_as_decimals(sql: &str) -> Cow<'_, str> {
    // Only a run of 20 or more digits can exceed u64: most SQL never gets past this check.
    let mut run = 0;
    let wide = sql.bytes().any(|b| {
        run = if b.is_ascii_digit() { run + 1 } else { 0 };
        run >= 20
    });
    if !wide {
        return Cow::Borrowed(sql);
    }
    let dialect = GenericDialect {};
    let Ok(tokens) = Tokenizer::new(&dialect, sql).tokenize_with_location() else {
        // The parser will report the problem itself.
        return Cow::Borrowed(sql);
    };
    // Byte offset of each line's start, to turn (line, column) spans into offsets.
    let mut line_starts = vec![0];
    line_starts.extend(sql.match_indices('\n').map(|(i, _)| i + 1));
    let offset = |line: u64, column: u64| -> Option<usize> {
        let start = *line_starts.get(usize::try_from(line).ok()?.checked_sub(1)?)?;
        let chars = usize::try_from(column).ok()?.checked_sub(1)?;
        sql[start..]
            .char_indices()
            .nth(chars)
            .map(|(i, _)| start + i)
            .or(Some(sql.len()))
    };
    let mut out = String::with_capacity(sql.len() + 32);
    let mut copied = 0;
    for t in &tokens {
        let Token::Number(digits, false) = &t.token else {
            continue;
        };
        if !digits.bytes().all(|b| b.is_ascii_digit()) || digits.parse::<u64>().is_ok() {
            continue;
        }
        let (Some(start), Some(end)) = (
            offset(t.span.start.line, t.span.start.column),
            offset(t.span.end.line, t.span.end.column),
        ) else {
            return Cow::Borrowed(sql);
        };
        if start < copied || sql.get(start..end) != Some(digits.as_str()) {
            return Cow::Borrowed(sql);
        }
        out.push_str(&sql[copied..start]);
        out.push_str(&format!("CAST('{digits}' AS DECIMAL({}, 0))", digits.len()));
        copied = end;
    }
    if copied == 0 {
        return Cow::Borrowed(sql);
    }
    out.push_str(&sql[copied..]);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::wide_integers_as_decimals as w;

    #[test]
    fn only_wide_integer_literals_change() {
        assert_eq!(
            w("select 1, 18446744073709551615"),
            "select 1, 18446744073709551615"
        );
        assert_eq!(
            w("select 123456789012345678901234567890 as big, -99999999999999999999 x"),
            "select CAST('123456789012345678901234567890' AS DECIMAL(30, 0)) as big, -CAST('99999999999999999999' AS DECIMAL(20, 0)) x"
        );
        assert_eq!(
            w(
                "select 'é 123456789012345678901234567890', 1.5\n  , 123456789012345678901 -- 99999999999999999999999"
            ),
            "select 'é 123456789012345678901234567890', 1.5\n  , CAST('123456789012345678901' AS DECIMAL(21, 0)) -- 99999999999999999999999"
        );
        assert_eq!(
            w("select 1.23456789012345678901234"),
            "select 1.23456789012345678901234"
        );
    }
}
