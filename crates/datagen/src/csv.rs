//! Writing CSV rows (RFC 4180, as PostgreSQL's `COPY … (FORMAT csv)` reads them: an empty,
//! unquoted field is NULL).

use std::io::Write;

use chrono::{NaiveDate, NaiveDateTime};

/// One CSV row being written into a reusable buffer.
#[derive(Default)]
pub struct Row {
    buf: Vec<u8>,
    fields: usize,
}

impl Row {
    fn sep(&mut self) {
        if self.fields > 0 {
            self.buf.push(b',');
        }
        self.fields += 1;
    }

    pub fn text(&mut self, value: &str) -> &mut Self {
        self.sep();
        if value.is_empty() || value.contains([',', '"', '\n', '\r']) {
            self.buf.push(b'"');
            for b in value.bytes() {
                if b == b'"' {
                    self.buf.push(b'"');
                }
                self.buf.push(b);
            }
            self.buf.push(b'"');
        } else {
            self.buf.extend_from_slice(value.as_bytes());
        }
        self
    }

    pub fn null(&mut self) -> &mut Self {
        self.sep();
        self
    }

    pub fn int(&mut self, value: i64) -> &mut Self {
        self.sep();
        let _ = write!(self.buf, "{value}");
        self
    }

    pub fn opt_int(&mut self, value: Option<i64>) -> &mut Self {
        match value {
            Some(v) => self.int(v),
            None => self.null(),
        }
    }

    /// Money: two decimals.
    pub fn money(&mut self, value: f64) -> &mut Self {
        self.sep();
        let _ = write!(self.buf, "{value:.2}");
        self
    }

    pub fn bool(&mut self, value: bool) -> &mut Self {
        self.sep();
        self.buf
            .extend_from_slice(if value { b"true" } else { b"false" });
        self
    }

    /// A time in UTC, as PostgreSQL reads a `timestamptz`: `2025-01-05 10:22:11+00`.
    pub fn time(&mut self, value: NaiveDateTime) -> &mut Self {
        self.sep();
        let _ = write!(self.buf, "{}+00", value.format("%Y-%m-%d %H:%M:%S"));
        self
    }

    pub fn date(&mut self, value: NaiveDate) -> &mut Self {
        self.sep();
        let _ = write!(self.buf, "{}", value.format("%Y-%m-%d"));
        self
    }

    /// End the row: write it and a newline to `out`; returns the bytes written.
    pub fn end(&mut self, out: &mut impl Write) -> std::io::Result<u64> {
        self.buf.push(b'\n');
        out.write_all(&self.buf)?;
        let n = self.buf.len() as u64;
        self.buf.clear();
        self.fields = 0;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_quoted_when_they_must_be() {
        let mut row = Row::default();
        let mut out = Vec::new();
        row.int(1)
            .text("plain")
            .text("a, \"b\"")
            .text("")
            .null()
            .money(2.5)
            .bool(false)
            .end(&mut out)
            .expect("write");
        assert_eq!(
            String::from_utf8(out).expect("utf8"),
            "1,plain,\"a, \"\"b\"\"\",\"\",,2.50,false\n"
        );
    }
}
