//! Date arithmetic as in Python: `end_date - modules.datetime.timedelta(days=10)`,
//! `(today - start).days`. minijinja's `+` and `-` know numbers, strings and lists only, and
//! offer no hook for objects, so additive expressions that involve dates are rewritten before
//! compilation into calls of [`ARITH`], which handles dates, datetimes and timedeltas and
//! leaves everything else to minijinja's own operators.
//!
//! An expression is rewritten when it names `datetime`, `date`, `timedelta` or
//! `relativedelta`, or a variable the same template assigned from such an expression with
//! `{% set %}`; other arithmetic is left alone.

use std::collections::HashSet;

use minijinja::value::Value;
use minijinja::{Error, ErrorKind, State};

use super::datetime::{PyDate, PyDateTime, PyTimedelta};

/// The function an additive expression on dates is rewritten to call: `__strata_arith(a, '-',
/// b)`.
pub const ARITH: &str = "__strata_arith";

/// Words that make an expression one about dates.
const DATE_WORDS: &[&str] = &["datetime", "date", "timedelta", "relativedelta"];

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// A name or keyword.
    Name(String),
    /// A number or string literal.
    Literal,
    Open,
    Close,
    /// `+` or `-`.
    Additive(char),
    /// Any other operator or punctuation.
    Other(String),
}

/// A token and its text, with the whitespace before it.
struct Token {
    tok: Tok,
    text: String,
}

fn tokenize(expr: &str) -> Option<Vec<Token>> {
    let bytes = expr.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if i == bytes.len() {
            // Trailing whitespace rides on a last, empty token.
            out.push(Token {
                tok: Tok::Other(String::new()),
                text: expr[start..].to_string(),
            });
            break;
        }
        let s = i;
        let c = bytes[i];
        let tok = match c {
            b'\'' | b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != c {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                if i >= bytes.len() {
                    return None;
                }
                i += 1;
                Tok::Literal
            }
            b'(' | b'[' | b'{' => {
                i += 1;
                Tok::Open
            }
            b')' | b']' | b'}' => {
                i += 1;
                Tok::Close
            }
            b'+' | b'-' => {
                i += 1;
                Tok::Additive(c as char)
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                Tok::Name(expr[s..i].to_string())
            }
            c if c.is_ascii_digit() => {
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'.') {
                    i += 1;
                }
                Tok::Literal
            }
            _ => {
                // Two-character operators stay whole (`==`, `<=`, `//`, `**`).
                let two = expr.get(i..i + 2).unwrap_or_default();
                i += if matches!(two, "==" | "!=" | "<=" | ">=" | "//" | "**") {
                    2
                } else {
                    expr[i..].chars().next().map_or(1, char::len_utf8)
                };
                Tok::Other(expr[s..i].to_string())
            }
        };
        out.push(Token {
            tok,
            text: expr[start..i].to_string(),
        });
    }
    Some(out)
}

/// Whether `expr` names a date word or a variable in `known`.
pub fn mentions_dates(expr: &str, known: &HashSet<String>) -> bool {
    expr.split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .any(|w| DATE_WORDS.contains(&w) || known.contains(w))
}

/// Tokens that end an additive chain: anything binding more loosely than `+` and `-`.
fn is_boundary(t: &Tok) -> bool {
    match t {
        Tok::Name(n) => matches!(
            n.as_str(),
            "and" | "or" | "not" | "if" | "else" | "in" | "is" | "set"
        ),
        Tok::Other(o) => matches!(
            o.as_str(),
            "," | ":" | "=" | "~" | "==" | "!=" | "<" | ">" | "<=" | ">="
        ),
        _ => false,
    }
}

fn ends_operand(t: &Tok) -> bool {
    match t {
        Tok::Literal | Tok::Close => true,
        Tok::Name(_) => !is_boundary(t),
        _ => false,
    }
}

/// Rewrite the additive chains about dates in `expr` (the inside of `{{ }}` or `{% %}`);
/// `known` holds the variables assigned dates so far. None when nothing changed.
pub fn rewrite(expr: &str, known: &HashSet<String>) -> Option<String> {
    let mentions = |w: &str| DATE_WORDS.contains(&w) || known.contains(w);
    if !mentions_dates(expr, known) {
        return None;
    }
    let tokens = tokenize(expr)?;
    let mut i = 0;
    let (out, changed) = group(&tokens, &mut i, &mentions);
    changed.then_some(out)
}

/// Rewrite tokens from `*i` up to the closing bracket of this group (or the end); `*i` ends
/// on the closing bracket, which is not consumed.
fn group(tokens: &[Token], i: &mut usize, mentions: &dyn Fn(&str) -> bool) -> (String, bool) {
    let mut out = String::new();
    let mut changed = false;
    // The current chain: operands (text) and the operators between them.
    let mut operands: Vec<String> = vec![String::new()];
    let mut ops: Vec<char> = Vec::new();
    let mut about_dates = false;
    let mut prev: Option<Tok> = None;
    let flush = |out: &mut String,
                 operands: &mut Vec<String>,
                 ops: &mut Vec<char>,
                 about_dates: &mut bool,
                 changed: &mut bool| {
        if ops.is_empty() || !*about_dates {
            for (k, operand) in operands.iter().enumerate() {
                if k > 0 {
                    out.push(ops[k - 1]);
                }
                out.push_str(operand);
            }
        } else {
            let lead = operands[0].len() - operands[0].trim_start().len();
            out.push_str(&operands[0][..lead]);
            let mut acc = operands[0].trim().to_string();
            for (op, operand) in ops.iter().zip(&operands[1..]) {
                acc = format!("{ARITH}({acc}, '{op}', {})", operand.trim());
            }
            out.push_str(&acc);
            let trail = operands.last().map_or("", |o| &o[o.trim_end().len()..]);
            out.push_str(trail);
            *changed = true;
        }
        *operands = vec![String::new()];
        ops.clear();
        *about_dates = false;
    };
    while *i < tokens.len() {
        let t = &tokens[*i];
        match &t.tok {
            Tok::Close => break,
            Tok::Open => {
                let open = t.text.clone();
                *i += 1;
                let (inner, inner_changed) = group(tokens, i, mentions);
                changed |= inner_changed;
                let close = tokens.get(*i).map(|t| t.text.clone()).unwrap_or_default();
                if let Some(last) = operands.last_mut() {
                    last.push_str(&open);
                    last.push_str(&inner);
                    last.push_str(&close);
                }
                prev = Some(Tok::Close);
            }
            Tok::Additive(op) if prev.as_ref().is_some_and(ends_operand) => {
                // The operator's own leading whitespace stays with the left operand.
                let ws = &t.text[..t.text.len() - 1];
                if let Some(last) = operands.last_mut() {
                    last.push_str(ws);
                }
                ops.push(*op);
                operands.push(String::new());
                prev = Some(t.tok.clone());
            }
            tok if is_boundary(tok) => {
                flush(
                    &mut out,
                    &mut operands,
                    &mut ops,
                    &mut about_dates,
                    &mut changed,
                );
                out.push_str(&t.text);
                prev = Some(t.tok.clone());
            }
            tok => {
                if let Tok::Name(n) = tok
                    && mentions(n)
                {
                    about_dates = true;
                }
                if let Some(last) = operands.last_mut() {
                    last.push_str(&t.text);
                }
                prev = Some(t.tok.clone());
            }
        }
        *i += 1;
    }
    flush(
        &mut out,
        &mut operands,
        &mut ops,
        &mut about_dates,
        &mut changed,
    );
    (out, changed)
}

/// `a + b` or `a - b` as Python computes them for dates, datetimes and timedeltas; any other
/// values go to minijinja's own operator.
pub fn arith(state: &State, a: Value, op: &str, b: Value) -> Result<Value, Error> {
    let dt = |v: &Value| v.downcast_object_ref::<PyDateTime>().map(|d| d.0);
    let date = |v: &Value| v.downcast_object_ref::<PyDate>().map(|d| d.0);
    let delta = |v: &Value| v.downcast_object_ref::<PyTimedelta>().map(|d| d.0);
    let sign = |d: chrono::Duration| if op == "-" { -d } else { d };
    let out = match (op, dt(&a), date(&a), delta(&a)) {
        (_, Some(x), _, _) if delta(&b).is_some() => Some(Value::from_object(PyDateTime(
            x + sign(delta(&b).unwrap_or_default()),
        ))),
        (_, _, Some(x), _) if delta(&b).is_some() => Some(Value::from_object(PyDate(
            x + sign(delta(&b).unwrap_or_default()),
        ))),
        ("-", Some(x), _, _) if dt(&b).is_some() => Some(Value::from_object(PyTimedelta(
            x - dt(&b).unwrap_or_default(),
        ))),
        ("-", _, Some(x), _) if date(&b).is_some() => Some(Value::from_object(PyTimedelta(
            x - date(&b).unwrap_or_default(),
        ))),
        (_, _, _, Some(x)) if delta(&b).is_some() => Some(Value::from_object(PyTimedelta(
            x + sign(delta(&b).unwrap_or_default()),
        ))),
        ("+", _, _, Some(x)) if dt(&b).is_some() => Some(Value::from_object(PyDateTime(
            dt(&b).unwrap_or_default() + x,
        ))),
        ("+", _, _, Some(x)) if date(&b).is_some() => {
            Some(Value::from_object(PyDate(date(&b).unwrap_or_default() + x)))
        }
        _ => None,
    };
    if let Some(out) = out {
        return Ok(out);
    }
    let expr = match op {
        "+" => "a + b",
        "-" => "a - b",
        _ => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("unknown operator {op}"),
            ));
        }
    };
    state
        .env()
        .compile_expression(expr)?
        .eval(minijinja::context! { a => a, b => b })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rw(s: &str, known: &[&str]) -> Option<String> {
        let known = known.iter().map(|s| s.to_string()).collect();
        rewrite(s, &known)
    }

    #[test]
    fn date_chains_become_calls_and_the_rest_stays() {
        assert_eq!(
            rw(
                " set start = (end_date - modules.datetime.timedelta(days=10)) ",
                &[]
            )
            .as_deref(),
            Some(
                " set start = (__strata_arith(end_date, '-', modules.datetime.timedelta(days=10))) "
            )
        );
        assert_eq!(
            rw(
                " (d - x + modules.datetime.timedelta(1)).strftime('%Y') ",
                &[]
            )
            .as_deref(),
            Some(
                " (__strata_arith(__strata_arith(d, '-', x), '+', modules.datetime.timedelta(1))).strftime('%Y') "
            )
        );
        assert_eq!(rw(" a - b ", &[]), None);
        assert_eq!(
            rw(" a - b ~ 'x' ", &["a"]).as_deref(),
            Some(" __strata_arith(a, '-', b) ~ 'x' ")
        );
        assert_eq!(rw(" f(a, -1) ", &["a"]), None);
        assert_eq!(
            rw(" x if a - b > 0 else y ", &["a"]).as_deref(),
            Some(" x if __strata_arith(a, '-', b) > 0 else y ")
        );
    }
}
