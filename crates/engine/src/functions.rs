//! SQL functions that warehouses share and DataFusion lacks, registered in every session, so
//! models and packages written for PostgreSQL, DuckDB or Snowflake run unchanged.
//!
//! - `mod(a, b)`: the remainder of `a / b`, with the sign of `a` (as `a % b`); an error when
//!   `b` is zero, as in PostgreSQL.
//! - `coalesce`, `nullif`, `greatest` and `least` read a text argument beside a date or
//!   timestamp as that type (`coalesce(ended_on, '2099-12-31')`), as PostgreSQL reads an
//!   untyped literal; DataFusion's own find no common type.
//! - `regexp_matches(text, pattern[, options])`: whether the pattern matches anywhere in the
//!   text, as DuckDB's (options `i` case-insensitive, `c` case-sensitive, `s` dot matches
//!   newlines, `m`/`n`/`p` line anchors).
//! - Text cast to a timestamp accepts what PostgreSQL and DuckDB accept beyond Arrow's parser:
//!   a time without seconds (`2021-01-01 00:00`) and a one-digit hour (`2021-01-01 7:05:00`)
//!   ([`text_to_timestamp`], which the analyzer puts in place of such casts).

use std::sync::Arc;

use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, FieldRef};
use datafusion::common::{Result, plan_err};
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::type_coercion::binary::BinaryTypeCoercer;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, Expr, Operator, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;

/// Register the functions in `ctx`.
pub fn register(ctx: &SessionContext) {
    for f in all(|name| ctx.udf(name).ok()) {
        ctx.register_udf(f);
    }
}

/// Strata's functions, as every session has them: the ones above, and the ones its analyzer
/// puts into plans (so another process reading a serialized plan finds them by name).
/// `builtin` finds DataFusion's functions that some of them wrap.
pub fn all(builtin: impl Fn(&str) -> Option<Arc<ScalarUDF>>) -> Vec<ScalarUDF> {
    let mut out = vec![
        ScalarUDF::from(Mod::new()),
        ScalarUDF::from(RegexpMatches {
            signature: Signature::user_defined(Volatility::Immutable),
        }),
        crate::semantics::strata_divide(),
        crate::semantics::strata_nullable(),
    ];
    for name in ["coalesce", "nullif", "greatest", "least"] {
        if let Some(inner) = builtin(name) {
            out.push(ScalarUDF::new_from_impl(TextAsTemporal { inner }));
        }
    }
    out
}

/// For a plan sent to another process: the parameters of a function that has some
/// (`strata_text_to_timestamp`'s type); `None` for functions found by name alone.
pub fn parameters(udf: &ScalarUDF) -> Option<String> {
    let any: &dyn std::any::Any = udf.inner().as_ref();
    any.downcast_ref::<TextToTimestamp>()
        .map(|t| t.target.to_string())
}

/// The function `name` with the parameters [`parameters`] gave.
pub fn with_parameters(name: &str, parameters: &str) -> Option<ScalarUDF> {
    match name {
        "strata_text_to_timestamp" => parameters.parse::<DataType>().ok().map(text_to_timestamp),
        _ => None,
    }
}

/// A function whose text arguments are read as the date or timestamp type of another argument
/// when its own coercion finds no common type; otherwise it is the function it wraps.
#[derive(Debug, PartialEq, Eq, Hash)]
struct TextAsTemporal {
    inner: Arc<ScalarUDF>,
}

impl ScalarUDFImpl for TextAsTemporal {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let text =
            |t: &DataType| matches!(t, DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8);
        let temporal = arg_types.iter().find(|t| {
            matches!(
                t,
                DataType::Date32 | DataType::Date64 | DataType::Timestamp(..)
            )
        });
        match temporal {
            Some(temporal) if arg_types.iter().any(text) => {
                let read: Vec<DataType> = arg_types
                    .iter()
                    .map(|t| if text(t) { temporal.clone() } else { t.clone() })
                    .collect();
                self.inner.inner().coerce_types(&read)
            }
            _ => self.inner.inner().coerce_types(arg_types),
        }
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        self.inner.invoke_with_args(args)
    }

    fn simplify(&self, args: Vec<Expr>, info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        self.inner.simplify(args, info)
    }

    fn short_circuits(&self) -> bool {
        self.inner.short_circuits()
    }

    fn conditional_arguments<'a>(
        &self,
        args: &'a [Expr],
    ) -> Option<(Vec<&'a Expr>, Vec<&'a Expr>)> {
        self.inner.inner().conditional_arguments(args)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }
}

/// `mod(a, b)`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Mod {
    signature: Signature,
}

impl Mod {
    fn new() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

/// The types `a % b` takes its operands in, and its result type.
fn modulo_types(args: &[DataType]) -> Result<(DataType, DataType, DataType)> {
    let [a, b] = args else {
        return plan_err!("mod() takes two arguments: mod(dividend, divisor)");
    };
    if !(a.is_numeric() || a.is_null()) || !(b.is_numeric() || b.is_null()) {
        return plan_err!("mod() takes two numbers, not {a} and {b}");
    }
    let coercer = BinaryTypeCoercer::new(a, &Operator::Modulo, b);
    let (l, r) = coercer.get_input_types()?;
    Ok((l, r, coercer.get_result_type()?))
}

impl ScalarUDFImpl for Mod {
    fn name(&self) -> &str {
        "mod"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let (l, r, _) = modulo_types(arg_types)?;
        Ok(vec![l, r])
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(modulo_types(arg_types)?.2)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let out_type = args.return_field.data_type();
        let (a, b) = (cast(&arrays[0], out_type)?, cast(&arrays[1], out_type)?);
        let out = datafusion::arrow::compute::kernels::numeric::rem(&a, &b)?;
        Ok(ColumnarValue::Array(out))
    }
}

/// `regexp_matches(text, pattern[, options])`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct RegexpMatches {
    signature: Signature,
}

/// DuckDB's regular-expression options as the `regex` crate's flags.
fn regex_flags(options: &str) -> Result<String> {
    let mut flags = String::new();
    for c in options.chars() {
        match c {
            'i' => flags.push('i'),
            'c' => flags.retain(|f| f != 'i'),
            's' => flags.push('s'),
            'm' | 'n' | 'p' => flags.push('m'),
            'g' => {}
            other => {
                return plan_err!(
                    "regexp_matches(): option `{other}` is not supported (use i, c, s, m, n, p or g)"
                );
            }
        }
    }
    Ok(flags)
}

impl ScalarUDFImpl for RegexpMatches {
    fn name(&self) -> &str {
        "regexp_matches"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if !(2..=3).contains(&arg_types.len()) {
            return plan_err!("regexp_matches() takes (text, pattern) or (text, pattern, options)");
        }
        Ok(vec![DataType::Utf8; arg_types.len()])
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, mut args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        use datafusion::common::ScalarValue;
        if let Some(options) = args.args.get_mut(2) {
            let ColumnarValue::Scalar(ScalarValue::Utf8(value)) = options else {
                return plan_err!("regexp_matches(): the options must be a constant string");
            };
            let flags = regex_flags(value.as_deref().unwrap_or_default())?;
            *options =
                ColumnarValue::Scalar(ScalarValue::Utf8((!flags.is_empty()).then_some(flags)));
            if matches!(options, ColumnarValue::Scalar(ScalarValue::Utf8(None))) {
                args.args.truncate(2);
                args.arg_fields.truncate(2);
            }
        }
        datafusion::functions::regex::regexp_like().invoke_with_args(args)
    }
}

/// The function a cast from text to the timestamp type `target` is planned as.
pub fn text_to_timestamp(target: DataType) -> ScalarUDF {
    ScalarUDF::new_from_impl(TextToTimestamp {
        target,
        signature: Signature::any(1, Volatility::Immutable),
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct TextToTimestamp {
    target: DataType,
    signature: Signature,
}

/// `text` written as Arrow's parser reads it: `HH:MM` gets `:00`, a one-digit hour a leading
/// zero. Anything else is returned as it is (and fails to parse, naming the value).
fn normalize_timestamp(text: &str) -> std::borrow::Cow<'_, str> {
    let t = text.trim();
    let Some((date, time)) = t.split_once([' ', 'T']) else {
        return std::borrow::Cow::Borrowed(text);
    };
    let mut parts = time.splitn(2, ':');
    let (Some(hour), Some(rest)) = (parts.next(), parts.next()) else {
        return std::borrow::Cow::Borrowed(text);
    };
    if hour.is_empty() || hour.len() > 2 || !hour.bytes().all(|b| b.is_ascii_digit()) {
        return std::borrow::Cow::Borrowed(text);
    }
    // `MM` alone (and whatever zone follows it) lacks seconds.
    let minutes_end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let (minutes, tail) = rest.split_at(minutes_end);
    let seconds = if minutes.len() == 2 && !tail.starts_with(':') {
        ":00"
    } else {
        ""
    };
    std::borrow::Cow::Owned(format!("{date} {hour:0>2}:{minutes}{seconds}{tail}"))
}

impl ScalarUDFImpl for TextToTimestamp {
    fn name(&self) -> &str {
        "strata_text_to_timestamp"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(self.target.clone())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        use datafusion::arrow::array::{Array, StringArray};
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let input = &arrays[0];
        // Arrow's parser first; only when it refuses a value are the values rewritten. As SQL's
        // CAST, a value that still does not parse is an error, never NULL.
        let strict = datafusion::arrow::compute::CastOptions {
            safe: false,
            ..Default::default()
        };
        let cast = |a: &dyn Array, t: &DataType| {
            datafusion::arrow::compute::cast_with_options(a, t, &strict)
        };
        match cast(input, &self.target) {
            Ok(out) => Ok(ColumnarValue::Array(out)),
            Err(first) => {
                let text = cast(input.as_ref(), &DataType::Utf8)?;
                let text = text.as_any().downcast_ref::<StringArray>().ok_or(first)?;
                let normalized: StringArray = text
                    .iter()
                    .map(|v| v.map(normalize_timestamp))
                    .collect::<Vec<_>>()
                    .iter()
                    .map(|v| v.as_deref())
                    .collect();
                Ok(ColumnarValue::Array(cast(&normalized, &self.target)?))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::normalize_timestamp;

    #[test]
    fn timestamps_without_seconds_or_with_one_digit_hours() {
        assert_eq!(
            normalize_timestamp("2021-01-01 00:00"),
            "2021-01-01 00:00:00"
        );
        assert_eq!(
            normalize_timestamp("2021-01-01 7:05:09"),
            "2021-01-01 07:05:09"
        );
        assert_eq!(
            normalize_timestamp("2021-01-01T7:05+02:00"),
            "2021-01-01 07:05:00+02:00"
        );
        assert_eq!(
            normalize_timestamp("2021-01-01 07:05:09.5"),
            "2021-01-01 07:05:09.5"
        );
        assert_eq!(normalize_timestamp("2021-01-01"), "2021-01-01");
        assert_eq!(normalize_timestamp("soon"), "soon");
    }
}
