//! Python's mutable lists and dicts in templates. dbt's Jinja is Jinja2, whose list and dict
//! literals are Python's: `{% do parts.append(x) %}`, `{% do seen.update({k: []}) %}` and
//! `{% do seen[k].append(c) %}` change them in place. minijinja's literals are immutable, so
//! before a template is compiled every list and dict literal in its expressions is wrapped in a
//! call that builds a [`super::pylist::PyList`] or [`super::pylist::PyDict`], and the value of
//! every `{% set name = ... %}` goes through [`OWN`], which gives a plain list or mapping
//! (a filter's result, a config value, `a + b`) its own mutable copy, as Python would have.
//!
//! The scan knows Jinja's delimiters, comments, `raw` blocks and string literals, so text
//! outside expressions and brackets inside strings are never touched.

use std::borrow::Cow;
use std::collections::HashSet;

use super::arith;
use super::pylist::{NEW_DICT, NEW_LIST};

/// The function `{% set name = value %}` passes `value` through.
pub const OWN: &str = "__strata_own";

/// `source` with its list and dict literals made mutable (unchanged when it has none).
pub fn mutable_literals(source: &str) -> Cow<'_, str> {
    if !source.contains("{{") && !source.contains("{%") {
        return Cow::Borrowed(source);
    }
    let bytes = source.as_bytes();
    let mut out = String::with_capacity(source.len() + source.len() / 8);
    let mut i = 0;
    let mut copied = 0;
    let mut changed = false;
    // Variables assigned dates so far, for the date arithmetic rewrite.
    let mut dates: HashSet<String> = HashSet::new();
    while i + 1 < bytes.len() {
        if bytes[i] != b'{' {
            i += 1;
            continue;
        }
        match bytes[i + 1] {
            b'#' => {
                // A comment: skip to its end.
                i = find(source, i + 2, "#}").map_or(bytes.len(), |e| e + 2);
            }
            b'{' | b'%' => {
                let block = bytes[i + 1] == b'%';
                let start = i + 2;
                let start = start + usize::from(bytes.get(start) == Some(&b'-'));
                if block && is_raw(&source[start..]) {
                    i = find(source, start, "endraw").map_or(bytes.len(), |e| e + 6);
                    continue;
                }
                let close = if block { "%}" } else { "}}" };
                let Some((end, rewritten)) = expression(source, start, close, block) else {
                    // Unterminated: leave the rest to the template parser's error.
                    break;
                };
                let content = rewritten.as_deref().unwrap_or(&source[start..end]);
                if block
                    && let Some(name) = set_target(content)
                    && arith::mentions_dates(content, &dates)
                {
                    dates.insert(name.to_string());
                }
                let rewritten = arith::rewrite(content, &dates).or(rewritten);
                if let Some(rewritten) = rewritten {
                    out.push_str(&source[copied..start]);
                    out.push_str(&rewritten);
                    copied = end;
                    changed = true;
                }
                i = end;
            }
            _ => i += 1,
        }
    }
    if !changed {
        return Cow::Borrowed(source);
    }
    out.push_str(&source[copied..]);
    Cow::Owned(out)
}

/// The variable `{% set name = ... %}` assigns.
fn set_target(block: &str) -> Option<&str> {
    let rest = block.trim_start().strip_prefix("set")?;
    let (name, value) = rest.split_once('=')?;
    let name = name.trim();
    let simple = !name.is_empty() && name.chars().all(|c| c.is_alphanumeric() || c == '_');
    (simple && !value.starts_with('=')).then_some(name)
}

fn find(source: &str, from: usize, pat: &str) -> Option<usize> {
    source.get(from..)?.find(pat).map(|p| p + from)
}

fn is_raw(tag: &str) -> bool {
    let t = tag.trim_start();
    t.starts_with("raw") && !t[3..].starts_with(|c: char| c.is_alphanumeric() || c == '_')
}

/// What a scanned token was, for telling a list literal `[` from a subscript.
#[derive(Clone, Copy, PartialEq)]
enum Prev {
    /// Start of the expression, an operator, `(`, `,`, `:` or a keyword: a `[` opens a list.
    Operator,
    /// A name, number, string or closing bracket: a `[` subscripts it.
    Operand,
}

/// Scan one expression or block from `start` to its closing delimiter. Returns the offset just
/// past the content (where the closing delimiter, with its `-`, begins) and the rewritten
/// content when it changed.
fn expression(
    source: &str,
    start: usize,
    close: &str,
    block: bool,
) -> Option<(usize, Option<String>)> {
    let bytes = source.as_bytes();
    let mut out = String::new();
    let mut copied = start;
    // Open brackets: whether each was rewritten (so its closing bracket gets a `)`).
    let mut stack: Vec<bool> = Vec::new();
    let mut prev = Prev::Operator;
    let mut i = start;
    // `{% set target = value %}`: where `value` starts, once the `=` is seen.
    let mut set_state = if block { SetState::Tag } else { SetState::No };
    let mut own_open = false;
    let mut changed = false;
    loop {
        let c = *bytes.get(i)?;
        if stack.is_empty() {
            let at_close =
                source[i..].starts_with(close) || (c == b'-' && source[i + 1..].starts_with(close));
            if at_close {
                if own_open {
                    out.push_str(&source[copied..i]);
                    // Keep whitespace before the delimiter outside the call.
                    let trimmed = out.trim_end().len();
                    let tail = out.split_off(trimmed);
                    out.push(')');
                    out.push_str(&tail);
                    copied = i;
                    changed = true;
                }
                if changed {
                    out.push_str(&source[copied..i]);
                    return Some((i, Some(out)));
                }
                return Some((i, None));
            }
        }
        match c {
            b'\'' | b'"' => {
                i = string_end(bytes, i)?;
                prev = Prev::Operand;
                continue;
            }
            b'[' | b'{' => {
                let literal = c == b'{' || prev == Prev::Operator;
                if literal {
                    out.push_str(&source[copied..i]);
                    out.push_str(if c == b'[' { NEW_LIST } else { NEW_DICT });
                    out.push('(');
                    out.push(c as char);
                    copied = i + 1;
                    changed = true;
                }
                stack.push(literal);
                prev = Prev::Operator;
            }
            b'(' => {
                stack.push(false);
                prev = Prev::Operator;
            }
            b']' | b'}' | b')' => {
                if stack.pop() == Some(true) {
                    out.push_str(&source[copied..=i]);
                    out.push(')');
                    copied = i + 1;
                }
                prev = Prev::Operand;
            }
            b'=' if set_state == SetState::Target
                && stack.is_empty()
                && !matches!(bytes.get(i + 1), Some(b'='))
                && !matches!(
                    bytes.get(i.wrapping_sub(1)),
                    Some(b'=' | b'!' | b'<' | b'>')
                ) =>
            {
                // The call goes where the value starts, after the `=`'s spacing.
                let mut j = i + 1;
                while bytes.get(j).is_some_and(u8::is_ascii_whitespace) {
                    j += 1;
                }
                out.push_str(&source[copied..j]);
                out.push_str(OWN);
                out.push('(');
                copied = j;
                i = j - 1;
                own_open = true;
                changed = true;
                set_state = SetState::No;
                prev = Prev::Operator;
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let s = i;
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                let word = &source[s..i];
                set_state = match (set_state, word) {
                    (SetState::Tag, "set") => SetState::Target,
                    (SetState::Tag, _) => SetState::No,
                    (state, _) => state,
                };
                prev = match word {
                    "in" | "and" | "or" | "not" | "if" | "else" | "elif" | "return" | "do" => {
                        Prev::Operator
                    }
                    _ => Prev::Operand,
                };
                continue;
            }
            c if c.is_ascii_digit() => {
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'.') {
                    i += 1;
                }
                prev = Prev::Operand;
                continue;
            }
            c if c.is_ascii_whitespace() => {}
            b',' if set_state == SetState::Target && stack.is_empty() => {
                // `{% set a, b = ... %}` unpacks: leave it alone.
                set_state = SetState::No;
                prev = Prev::Operator;
            }
            _ => prev = Prev::Operator,
        }
        i += 1;
    }
}

#[derive(Clone, Copy, PartialEq)]
enum SetState {
    /// An expression (`{{ }}`) or a block tag other than `set`.
    No,
    /// The start of a block: its tag name comes next.
    Tag,
    /// In `{% set ... `, before its `=`.
    Target,
}

/// The offset just past the string literal starting at `i`.
fn string_end(bytes: &[u8], i: usize) -> Option<usize> {
    let quote = bytes[i];
    let mut j = i + 1;
    while j < bytes.len() {
        match bytes[j] {
            b'\\' => j += 2,
            q if q == quote => return Some(j + 1),
            _ => j += 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rw(s: &str) -> String {
        mutable_literals(s).into_owned()
    }

    #[test]
    fn literals_become_calls_and_subscripts_stay() {
        assert_eq!(
            rw("{% set x = [] %}"),
            format!("{{% set x = {OWN}({NEW_LIST}([])) %}}")
        );
        assert_eq!(
            rw("{%- do d.update({r: []}) -%}"),
            format!("{{%- do d.update({NEW_DICT}({{r: {NEW_LIST}([])}})) -%}}")
        );
        assert_eq!(
            rw("{{ a[0] ~ b['k'] ~ f()[1] ~ 'x'[0] }}"),
            "{{ a[0] ~ b['k'] ~ f()[1] ~ 'x'[0] }}"
        );
        assert_eq!(
            rw("{% for c in ['a', 'b'] %}"),
            format!("{{% for c in {NEW_LIST}(['a', 'b']) %}}")
        );
        assert_eq!(
            rw("{% macro m(a=[], b='[x]') %}"),
            format!("{{% macro m(a={NEW_LIST}([]), b='[x]') %}}")
        );
    }

    #[test]
    fn text_comments_raw_and_strings_are_untouched() {
        let s = "select [a] from t {# {{ [1] }} #} {% raw %}{{ [2] }}{% endraw %} {{ '[3]' ~ \"{4}\" }}";
        assert_eq!(rw(s), s);
        assert_eq!(rw("{{ x }}"), "{{ x }}");
    }

    #[test]
    fn set_values_are_owned_but_not_unpacking_or_blocks() {
        assert_eq!(
            rw("{% set cols = a + b -%}"),
            format!("{{% set cols = {OWN}(a + b) -%}}")
        );
        assert_eq!(rw("{% set a, b = t %}"), "{% set a, b = t %}");
        assert_eq!(
            rw("{% set body %}x{% endset %}"),
            "{% set body %}x{% endset %}"
        );
        assert_eq!(
            rw("{% set ok = a == b %}"),
            format!("{{% set ok = {OWN}(a == b) %}}")
        );
        assert_eq!(
            rw("{% if a == [] %}"),
            format!("{{% if a == {NEW_LIST}([]) %}}")
        );
    }
}
