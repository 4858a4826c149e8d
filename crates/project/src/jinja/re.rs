//! `modules.re`: the part of Python's `re` module dbt packages use (`sub`, `search`, `match`,
//! `fullmatch`, `findall`, `split`, `escape`), on Rust's regex engine (Python's syntax for
//! common patterns; no look-around or back-references). A match is truthy and answers
//! `group(n)`, `groups()`, `start()` and `end()`.

use std::sync::Arc;

use minijinja::value::{Enumerator, Object, ObjectRepr, Value, from_args};
use minijinja::{Error, ErrorKind, State};

/// The `re` module.
#[derive(Debug)]
pub struct ReModule;

fn compile(pattern: &str) -> Result<regex::Regex, Error> {
    regex::Regex::new(pattern).map_err(|e| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("modules.re: invalid pattern `{pattern}`: {e}"),
        )
    })
}

/// A Python replacement (`\1`, `\g<1>`) in Rust's syntax (`${1}`), other `$` kept literal.
fn replacement(repl: &str) -> String {
    let mut out = String::with_capacity(repl.len());
    let mut chars = repl.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '$' => out.push_str("$$"),
            '\\' if chars.peek().is_some_and(char::is_ascii_digit) => {
                let mut n = String::new();
                while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    n.push(*d);
                    chars.next();
                }
                out.push_str(&format!("${{{n}}}"));
            }
            '\\' if chars.peek() == Some(&'g') => {
                chars.next();
                let name: String = chars
                    .by_ref()
                    .skip_while(|c| *c == '<')
                    .take_while(|c| *c != '>')
                    .collect();
                out.push_str(&format!("${{{name}}}"));
            }
            c => out.push(c),
        }
    }
    out
}

impl Object for ReModule {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        match method {
            "sub" => {
                let (pattern, repl, text, count): (String, String, String, Option<usize>) =
                    from_args(args)?;
                let re = compile(&pattern)?;
                let limit = count.unwrap_or(0);
                Ok(Value::from(
                    re.replacen(&text, limit, replacement(&repl).as_str())
                        .into_owned(),
                ))
            }
            "search" | "match" | "fullmatch" => {
                let (pattern, text): (String, String) = from_args(args)?;
                let anchored = match method {
                    "match" => format!(r"\A(?:{pattern})"),
                    "fullmatch" => format!(r"\A(?:{pattern})\z"),
                    _ => pattern,
                };
                let re = compile(&anchored)?;
                Ok(match re.captures(&text) {
                    None => Value::from(()),
                    Some(c) => Value::from_object(ReMatch(
                        c.iter()
                            .map(|m| m.map(|m| (m.as_str().to_string(), m.start(), m.end())))
                            .collect(),
                    )),
                })
            }
            "findall" => {
                let (pattern, text): (String, String) = from_args(args)?;
                let re = compile(&pattern)?;
                let found: Vec<Value> = re
                    .captures_iter(&text)
                    .map(|c| match c.len() {
                        1 => Value::from(c.get(0).map(|m| m.as_str()).unwrap_or_default()),
                        2 => Value::from(c.get(1).map(|m| m.as_str()).unwrap_or_default()),
                        _ => Value::from(
                            c.iter()
                                .skip(1)
                                .map(|m| Value::from(m.map(|m| m.as_str()).unwrap_or_default()))
                                .collect::<Vec<_>>(),
                        ),
                    })
                    .collect();
                Ok(Value::from(found))
            }
            "split" => {
                let (pattern, text): (String, String) = from_args(args)?;
                let re = compile(&pattern)?;
                Ok(Value::from(
                    re.split(&text).map(Value::from).collect::<Vec<_>>(),
                ))
            }
            "escape" => {
                let (text,): (String,) = from_args(args)?;
                Ok(Value::from(regex::escape(&text)))
            }
            _ => Err(Error::new(
                ErrorKind::UnknownMethod,
                format!("modules.re has no function {method}"),
            )),
        }
    }
}

/// A match: its groups (group 0 is the whole match) with their positions.
#[derive(Debug)]
struct ReMatch(Vec<Option<(String, usize, usize)>>);

impl Object for ReMatch {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::NonEnumerable
    }

    fn is_true(self: &Arc<Self>) -> bool {
        true
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        let group = |i: usize| match self.0.get(i) {
            Some(Some((s, _, _))) => Ok(Value::from(s.clone())),
            Some(None) => Ok(Value::from(())),
            None => Err(Error::new(ErrorKind::InvalidOperation, "no such group")),
        };
        match method {
            "group" => {
                let (i,): (Option<usize>,) = from_args(args)?;
                group(i.unwrap_or(0))
            }
            "groups" => {
                Ok(Value::from((1..self.0.len()).map(group).collect::<Result<
                    Vec<_>,
                    _,
                >>(
                )?))
            }
            "start" | "end" => {
                let (i,): (Option<usize>,) = from_args(args)?;
                match self.0.get(i.unwrap_or(0)) {
                    Some(Some((_, s, e))) => {
                        Ok(Value::from(if method == "start" { *s } else { *e }))
                    }
                    _ => Ok(Value::from(-1)),
                }
            }
            _ => Err(Error::from(ErrorKind::UnknownMethod)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::replacement;

    #[test]
    fn python_replacements_become_rust_ones() {
        assert_eq!(replacement(r"_\1_"), "_${1}_");
        assert_eq!(replacement(r"\g<name>$"), "${name}$$");
        assert_eq!(replacement("plain"), "plain");
    }
}
