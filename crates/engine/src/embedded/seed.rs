//! Seeds: a CSV file read with every row used for type inference (integers, decimals,
//! booleans, dates, timestamps, text; empty fields are NULL), `column_types` applied as SQL
//! casts, streamed into a Delta table.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::{CsvReadOptions, SessionContext};
use strata_common::{did_you_mean, quote_ident};

use crate::SeedRequest;
use crate::error::{Error, Result};

fn options(req: &SeedRequest) -> CsvReadOptions<'_> {
    CsvReadOptions::new()
        .has_header(true)
        .delimiter(req.delimiter)
        .null_regex(Some("^$".to_string()))
        .newlines_in_values(true)
}

/// The columns a seed's table gets, with the types inferred from its whole file (and its
/// `column_types`), without loading it: for warehouses that load the file themselves.
pub async fn seed_columns(req: &SeedRequest) -> Result<Arc<Schema>> {
    let ctx = SessionContext::new();
    let plan = plan(&ctx, req).await?;
    Ok(Arc::new(plan.schema().as_arrow().clone()))
}

/// The plan that reads a seed's file with the types it should have.
pub async fn plan(ctx: &SessionContext, req: &SeedRequest) -> Result<LogicalPlan> {
    check_file(req)?;
    let path = req.path.to_string_lossy().into_owned();
    let read_err = |e: datafusion::error::DataFusionError| {
        Error::Sql(format!(
            "{}: {}",
            req.display_path,
            crate::error::describe_datafusion_error(&e)
        ))
    };
    // Infer from every row, as dbt does: a column is an integer only if all its values are.
    let inferred = ctx
        .read_csv(&path, options(req).schema_infer_max_records(usize::MAX))
        .await
        .map_err(read_err)?;
    let columns: Vec<String> = inferred
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    for (col, _) in &req.column_types {
        if !columns.contains(col) {
            return Err(Error::user(format!(
                "{}: column_types names column `{col}`, which the file does not have{}",
                req.display_path,
                did_you_mean(col, columns.iter().map(String::as_str))
            ))
            .with_hint(format!("the columns are: {}", columns.join(", "))));
        }
    }
    // Overridden columns are read as text and cast, so `01234` stays `01234` as a varchar.
    let overridden = |name: &str| {
        req.column_types
            .iter()
            .find(|(c, _)| c == name)
            .map(|(_, t)| t)
    };
    let fields: Vec<Field> = inferred
        .schema()
        .fields()
        .iter()
        .map(|f| {
            let data_type = match (overridden(f.name()), f.data_type()) {
                (Some(_), _) => DataType::Utf8,
                // A column with no values at all is text.
                (None, DataType::Null) => DataType::Utf8,
                // Read as text and cast: Arrow's parser refuses some timestamps it infers.
                (None, DataType::Timestamp(..)) => DataType::Utf8,
                (None, t) => t.clone(),
            };
            Field::new(f.name(), data_type, true)
        })
        .collect();
    // Text columns whose every value is a date-time as dbt's agate reads one (a one-digit
    // hour, `T` or a space between date and time) are timestamps, as in dbt.
    let text_columns: Vec<usize> = fields
        .iter()
        .enumerate()
        .filter(|(_, f)| f.data_type() == &DataType::Utf8 && overridden(f.name()).is_none())
        .map(|(i, _)| i)
        .collect();
    let timestamps = timestamp_columns(ctx, req, &fields, text_columns).await?;
    let schema = Arc::new(Schema::new(fields));
    let df = ctx
        .read_csv(&path, options(req).schema(&schema))
        .await
        .map_err(read_err)?;
    let exprs: Vec<String> = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let q = quote_ident(f.name());
            match overridden(f.name()) {
                Some(t) => format!("CAST({q} AS {t}) AS {q}"),
                None if timestamps.contains(&i) => format!("CAST({q} AS TIMESTAMP) AS {q}"),
                None => q,
            }
        })
        .collect();
    let refs: Vec<&str> = exprs.iter().map(String::as_str).collect();
    let df = df.select_exprs(&refs).map_err(|e| {
        Error::user(format!(
            "{}: a column_types entry is not a valid SQL type: {}",
            req.display_path,
            crate::error::describe_datafusion_error(&e)
        ))
        .with_hint("use types such as integer, bigint, double, decimal(10, 2), varchar, date, timestamp, boolean")
    })?;
    Ok(df.logical_plan().clone())
}

/// Which of the `candidates` (text columns, by position) hold only date-times (or nothing):
/// the file is read once more, and a column drops out at its first other value.
async fn timestamp_columns(
    ctx: &SessionContext,
    req: &SeedRequest,
    fields: &[Field],
    mut candidates: Vec<usize>,
) -> Result<Vec<usize>> {
    use datafusion::arrow::array::AsArray;
    use futures::StreamExt;
    if candidates.is_empty() {
        return Ok(candidates);
    }
    let schema = Arc::new(Schema::new(fields.to_vec()));
    let path = req.path.to_string_lossy().into_owned();
    let df = ctx.read_csv(&path, options(req).schema(&schema)).await?;
    let mut stream = df.execute_stream().await?;
    let mut seen = vec![false; fields.len()];
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        candidates.retain(|&i| {
            let Some(values) = batch.column(i).as_string_opt::<i32>() else {
                return false;
            };
            values.iter().flatten().all(|v| {
                seen[i] = true;
                looks_like_timestamp(v)
            })
        });
        if candidates.is_empty() {
            break;
        }
    }
    // A column with no values at all stays text.
    candidates.retain(|&i| seen[i]);
    Ok(candidates)
}

/// Whether `v` is a date-time as dbt's agate reads seeds: `YYYY-MM-DD`, a space or `T`, then
/// `H:MM:SS` (one- or two-digit hour) with optional fractions and zone.
fn looks_like_timestamp(v: &str) -> bool {
    let v = v.trim();
    let Some((date, time)) = v.split_once([' ', 'T']) else {
        return false;
    };
    if chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").is_err() {
        return false;
    }
    let clock = time
        .split(['+', '-', 'Z'])
        .next()
        .unwrap_or_default()
        .split('.')
        .next()
        .unwrap_or_default();
    let parts: Vec<&str> = clock.split(':').collect();
    let number =
        |p: &str, max: u32| (1..=2).contains(&p.len()) && p.parse::<u32>().is_ok_and(|n| n <= max);
    parts.len() == 3 && number(parts[0], 23) && number(parts[1], 59) && number(parts[2], 60)
}

/// Read the file once, in blocks, for what the CSV reader would accept silently or report
/// vaguely: an empty file, an empty or repeated column name, and a quoted field that is never
/// closed (which would swallow the rest of the file into one value).
fn check_file(req: &SeedRequest) -> Result<()> {
    use std::io::Read;
    let fail = |line: usize, what: String, hint: &str| {
        Error::user(format!("{}:{line}: {what}", req.display_path)).with_hint(hint.to_string())
    };
    let mut file = std::fs::File::open(&req.path)
        .map_err(|e| Error::user(format!("{}: cannot read it: {e}", req.display_path)))?;
    let mut buf = vec![0u8; 1 << 16];
    let mut header: Vec<u8> = Vec::new();
    let mut in_header = true;
    let mut in_quote = false;
    let mut quote_line = 0;
    let mut line = 1;
    let mut any = false;
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| Error::user(format!("{}: cannot read it: {e}", req.display_path)))?;
        if n == 0 {
            break;
        }
        let chunk = &buf[..n];
        any = any || chunk.iter().any(|b| !b.is_ascii_whitespace());
        if in_header {
            let end = header_end(chunk, in_quote).unwrap_or(chunk.len());
            header.extend_from_slice(&chunk[..end]);
        }
        // Only quotes and line ends matter: jump between them.
        for i in memchr::memchr2_iter(b'"', b'\n', chunk) {
            if chunk[i] == b'"' {
                in_quote = !in_quote;
                if in_quote {
                    quote_line = line;
                }
            } else {
                line += 1;
                if !in_quote {
                    in_header = false;
                }
            }
        }
    }
    if !any {
        return Err(fail(
            1,
            "the file is empty".into(),
            "a seed starts with a header line naming its columns, e.g. `id,name`",
        ));
    }
    if in_quote {
        return Err(fail(
            quote_line,
            "a quoted value opened on this line is never closed".into(),
            "close the value with `\"` (a quote inside a quoted value is written twice: `\"\"`)",
        ));
    }
    let names = split_header(&header, req.delimiter);
    let mut seen: std::collections::HashMap<&str, usize> = Default::default();
    for (i, name) in names.iter().enumerate() {
        if name.trim().is_empty() {
            return Err(fail(
                1,
                format!("column {} of the header has no name", i + 1),
                "give every column a name in the first line (a trailing delimiter adds an unnamed column)",
            ));
        }
        if let Some(first) = seen.insert(name.as_str(), i + 1) {
            return Err(fail(
                1,
                format!(
                    "column `{name}` appears twice in the header (columns {first} and {})",
                    i + 1
                ),
                "rename one of them: a table's column names are unique",
            ));
        }
    }
    Ok(())
}

/// Where the header line ends in `chunk` (the first line end outside quotes), given whether
/// the chunk starts inside a quoted value.
fn header_end(chunk: &[u8], mut in_quote: bool) -> Option<usize> {
    for i in memchr::memchr2_iter(b'"', b'\n', chunk) {
        match chunk[i] {
            b'"' => in_quote = !in_quote,
            _ if !in_quote => return Some(i),
            _ => {}
        }
    }
    None
}

/// The column names of a header line (quotes removed, `""` inside quotes kept as `"`).
fn split_header(header: &[u8], delimiter: u8) -> Vec<String> {
    let text = String::from_utf8_lossy(header);
    let text = text
        .trim_start_matches('\u{feff}')
        .trim_end_matches(['\r', '\n']);
    let mut names = vec![String::new()];
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                if let Some(n) = names.last_mut() {
                    n.push('"');
                }
            }
            '"' => quoted = !quoted,
            c if !quoted && c as u32 == u32::from(delimiter) => names.push(String::new()),
            c => {
                if let Some(n) = names.last_mut() {
                    n.push(c);
                }
            }
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::split_header;

    #[test]
    fn timestamps_as_agate_reads_them() {
        use super::looks_like_timestamp as ts;
        assert!(ts("2021-01-01 7:05:09"));
        assert!(ts("2021-01-01T07:05:09.123+02:00"));
        assert!(ts("2021-01-01 23:59:60"));
        assert!(ts("2021-01-01 07:05:09-05:00"));
        assert!(!ts("2021-01-01 00:00"));
        assert!(!ts("2021-01-01"));
        assert!(!ts("2021-13-01 10:00:00"));
        assert!(!ts("soon 10:00:00"));
    }

    #[test]
    fn headers_split_like_csv() {
        assert_eq!(split_header(b"a,b,c\r\n", b','), ["a", "b", "c"]);
        assert_eq!(split_header(b"\"x,y\",\"q\"\"\"", b','), ["x,y", "q\""]);
        assert_eq!(split_header(b"a;b", b';'), ["a", "b"]);
        assert_eq!(split_header(b"a,", b','), ["a", ""]);
    }
}
