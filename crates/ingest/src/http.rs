//! The HTTP connector: JSON REST endpoints, page after page, into rows.
//!
//! Each response's records (the array at `records`, a dotted path; the body itself when it is
//! an array) become rows, nested objects and arrays kept as structs and lists. Pagination:
//! a cursor token (`cursor_param`, `cursor_path`), page numbers (`page_param`), offset/limit
//! (`offset_param`, `limit_param`, `limit`) or the `Link: <...>; rel="next"` header. Auth is a
//! bearer token, basic credentials or an API-key header, from `env_var()`. 429 and 5xx answers
//! are retried with backoff, honouring `Retry-After`; other errors stop the table's load.

use std::time::Duration;

use datafusion::arrow::json::ReaderBuilder;
use datafusion::arrow::json::reader::infer_json_schema_from_iterator;
use datafusion::arrow::record_batch::RecordBatch;
use serde_json::Value;
use strata_engine::{Error, Result};

/// How requests authenticate.
#[derive(Debug, Clone)]
pub enum Auth {
    /// `Authorization: Bearer <token>`.
    Bearer(String),
    /// `Authorization: Basic ...`.
    Basic(String, String),
    /// A header of its own (`X-API-Key: ...`).
    Header(String, String),
}

/// How the next page is asked for.
#[derive(Debug, Clone)]
pub enum Paginate {
    /// One request.
    None,
    /// The token at `path` in a response, sent as `param` (none: the last page).
    Cursor { param: String, path: String },
    /// Page numbers from `start`, until a page has no records.
    Page { param: String, start: u64 },
    /// `offset` and `limit` parameters, until a page has fewer than `limit` records.
    Offset {
        offset_param: String,
        limit_param: String,
        limit: u64,
    },
    /// The `Link` header's `rel="next"` URL.
    Link,
}

/// An endpoint to read.
#[derive(Debug, Clone)]
pub struct HttpSpec {
    /// The API's base URL.
    pub base_url: String,
    /// The table's path under it.
    pub path: String,
    /// Query parameters sent with every request.
    pub params: Vec<(String, String)>,
    /// Dotted path to the records in a response (empty: the body).
    pub records: String,
    /// Authentication.
    pub auth: Option<Auth>,
    /// Pagination.
    pub paginate: Paginate,
    /// Incremental loads: send the last load's greatest `cursor` value as `param`.
    pub incremental: Option<(String, String)>,
    /// Attempts per request on 429 and 5xx (and connection failures).
    pub attempts: u32,
    /// The first wait between attempts (doubled each time) when no `Retry-After` says.
    pub backoff: Duration,
    /// Nested objects spread into columns `parent__child` (else kept as structs).
    pub flatten: bool,
}

/// What reading an endpoint gave.
#[derive(Debug)]
pub struct Fetched {
    /// The rows, as one batch (none when there were no records).
    pub batch: Option<RecordBatch>,
    /// The greatest value of the incremental cursor among the records.
    pub cursor: Option<String>,
    /// Requests made (retries included).
    pub requests: usize,
    /// The first request's URL, without credentials: the rows' `_strata_source`.
    pub url: String,
}

/// Read every page of `spec`, sending `since` as the incremental parameter when given.
pub async fn fetch(
    spec: &HttpSpec,
    since: Option<&str>,
    name: &str,
    progress: &crate::Progress,
) -> Result<Fetched> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .map_err(|e| Error::user(format!("source `{name}`: {e}")))?;
    let base = format!(
        "{}/{}",
        spec.base_url.trim_end_matches('/'),
        spec.path.trim_start_matches('/')
    );
    let mut params = spec.params.clone();
    if let (Some((param, _)), Some(since)) = (&spec.incremental, since) {
        params.push((param.clone(), since.to_string()));
    }
    let first_url = reqwest::Url::parse_with_params(&base, &params).map_err(|e| {
        Error::user(format!("source `{name}`: `{base}` is not a URL ({e})"))
            .with_hint("check `base_url` and `path` of its `ingest:`")
    })?;
    let mut records: Vec<Value> = Vec::new();
    let mut requests = 0usize;
    let mut next = Some(first_url.clone());
    let mut page = match &spec.paginate {
        Paginate::Page { start, .. } => *start,
        _ => 0,
    };
    let mut offset = 0u64;
    // Never loop forever on an API that keeps answering the same page.
    let mut pages = 0usize;
    while let Some(url) = next.take() {
        pages += 1;
        if pages > 100_000 {
            return Err(Error::user(format!(
                "source `{name}`: more than 100000 pages; is the pagination right?"
            )));
        }
        let mut url = url;
        match &spec.paginate {
            Paginate::Page { param, .. } => set_param(&mut url, param, &page.to_string()),
            Paginate::Offset {
                offset_param,
                limit_param,
                limit,
            } => {
                set_param(&mut url, offset_param, &offset.to_string());
                set_param(&mut url, limit_param, &limit.to_string());
            }
            _ => {}
        }
        let (body, link, tries) = get(&client, spec, &url, name, progress).await?;
        requests += tries as usize;
        let found = records_at(&body, &spec.records).ok_or_else(|| {
            Error::user(format!(
                "source `{name}`: the answer of {} has no array at `records: {}`",
                without_query(&url),
                spec.records
            ))
            .with_hint(
                "set `records:` to the dotted path of the list of records, such as data.items",
            )
        })?;
        let n = found.len() as u64;
        records.extend(found.iter().cloned());
        progress
            .rows
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        next = match &spec.paginate {
            Paginate::None => None,
            Paginate::Cursor { param, path } => match value_at(&body, path) {
                Some(Value::String(token)) if !token.is_empty() && n > 0 => {
                    let mut u = first_url.clone();
                    set_param(&mut u, param, token);
                    Some(u)
                }
                Some(Value::Number(token)) if n > 0 => {
                    let mut u = first_url.clone();
                    set_param(&mut u, param, &token.to_string());
                    Some(u)
                }
                _ => None,
            },
            Paginate::Page { .. } => {
                page += 1;
                (n > 0).then(|| first_url.clone())
            }
            Paginate::Offset { limit, .. } => {
                offset += n;
                (n >= *limit && n > 0).then(|| first_url.clone())
            }
            Paginate::Link => link.and_then(|l| url.join(&l).ok()),
        };
    }
    let cursor = spec.incremental.as_ref().and_then(|(_, field)| {
        records
            .iter()
            .filter_map(|r| r.get(field))
            .filter(|v| !v.is_null())
            .max_by(|a, b| compare(a, b))
            .map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
    });
    let batch = match records.is_empty() {
        true => None,
        false => Some(to_batch(&records).map_err(|e| {
            Error::user(format!(
                "source `{name}`: its records cannot be read as rows: {e}"
            ))
        })?),
    };
    Ok(Fetched {
        batch,
        cursor,
        requests,
        url: without_query(&first_url),
    })
}

/// One GET with retries: the body, the `Link` header's next URL, and the attempts made.
async fn get(
    client: &reqwest::Client,
    spec: &HttpSpec,
    url: &reqwest::Url,
    name: &str,
    progress: &crate::Progress,
) -> Result<(Value, Option<String>, u32)> {
    let shown = without_query(url);
    let mut wait = spec.backoff;
    let mut attempt: u32 = 0;
    loop {
        attempt += 1;
        let mut request = client.get(url.clone()).header("Accept", "application/json");
        request = match &spec.auth {
            Some(Auth::Bearer(token)) => request.bearer_auth(token),
            Some(Auth::Basic(user, password)) => request.basic_auth(user, Some(password)),
            Some(Auth::Header(header, value)) => request.header(header.as_str(), value.as_str()),
            None => request,
        };
        let retry = |why: String, after: Option<Duration>| (why, after);
        let failure = match request.send().await {
            Err(e) => retry(format!("cannot reach {shown}: {}", plain(e)), None),
            Ok(response) => {
                let status = response.status();
                let after = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(retry_after);
                if status.is_success() {
                    let link = response
                        .headers()
                        .get("link")
                        .and_then(|v| v.to_str().ok())
                        .and_then(next_link);
                    let text = response.text().await.map_err(|e| {
                        Error::user(format!("source `{name}`: reading {shown}: {}", plain(e)))
                    })?;
                    progress
                        .bytes
                        .fetch_add(text.len() as u64, std::sync::atomic::Ordering::Relaxed);
                    let body: Value = serde_json::from_str(&text).map_err(|e| {
                        Error::user(format!(
                            "source `{name}`: {shown} did not answer JSON ({e}): {}",
                            snippet(&text)
                        ))
                    })?;
                    return Ok((body, link, attempt));
                }
                if status.as_u16() == 429 || status.is_server_error() {
                    retry(format!("{shown} answered {status}"), after)
                } else {
                    let text = response.text().await.unwrap_or_default();
                    let hint = match status.as_u16() {
                        401 | 403 => "check the credentials of its `auth:` (their env_var()s)",
                        404 => "check `base_url` and `path`",
                        _ => "check the request's parameters",
                    };
                    return Err(Error::user(format!(
                        "source `{name}`: {shown} answered {status}: {}",
                        snippet(&text)
                    ))
                    .with_hint(hint));
                }
            }
        };
        if attempt >= spec.attempts {
            return Err(Error::user(format!(
                "source `{name}`: {} (after {attempt} attempts)",
                failure.0
            )));
        }
        let pause = failure.1.unwrap_or(wait).min(Duration::from_secs(300));
        tracing::warn!(
            "source `{name}`: {}; trying again in {:.1} s",
            failure.0,
            pause.as_secs_f64()
        );
        tokio::time::sleep(pause).await;
        wait *= 2;
    }
}

/// An error's text without the URL's query (which may carry a key).
fn plain(e: reqwest::Error) -> String {
    e.without_url().to_string()
}

fn without_query(url: &reqwest::Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    let _ = u.set_password(None);
    let _ = u.set_username("");
    u.to_string()
}

fn snippet(text: &str) -> String {
    let t: String = text.chars().take(200).collect();
    t.replace('\n', " ")
}

fn set_param(url: &mut reqwest::Url, key: &str, value: &str) {
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != key)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    url.query_pairs_mut()
        .clear()
        .extend_pairs(kept)
        .append_pair(key, value);
}

/// The `rel="next"` URL of a `Link` header.
fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        params
            .split(';')
            .any(|p| {
                let p = p.trim().replace(' ', "");
                p == "rel=\"next\"" || p == "rel=next"
            })
            .then(|| {
                target
                    .trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_string()
            })
    })
}

fn value_at<'a>(body: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .filter(|p| !p.is_empty())
        .try_fold(body, |v, key| v.get(key))
}

/// The records of a response: the array at `path`, or the body when it is an array.
fn records_at<'a>(body: &'a Value, path: &str) -> Option<&'a Vec<Value>> {
    match value_at(body, path)? {
        Value::Array(a) => Some(a),
        Value::Null => None,
        _ => None,
    }
}

fn compare(a: &Value, b: &Value) -> std::cmp::Ordering {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal),
        _ => a.to_string().cmp(&b.to_string()),
    }
}

/// Records (JSON objects) as one batch, their schema inferred from all of them.
/// A `Retry-After` value: seconds, or an HTTP date (how long until then; none if past).
fn retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

fn to_batch(records: &[Value]) -> std::result::Result<RecordBatch, String> {
    let schema =
        infer_json_schema_from_iterator(records.iter().map(Ok)).map_err(|e| e.to_string())?;
    let mut decoder = ReaderBuilder::new(std::sync::Arc::new(schema))
        .with_batch_size(records.len().max(1))
        .build_decoder()
        .map_err(|e| e.to_string())?;
    decoder.serialize(records).map_err(|e| e.to_string())?;
    decoder
        .flush()
        .map_err(|e| e.to_string())?
        .ok_or_else(|| "no rows".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        assert_eq!(retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        let soon = (chrono::Utc::now() + chrono::Duration::seconds(30)).to_rfc2822();
        assert!(retry_after(&soon).is_some_and(|d| d > Duration::from_secs(25)));
        assert_eq!(retry_after("later"), None);
    }

    #[test]
    fn link_headers_and_paths() {
        assert_eq!(
            next_link(
                r#"<https://x/items?page=2>; rel="next", <https://x/items?page=9>; rel="last""#
            ),
            Some("https://x/items?page=2".into())
        );
        assert_eq!(next_link(r#"<https://x/items?page=9>; rel="last""#), None);
        let body = serde_json::json!({"data": {"items": [{"a": 1}], "next": "t2"}});
        assert_eq!(records_at(&body, "data.items").map(Vec::len), Some(1));
        assert_eq!(value_at(&body, "data.next"), Some(&serde_json::json!("t2")));
        let batch = to_batch(&[
            serde_json::json!({"a": 1, "b": {"c": [1, 2]}}),
            serde_json::json!({"a": 2}),
        ])
        .expect("batch");
        assert_eq!(batch.num_rows(), 2);
    }
}
