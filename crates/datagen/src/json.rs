//! Writing one JSON object per line, fast and without an intermediate value tree.

use std::io::{self, Write};

use chrono::{NaiveDate, NaiveDateTime};

/// One JSON object being written into a reusable buffer: `obj.str(..).num(..).end(out)`.
pub struct Line {
    buf: Vec<u8>,
    first: bool,
}

impl Default for Line {
    fn default() -> Self {
        Line {
            buf: Vec::with_capacity(512),
            first: true,
        }
    }
}

impl Line {
    fn key(&mut self, key: &str) {
        self.buf.push(if self.first { b'{' } else { b',' });
        self.first = false;
        self.buf.push(b'"');
        self.buf.extend_from_slice(key.as_bytes());
        self.buf.extend_from_slice(b"\":");
    }

    pub fn str(&mut self, key: &str, value: &str) -> &mut Self {
        self.key(key);
        escape_into(&mut self.buf, value);
        self
    }

    pub fn opt_str(&mut self, key: &str, value: Option<&str>) -> &mut Self {
        match value {
            Some(v) => self.str(key, v),
            None => self.null(key),
        }
    }

    pub fn null(&mut self, key: &str) -> &mut Self {
        self.key(key);
        self.buf.extend_from_slice(b"null");
        self
    }

    pub fn int(&mut self, key: &str, value: i64) -> &mut Self {
        self.key(key);
        let _ = write!(self.buf, "{value}");
        self
    }

    /// A number with exactly two decimals (money).
    pub fn money(&mut self, key: &str, value: f64) -> &mut Self {
        self.key(key);
        let _ = write!(self.buf, "{value:.2}");
        self
    }

    pub fn bool(&mut self, key: &str, value: bool) -> &mut Self {
        self.key(key);
        self.buf
            .extend_from_slice(if value { b"true" } else { b"false" });
        self
    }

    /// A timestamp as ISO 8601 in UTC: `2024-03-05T10:22:11Z`.
    pub fn time(&mut self, key: &str, value: NaiveDateTime) -> &mut Self {
        self.key(key);
        let _ = write!(self.buf, "\"{}Z\"", value.format("%Y-%m-%dT%H:%M:%S"));
        self
    }

    pub fn opt_time(&mut self, key: &str, value: Option<NaiveDateTime>) -> &mut Self {
        match value {
            Some(v) => self.time(key, v),
            None => self.null(key),
        }
    }

    pub fn date(&mut self, key: &str, value: NaiveDate) -> &mut Self {
        self.key(key);
        let _ = write!(self.buf, "\"{}\"", value.format("%Y-%m-%d"));
        self
    }

    /// Close the object, write it and a newline to `out`, and make the buffer ready for the
    /// next one. Returns the bytes written.
    pub fn end(&mut self, out: &mut impl Write) -> io::Result<u64> {
        if self.first {
            self.buf.push(b'{');
        }
        self.buf.extend_from_slice(b"}\n");
        out.write_all(&self.buf)?;
        let n = self.buf.len() as u64;
        self.buf.clear();
        self.first = true;
        Ok(n)
    }
}

fn escape_into(buf: &mut Vec<u8>, s: &str) {
    buf.push(b'"');
    for c in s.chars() {
        match c {
            '"' => buf.extend_from_slice(b"\\\""),
            '\\' => buf.extend_from_slice(b"\\\\"),
            '\n' => buf.extend_from_slice(b"\\n"),
            c if (c as u32) < 0x20 => {
                let _ = write!(buf, "\\u{:04x}", c as u32);
            }
            c => {
                let mut tmp = [0u8; 4];
                buf.extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
            }
        }
    }
    buf.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_valid_json() {
        let mut line = Line::default();
        let mut out = Vec::new();
        let t = NaiveDate::from_ymd_opt(2024, 2, 29)
            .and_then(|d| d.and_hms_opt(23, 5, 1))
            .expect("valid");
        line.str("a", "say \"hi\"\\\n\u{1}é")
            .null("b")
            .int("c", -3)
            .money("d", 19.5)
            .bool("e", true)
            .time("f", t)
            .end(&mut out)
            .expect("write");
        line.end(&mut out).expect("write");
        let text = String::from_utf8(out).expect("utf8");
        let mut lines = text.lines();
        let v: serde_json::Value = serde_json::from_str(lines.next().expect("line")).expect("json");
        assert_eq!(v["a"], "say \"hi\"\\\n\u{1}é");
        assert!(v["b"].is_null());
        assert_eq!(v["c"], -3);
        assert_eq!(v["d"], 19.5);
        assert_eq!(v["f"], "2024-02-29T23:05:01Z");
        assert_eq!(lines.next(), Some("{}"));
    }
}
