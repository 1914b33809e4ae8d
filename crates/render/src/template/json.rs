//! Go's `encoding/json` output for template values: sorted keys, HTML-safe escapes (`<` →
//! `\u003c`), Go's float format, and `MarshalIndent(v, "", "  ")` for the pretty form.

use super::value::{MAX_STRING, Value, visit};

thread_local! {
    /// Whether strings escape `<`, `>` and `&` (Go's `SetEscapeHTML`; off for `toRawJson`).
    static ESCAPE_HTML: std::cell::Cell<bool> = const { std::cell::Cell::new(true) };
}

fn push_string(out: &mut String, s: &str) {
    let html = ESCAPE_HTML.with(std::cell::Cell::get);
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if c < ' ' || (html && (c == '<' || c == '>' || c == '&')) => {
                let b = c as u8;
                out.push_str("\\u00");
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 0xF)]));
            }
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Go's `floatEncoder`: `%f`-style shortest digits, exponent form below 1e-6 and from 1e21.
fn push_float(out: &mut String, f: f64) -> Result<(), ()> {
    if !f.is_finite() {
        return Err(());
    }
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let s = super::fmt::format_float(f, 'e', None);
        // Go writes e-07 as e-7.
        let s = match s.rsplit_once("e-0") {
            Some((m, e)) if e.len() == 1 => format!("{m}e-{e}"),
            _ => s,
        };
        out.push_str(&s);
    } else {
        out.push_str(&super::fmt::format_float(f, 'f', None));
    }
    Ok(())
}

fn newline(out: &mut String, indent: Option<usize>) {
    if let Some(level) = indent {
        out.push('\n');
        for _ in 0..level {
            out.push_str("  ");
        }
    }
}

fn encode(out: &mut String, v: &Value, indent: Option<usize>, depth: usize) -> Result<(), ()> {
    if out.len() > MAX_STRING || !visit(depth) {
        return Err(());
    }
    match v {
        Value::Missing | Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) | Value::Int64(i) => out.push_str(&i.to_string()),
        Value::Float(f) => push_float(out, *f)?,
        Value::Str(s) => push_string(out, s),
        // `MarshalJSON` of both: RFC 3339 with nanoseconds, and `String()`.
        Value::Time(t) => push_string(
            out,
            &t.rfc3339_nano()
                .unwrap_or_else(|| t.format("2006-01-02T15:04:05.999999999Z07:00")),
        ),
        Value::Version(v) => push_string(out, &v.go_string()),
        Value::List(items) if items.is_nil_slice() => out.push_str("null"),
        Value::List(items) => {
            if items.is_empty() {
                out.push_str("[]");
                return Ok(());
            }
            out.push('[');
            let inner = indent.map(|l| l + 1);
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline(out, inner);
                encode(out, item, inner, depth + 1)?;
            }
            newline(out, indent);
            out.push(']');
        }
        Value::Map(m) => {
            let m = m.borrow();
            if m.is_empty() {
                out.push_str("{}");
                return Ok(());
            }
            out.push('{');
            let inner = indent.map(|l| l + 1);
            for (i, (k, item)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline(out, inner);
                push_string(out, k);
                out.push(':');
                if indent.is_some() {
                    out.push(' ');
                }
                encode(out, item, inner, depth + 1)?;
            }
            newline(out, indent);
            out.push('}');
        }
    }
    Ok(())
}

/// `json.Marshal`; `None` where Go fails (NaN, ±Inf) and for values over our size limits.
pub(crate) fn to_json(v: &Value) -> Option<String> {
    let mut out = String::new();
    encode(&mut out, v, None, 0).ok().map(|()| out)
}

/// A `json.Encoder` with `SetEscapeHTML(false)`, without the trailing newline (sprig's
/// `toRawJson`).
pub(crate) fn to_raw_json(v: &Value) -> Option<String> {
    ESCAPE_HTML.with(|h| h.set(false));
    let out = to_json(v);
    ESCAPE_HTML.with(|h| h.set(true));
    out
}

/// `json.MarshalIndent(v, "", "  ")`.
pub(crate) fn to_pretty_json(v: &Value) -> Option<String> {
    let mut out = String::new();
    encode(&mut out, v, Some(0), 0).ok().map(|()| out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_go() {
        let v = Value::from_json(&serde_json::json!({
            "b": [1, 2.5, null, true],
            "a": "<x&y>\n\u{1}",
            "c": {},
            "d": []
        }));
        assert_eq!(
            to_json(&v).as_deref(),
            Some(r#"{"a":"\u003cx\u0026y\u003e\n\u0001","b":[1,2.5,null,true],"c":{},"d":[]}"#)
        );
        assert_eq!(
            to_pretty_json(&v).as_deref(),
            Some(
                "{\n  \"a\": \"\\u003cx\\u0026y\\u003e\\n\\u0001\",\n  \"b\": [\n    1,\n    2.5,\n    null,\n    true\n  ],\n  \"c\": {},\n  \"d\": []\n}"
            )
        );
        assert_eq!(to_json(&Value::Float(1e21)).as_deref(), Some("1e+21"));
        assert_eq!(to_json(&Value::Float(1e-7)).as_deref(), Some("1e-7"));
        assert_eq!(
            to_json(&Value::Float(1e20)).as_deref(),
            Some("100000000000000000000")
        );
        assert_eq!(to_json(&Value::Float(f64::NAN)), None);
    }
}
