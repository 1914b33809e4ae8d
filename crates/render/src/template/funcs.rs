//! The functions templates may call: Go's builtins and the subset of sprig v3 our templates and
//! the published docs use. Each declares its Go parameter types, because Go checks arguments
//! against them (`wrong type for value; expected string; got int`) before calling.

use std::collections::BTreeMap;

use base64::Engine as _;

use super::fmt::{go_quote, sprint, sprintf, sprintln};
use super::gourl::{GoUrl, query_escape};
use super::json::{to_json, to_pretty_json};
use super::parse::parse_go_int;
use super::value::{MAX_STRING, Value, charge, visit};

/// A Go parameter type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Param {
    /// `interface{}`: nil arrives as [`Value::Null`].
    Any,
    /// `reflect.Value` (builtins): missing values arrive as [`Value::Missing`].
    Reflect,
    Str,
    Int,
    /// `float64`.
    Float,
    Bool,
    /// `map[string]interface{}`: nil arrives as [`Value::Missing`].
    Map,
    /// `time.Time`.
    Time,
    /// `time.Duration` (methods of times): integer constants only.
    Duration,
    /// `*semver.Version` (methods of versions): nil arrives as [`Value::Missing`].
    Version,
}

impl Param {
    pub(crate) fn go_type(self) -> &'static str {
        match self {
            Param::Any => "interface {}",
            Param::Reflect => "reflect.Value",
            Param::Str => "string",
            Param::Int => "int",
            Param::Float => "float64",
            Param::Bool => "bool",
            Param::Map => "map[string]interface {}",
            Param::Time => "time.Time",
            Param::Duration => "time.Duration",
            Param::Version => "*semver.Version",
        }
    }

    pub(crate) fn can_be_nil(self) -> bool {
        matches!(
            self,
            Param::Any | Param::Reflect | Param::Map | Param::Version
        )
    }
}

type Impl = fn(&[Value]) -> Result<Value, String>;

pub(crate) struct Func {
    pub name: &'static str,
    pub fixed: &'static [Param],
    pub variadic: Option<Param>,
    pub call: Impl,
}

use Param::{Any, Bool, Int, Map, Reflect, Str};

macro_rules! funcs {
    ($( $name:literal ( $($p:ident),* $(; ...$v:ident)? ) => $f:expr ),* $(,)?) => {
        &[ $( Func {
            name: $name,
            fixed: &[$($p),*],
            variadic: funcs!(@v $($v)?),
            call: $f,
        } ),* ]
    };
    (@v) => { None };
    (@v $v:ident) => { Some($v) };
}

static FUNCS: &[Func] = funcs![
    // Go builtins. `and`, `or` and `call` are evaluated by the executor.
    "and"(Reflect; ...Reflect) => |_| Ok(Value::Missing),
    "or"(Reflect; ...Reflect) => |_| Ok(Value::Missing),
    "call"(Reflect; ...Reflect) => |_| Ok(Value::Missing),
    "not"(Reflect) => |a| Ok(Value::Bool(!a[0].is_true())),
    "html"(; ...Any) => |a| Ok(Value::Str(html_escape(&eval_args(a)))),
    "js"(; ...Any) => |a| Ok(Value::Str(js_escape(&eval_args(a)))),
    "urlquery"(; ...Any) => |a| Ok(Value::Str(query_escape(&eval_args(a)))),
    "print"(; ...Any) => |a| Ok(Value::Str(sprint(a))),
    "println"(; ...Any) => |a| Ok(Value::Str(sprintln(a))),
    "printf"(Str; ...Any) => |a| Ok(Value::Str(sprintf(s(&a[0]), &a[1..]))),
    "len"(Reflect) => length,
    "index"(Reflect; ...Reflect) => index,
    // sprig's `slice` replaces Go's builtin of the same name in `TxtFuncMap`.
    "slice"(Any; ...Any) => sprig_slice,
    "eq"(Reflect; ...Reflect) => eq,
    "ne"(Reflect, Reflect) => |a| Ok(Value::Bool(!eq_one(&a[0], &a[1])?)),
    "lt"(Reflect, Reflect) => |a| lt(&a[0], &a[1]).map(Value::Bool),
    "le"(Reflect, Reflect) => |a| le(&a[0], &a[1]).map(Value::Bool),
    "gt"(Reflect, Reflect) => |a| le(&a[0], &a[1]).map(|b| Value::Bool(!b)),
    "ge"(Reflect, Reflect) => |a| lt(&a[0], &a[1]).map(|b| Value::Bool(!b)),
    // sprig: strings
    "b64enc"(Str) => |a| Ok(Value::str(base64::engine::general_purpose::STANDARD.encode(s(&a[0])))),
    "b64dec"(Str) => |a| Ok(Value::Str(b64dec(s(&a[0])))),
    "trim"(Str) => |a| Ok(Value::str(s(&a[0]).trim())),
    "trimAll"(Str, Str) => |a| {
        let cut = s(&a[0]);
        Ok(Value::str(s(&a[1]).trim_matches(|c| cut.contains(c))))
    },
    "trimPrefix"(Str, Str) => |a| {
        let (p, v) = (s(&a[0]), s(&a[1]));
        Ok(Value::str(v.strip_prefix(p).unwrap_or(v)))
    },
    "trimSuffix"(Str, Str) => |a| {
        let (p, v) = (s(&a[0]), s(&a[1]));
        Ok(Value::str(v.strip_suffix(p).unwrap_or(v)))
    },
    "upper"(Str) => |a| Ok(Value::Str(s(&a[0]).to_uppercase())),
    "lower"(Str) => |a| Ok(Value::Str(s(&a[0]).to_lowercase())),
    "replace"(Str, Str, Str) => |a| Ok(Value::Str(s(&a[2]).replace(s(&a[0]), s(&a[1])))),
    "contains"(Str, Str) => |a| Ok(Value::Bool(s(&a[1]).contains(s(&a[0])))),
    "hasPrefix"(Str, Str) => |a| Ok(Value::Bool(s(&a[1]).starts_with(s(&a[0])))),
    "hasSuffix"(Str, Str) => |a| Ok(Value::Bool(s(&a[1]).ends_with(s(&a[0])))),
    "splitList"(Str, Str) => |a| {
        Ok(Value::list(go_split(s(&a[1]), s(&a[0])).into_iter().map(Value::Str).collect()))
    },
    "split"(Str, Str) => |a| {
        let parts = go_split(s(&a[1]), s(&a[0]));
        Ok(Value::map(
            parts.into_iter().enumerate().map(|(i, p)| (format!("_{i}"), Value::Str(p))).collect(),
        ))
    },
    "join"(Str, Any) => |a| Ok(Value::Str(strslice(&a[1]).join(s(&a[0])))),
    "quote"(; ...Any) => |a| {
        let parts: Vec<String> =
            a.iter().filter(|v| !v.is_nil()).map(|v| go_quote(&strval(v))).collect();
        Ok(Value::Str(parts.join(" ")))
    },
    "squote"(; ...Any) => |a| {
        let parts: Vec<String> =
            a.iter().filter(|v| !v.is_nil()).map(|v| format!("'{}'", strval(v))).collect();
        Ok(Value::Str(parts.join(" ")))
    },
    "cat"(; ...Any) => |a| {
        let parts: Vec<String> = a.iter().filter(|v| !v.is_nil()).map(|v| sprint(std::slice::from_ref(v))).collect();
        Ok(Value::Str(parts.join(" ")))
    },
    "indent"(Int, Str) => |a| indent(&a[0], s(&a[1])).map(Value::Str),
    "nindent"(Int, Str) => |a| indent(&a[0], s(&a[1])).map(|t| Value::Str(format!("\n{t}"))),
    "repeat"(Int, Str) => |a| repeat(&a[0], s(&a[1])),
    "toString"(Any) => |a| Ok(Value::Str(strval(&a[0]))),
    // sprig: URLs
    "urlParse"(Str) => |a| url_parse(s(&a[0])),
    "urlJoin"(Map) => url_join,
    // sprig: lists
    "list"(; ...Any) => |a| new_list(a.to_vec()),
    "first"(Any) => |a| list_op(&a[0], "first", |l| l.first().cloned().unwrap_or(Value::Null)),
    "last"(Any) => |a| list_op(&a[0], "last", |l| l.last().cloned().unwrap_or(Value::Null)),
    // Of an empty list, Go gives a nil `[]interface{}`: it prints as `[]` and JSON-encodes as
    // `null`.
    "rest"(Any) => |a| list_op(&a[0], "rest", |l| {
        if l.is_empty() { Value::nil_list() } else { Value::list(l[1..].to_vec()) }
    }),
    "initial"(Any) => |a| list_op(&a[0], "initial", |l| {
        if l.is_empty() { Value::nil_list() } else { Value::list(l[..l.len() - 1].to_vec()) }
    }),
    "append"(Any, Any) => |a| {
        let mut items = list_items(&a[0], "Cannot push on type")?;
        items.push(a[1].clone());
        new_list(items)
    },
    "prepend"(Any, Any) => |a| {
        let mut items = list_items(&a[0], "Cannot prepend on type")?;
        items.insert(0, a[1].clone());
        new_list(items)
    },
    "has"(Any, Any) => |a| match &a[1] {
        Value::Null | Value::Missing => Ok(Value::Bool(false)),
        Value::List(l) => Ok(Value::Bool(l.iter().any(|x| deep_equal(x, &a[0], 0)))),
        other => Err(format!("Cannot find has on type {}", kind_name(other))),
    },
    // sprig: dicts
    "dict"(; ...Any) => |a| {
        let mut m = BTreeMap::new();
        for pair in a.chunks(2) {
            let key = strval(&pair[0]);
            m.insert(key, pair.get(1).cloned().unwrap_or_else(|| Value::str("")));
        }
        Ok(Value::map(m))
    },
    "get"(Map, Str) => |a| Ok(match &a[0] {
        Value::Map(m) => m.borrow().get(s(&a[1])).cloned().unwrap_or_else(|| Value::str("")),
        _ => Value::str(""),
    }),
    "set"(Map, Str, Any) => |a| match &a[0] {
        Value::Map(m) => {
            let value = a[2].deep_clone();
            m.borrow_mut().insert(s(&a[1]).to_owned(), value);
            Ok(a[0].clone())
        }
        _ => Err("assignment to entry in nil map".into()),
    },
    "hasKey"(Map, Str) => |a| Ok(Value::Bool(match &a[0] {
        Value::Map(m) => m.borrow().contains_key(s(&a[1])),
        _ => false,
    })),
    "keys"(; ...Map) => |a| {
        let mut keys = Vec::new();
        for d in a {
            if let Value::Map(m) = d {
                keys.extend(m.borrow().keys().cloned().map(Value::Str));
            }
        }
        Ok(Value::list(keys))
    },
    // sprig: defaults and conversions
    "default"(Any; ...Any) => |a| Ok(match a.get(1) {
        Some(given) if !empty(given) => given.clone(),
        _ => a[0].clone(),
    }),
    "empty"(Any) => |a| Ok(Value::Bool(empty(&a[0]))),
    "coalesce"(; ...Any) => |a| Ok(a.iter().find(|v| !empty(v)).cloned().unwrap_or(Value::Null)),
    "ternary"(Any, Any, Bool) => |a| Ok(if matches!(a[2], Value::Bool(true)) { a[0].clone() } else { a[1].clone() }),
    "toJson"(Any) => |a| Ok(Value::Str(to_json(&a[0]).unwrap_or_default())),
    "toPrettyJson"(Any) => |a| Ok(Value::Str(to_pretty_json(&a[0]).unwrap_or_default())),
    "fromJson"(Str) => |a| Ok(serde_json::from_str::<serde_json::Value>(s(&a[0]))
        .map_or(Value::Null, |j| Value::from_json_floats(&j))),
    "int"(Any) => |a| Ok(Value::Int(to_int64(&a[0]))),
    "add"(; ...Any) => |a| Ok(Value::Int64(a.iter().fold(0i64, |acc, v| acc.wrapping_add(to_int64(v))))),
    "add1"(Any) => |a| Ok(Value::Int64(to_int64(&a[0]).wrapping_add(1))),
    "sub"(Any, Any) => |a| Ok(Value::Int64(to_int64(&a[0]).wrapping_sub(to_int64(&a[1])))),
    "mul"(Any; ...Any) => |a| Ok(Value::Int64(a.iter().fold(1i64, |acc, v| acc.wrapping_mul(to_int64(v))))),
    "div"(Any, Any) => |a| {
        let d = to_int64(&a[1]);
        if d == 0 { return Err("runtime error: integer divide by zero".into()); }
        Ok(Value::Int64(to_int64(&a[0]).wrapping_div(d)))
    },
    "mod"(Any, Any) => |a| {
        let d = to_int64(&a[1]);
        if d == 0 { return Err("runtime error: integer divide by zero".into()); }
        Ok(Value::Int64(to_int64(&a[0]).wrapping_rem(d)))
    },
];

pub(crate) fn names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = all()
        .map(|f| f.name)
        .chain(super::sprig::ALIASES.iter().map(|(a, _)| *a))
        .collect();
    names.sort_unstable();
    names
}

pub(crate) fn lookup(name: &str) -> Option<&'static Func> {
    let name = super::sprig::ALIASES
        .iter()
        .find(|(a, _)| *a == name)
        .map_or(name, |(_, target)| *target);
    all().find(|f| f.name == name)
}

/// Every function table: Go's builtins and sprig's groups (refused ones included, so that calling one says why).
fn all() -> impl Iterator<Item = &'static Func> {
    FUNCS
        .iter()
        .chain(super::sprig::MORE)
        .chain(super::sprig::REGEX)
        .chain(super::sprig::RANDOM)
        .chain(super::sprig::REFUSED_FUNCS)
        .chain(super::sprig::MERGE)
        .chain(super::sprig::FLOATS)
        .chain(super::sprig::CASES)
        .chain(super::sprig::DURATIONS)
        .chain(super::sprig::DATES)
}

/// What Go's runtime says when sprig calls `reflect.TypeOf(nil).Kind()`.
pub(crate) const NIL_DEREF: &str =
    "runtime error: invalid memory address or nil pointer dereference";

/// The string of a `Str` parameter (the executor checked the type).
pub(crate) fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

/// `reflect.Kind` names, as sprig's error messages print them.
pub(crate) fn kind_name(v: &Value) -> &'static str {
    match v {
        Value::Missing | Value::Null => "invalid",
        Value::Bool(_) => "bool",
        Value::Int(_) => "int",
        Value::Int64(_) => "int64",
        Value::Float(_) => "float64",
        Value::Str(_) => "string",
        Value::List(_) => "slice",
        Value::Map(_) => "map",
        Value::Time(_) => "struct",
        Value::Version(v) if v.by_value => "struct",
        Value::Version(_) => "ptr",
    }
}

fn new_list(items: Vec<Value>) -> Result<Value, String> {
    Ok(Value::list(items))
}

/// sprig's `strval`: strings as they are, everything else as `%v`.
pub(crate) fn strval(v: &Value) -> String {
    match v {
        Value::Str(s) => s.clone(),
        v => sprint(std::slice::from_ref(v)),
    }
}

/// sprig's `strslice`: a list's non-nil items as strings; a scalar as a one-item list.
pub(crate) fn strslice(v: &Value) -> Vec<String> {
    match v {
        Value::List(items) => items.iter().filter(|i| !i.is_nil()).map(strval).collect(),
        Value::Missing | Value::Null => Vec::new(),
        v => vec![strval(v)],
    }
}

/// sprig's `empty`.
pub(crate) fn empty(v: &Value) -> bool {
    !v.is_true()
}

pub(crate) fn deep_equal(a: &Value, b: &Value, depth: usize) -> bool {
    if !visit(depth) {
        return false;
    }
    match (a, b) {
        (Value::Missing | Value::Null, Value::Missing | Value::Null) => true,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Int(x), Value::Int(y)) | (Value::Int64(x), Value::Int64(y)) => x == y,
        (Value::Float(x), Value::Float(y)) => x == y,
        (Value::Str(x), Value::Str(y)) => x == y,
        (Value::Time(x), Value::Time(y)) => x.deep_equal(y),
        (Value::Version(x), Value::Version(y)) => x == y,
        (Value::List(x), Value::List(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y.iter())
                    .all(|(p, q)| deep_equal(p, q, depth + 1))
        }
        (Value::Map(x), Value::Map(y)) => {
            let (x, y) = (x.borrow(), y.borrow());
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| deep_equal(v, w, depth + 1)))
        }
        _ => false,
    }
}

/// spf13/cast's `ToInt64` as sprig uses it: failures are 0.
pub(crate) fn to_int64(v: &Value) -> i64 {
    match v {
        Value::Bool(b) => i64::from(*b),
        Value::Int(i) | Value::Int64(i) => *i,
        Value::Float(f) => go_f64_to_i64(*f),
        Value::Str(s) => parse_go_int(trim_zero_decimal(s)).unwrap_or(0),
        _ => 0,
    }
}

/// Go's `int64(f)` on amd64: NaN and values out of range give the minimum `int64` (Rust's `as`
/// saturates).
pub(crate) fn go_f64_to_i64(f: f64) -> i64 {
    // -2^63 ≤ f < 2^63
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    if f.is_nan() || !(-LIMIT..LIMIT).contains(&f) {
        i64::MIN
    } else {
        f as i64
    }
}

/// spf13/cast's `ToFloat64` as sprig uses it: failures are 0.
pub(crate) fn to_float64(v: &Value) -> f64 {
    match v {
        Value::Bool(b) => f64::from(u8::from(*b)),
        Value::Int(i) | Value::Int64(i) => *i as f64,
        Value::Float(f) => *f,
        Value::Str(s) => go_parse_float(s).unwrap_or(0.0),
        _ => 0.0,
    }
}

/// `strconv.ParseFloat(s, 64)` for decimal syntax (Rust's parser, minus what Go refuses).
fn go_parse_float(s: &str) -> Option<f64> {
    let t = s.strip_prefix(['+', '-']).unwrap_or(s);
    let lower = t.to_ascii_lowercase();
    if matches!(lower.as_str(), "inf" | "infinity" | "nan") {
        return s.parse().ok();
    }
    if t.is_empty()
        || !t
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
    {
        return None;
    }
    s.parse().ok()
}

/// cast's `trimZeroDecimal`: `"1.00"` → `"1"`.
fn trim_zero_decimal(s: &str) -> &str {
    let b = s.as_bytes();
    let mut found_zero = false;
    for i in (1..=b.len()).rev() {
        match b[i - 1] {
            b'.' if found_zero => return &s[..i - 1],
            b'.' => {}
            b'0' => found_zero = true,
            _ => return s,
        }
    }
    s
}

/// Go's `strings.Split`.
fn go_split(s: &str, sep: &str) -> Vec<String> {
    if sep.is_empty() {
        return s.chars().map(String::from).collect();
    }
    s.split(sep).map(str::to_owned).collect()
}

fn b64dec(s: &str) -> String {
    // Go's StdEncoding ignores \r and \n; on error sprig returns the error's text.
    let cleaned: String = s.chars().filter(|c| *c != '\r' && *c != '\n').collect();
    match base64::engine::general_purpose::STANDARD.decode(cleaned.as_bytes()) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) => {
            let at = match e {
                base64::DecodeError::InvalidByte(i, _)
                | base64::DecodeError::InvalidLastSymbol(i, _) => i,
                _ => cleaned.len() - cleaned.len() % 4,
            };
            format!("illegal base64 data at input byte {at}")
        }
    }
}

fn indent(n: &Value, text: &str) -> Result<String, String> {
    let n = match n {
        Value::Int(n) if *n >= 0 => usize::try_from(*n).unwrap_or(usize::MAX),
        _ => return Err("strings: negative Repeat count".into()),
    };
    if n.saturating_mul(text.matches('\n').count() + 1) > MAX_STRING {
        return Err("indent: result too large".into());
    }
    let pad = " ".repeat(n);
    Ok(format!("{pad}{}", text.replace('\n', &format!("\n{pad}"))))
}

fn repeat(n: &Value, text: &str) -> Result<Value, String> {
    let n = match n {
        Value::Int(n) if *n >= 0 => usize::try_from(*n).unwrap_or(usize::MAX),
        _ => return Err("strings: negative Repeat count".into()),
    };
    if n.saturating_mul(text.len()) > MAX_STRING {
        return Err("repeat: result too large".into());
    }
    Ok(Value::Str(text.repeat(n)))
}

pub(crate) fn list_items(v: &Value, what: &str) -> Result<Vec<Value>, String> {
    match v {
        Value::List(l) => {
            charge(l.len() as u64);
            Ok(l.to_vec())
        }
        Value::Missing | Value::Null => Err(NIL_DEREF.into()),
        other => Err(format!("{what} {}", kind_name(other))),
    }
}

fn list_op(v: &Value, what: &str, f: impl Fn(&[Value]) -> Value) -> Result<Value, String> {
    match v {
        Value::List(l) => Ok(f(l)),
        Value::Missing | Value::Null => Err(NIL_DEREF.into()),
        other => Err(format!("Cannot find {what} on type {}", kind_name(other))),
    }
}

fn url_parse(raw: &str) -> Result<Value, String> {
    let u = GoUrl::parse(raw).map_err(|e| format!("unable to parse url: {e}"))?;
    let mut m = BTreeMap::new();
    m.insert("scheme".into(), Value::str(&u.scheme));
    m.insert("host".into(), Value::str(&u.host));
    m.insert("hostname".into(), Value::Str(u.hostname()));
    m.insert("path".into(), Value::str(&u.path));
    m.insert("query".into(), Value::str(&u.raw_query));
    m.insert("opaque".into(), Value::str(&u.opaque));
    m.insert("fragment".into(), Value::str(&u.fragment));
    m.insert("userinfo".into(), Value::Str(u.userinfo()));
    Ok(Value::map(m))
}

fn url_join(a: &[Value]) -> Result<Value, String> {
    let get = |key: &str| -> Result<String, String> {
        let Value::Map(m) = &a[0] else {
            return Ok(String::new());
        };
        match m.borrow().get(key) {
            None => Ok(String::new()),
            Some(Value::Str(s)) => Ok(s.clone()),
            Some(Value::Null | Value::Missing) => Err(NIL_DEREF.into()),
            Some(other) => Err(format!(
                "unable to parse {key} key, must be of type string, but {} found",
                kind_name(other)
            )),
        }
    };
    let userinfo = get("userinfo")?;
    let user = if userinfo.is_empty() {
        None
    } else {
        let tmp = GoUrl::parse(&format!("proto://{userinfo}@host"))
            .map_err(|e| format!("unable to parse userinfo in dict: {e}"))?;
        tmp.user
    };
    let u = GoUrl {
        scheme: get("scheme")?,
        host: get("host")?,
        path: get("path")?,
        raw_query: get("query")?,
        opaque: get("opaque")?,
        fragment: get("fragment")?,
        user,
    };
    Ok(Value::Str(u.to_go_string()))
}

/// text/template's `evalArgs` for `html`, `js` and `urlquery`.
fn eval_args(args: &[Value]) -> String {
    if let [Value::Str(s)] = args {
        return s.clone();
    }
    let printable: Vec<Value> = args
        .iter()
        .map(|a| {
            if a.is_nil() {
                Value::str("<no value>")
            } else {
                a.clone()
            }
        })
        .collect();
    sprint(&printable)
}

/// Go's `template.HTMLEscapeString`.
fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\0' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// Go's `template.JSEscapeString`.
fn js_escape(s: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '<' => out.push_str("\\u003C"),
            '>' => out.push_str("\\u003E"),
            '&' => out.push_str("\\u0026"),
            '=' => out.push_str("\\u003D"),
            c if c < ' ' => {
                let b = c as u8;
                out.push_str("\\u00");
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 0xF)]));
            }
            c if c.is_ascii() || super::fmt::is_print(c) => out.push(c),
            c => out.push_str(&format!("\\u{:04X}", u32::from(c))),
        }
    }
    out
}

fn length(a: &[Value]) -> Result<Value, String> {
    let n = match &a[0] {
        Value::Null => return Err("len of nil pointer".into()),
        Value::Missing => return Err("reflect: call of reflect.Value.Type on zero Value".into()),
        Value::Str(s) => s.len(),
        Value::List(l) => l.len(),
        Value::Map(m) => m.borrow().len(),
        other => return Err(format!("len of type {}", other.type_name())),
    };
    Ok(Value::Int(i64::try_from(n).unwrap_or(i64::MAX)))
}

/// Go's `indexArg`.
fn index_arg(idx: &Value, cap: usize) -> Result<usize, String> {
    let x = match idx {
        Value::Int(x) | Value::Int64(x) => *x,
        Value::Missing | Value::Null => return Err("cannot index slice/array with nil".into()),
        other => {
            return Err(format!(
                "cannot index slice/array with type {}",
                other.type_name()
            ));
        }
    };
    match usize::try_from(x) {
        Ok(u) if u <= cap => Ok(u),
        _ => Err(format!("index out of range: {x}")),
    }
}

fn index(a: &[Value]) -> Result<Value, String> {
    let mut item = a[0].clone().collapse_null();
    if matches!(item, Value::Missing) {
        return Err("index of untyped nil".into());
    }
    for idx in &a[1..] {
        let idx = idx.clone().collapse_null();
        item = match &item {
            Value::Null | Value::Missing => return Err("index of nil pointer".into()),
            Value::List(l) => {
                let x = index_arg(&idx, l.len())?;
                l.get(x)
                    .cloned()
                    .ok_or("reflect: slice index out of range")?
            }
            Value::Str(s) => {
                let x = index_arg(&idx, s.len())?;
                Value::Int(i64::from(
                    *s.as_bytes()
                        .get(x)
                        .ok_or("reflect: string index out of range")?,
                ))
            }
            Value::Map(m) => {
                let key = match &idx {
                    Value::Str(k) => k,
                    Value::Missing => return Err("value is nil; should be of type string".into()),
                    other => {
                        return Err(format!(
                            "value has type {}; should be string",
                            other.type_name()
                        ));
                    }
                };
                m.borrow().get(key).cloned().unwrap_or(Value::Null)
            }
            other => return Err(format!("can't index item of type {}", other.type_name())),
        };
    }
    Ok(item)
}

/// sprig's `slice`: a list's items from `start` (default 0) to `end` (default the length).
fn sprig_slice(a: &[Value]) -> Result<Value, String> {
    let l = match &a[0] {
        Value::List(l) => l,
        Value::Missing | Value::Null => return Err(NIL_DEREF.into()),
        other => {
            return Err(format!(
                "list should be type of slice or array but {}",
                kind_name(other)
            ));
        }
    };
    if l.is_empty() {
        return Ok(Value::Null);
    }
    let start = a.get(1).map_or(0, to_int64);
    let end = a.get(2).map_or(l.len() as i64, to_int64);
    match (usize::try_from(start), usize::try_from(end)) {
        (Ok(s), Ok(e)) if s <= e && e <= l.len() => Ok(Value::list(l[s..e].to_vec())),
        _ => Err("reflect.Value.Slice: slice index out of bounds".into()),
    }
}

#[derive(PartialEq, Eq, Clone, Copy)]
enum BasicKind {
    Invalid,
    Bool,
    Int,
    Float,
    Str,
}

fn basic_kind(v: &Value) -> BasicKind {
    match v {
        Value::Bool(_) => BasicKind::Bool,
        Value::Int(_) | Value::Int64(_) => BasicKind::Int,
        Value::Float(_) => BasicKind::Float,
        Value::Str(_) => BasicKind::Str,
        _ => BasicKind::Invalid,
    }
}

const BAD_COMPARISON_TYPE: &str = "invalid type for comparison";
const BAD_COMPARISON: &str = "incompatible types for comparison";

/// Go's `eq` for one pair.
fn eq_one(a: &Value, b: &Value) -> Result<bool, String> {
    let (a, b) = (a.clone().collapse_null(), b.clone().collapse_null());
    let (k1, k2) = (basic_kind(&a), basic_kind(&b));
    if k1 != k2 {
        if !a.is_nil() && !b.is_nil() {
            return Err(BAD_COMPARISON.into());
        }
        return Ok(false);
    }
    Ok(match (&a, &b) {
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Int(x) | Value::Int64(x), Value::Int(y) | Value::Int64(y)) => x == y,
        (Value::Float(x), Value::Float(y)) => x == y,
        (Value::Str(x), Value::Str(y)) => x == y,
        // Go compares slices only against nil: a nil slice equals only a nil slice.
        (Value::List(x), Value::List(y)) if x.is_nil_slice() || y.is_nil_slice() => {
            x.is_nil_slice() == y.is_nil_slice()
        }
        // A struct compares by value, a pointer by identity.
        (Value::Time(x), Value::Time(y)) => x.identical(y),
        (Value::Version(x), Value::Version(y)) if x.by_value && y.by_value => x == y,
        // Two structs of different types: Go's `==` on their interfaces is false.
        (Value::Time(_), Value::Version(v)) | (Value::Version(v), Value::Time(_)) if v.by_value => {
            false
        }
        (Value::Version(x), Value::Version(y)) if x.by_value != y.by_value => {
            return Err(BAD_COMPARISON.into());
        }
        (Value::Version(x), Value::Version(y)) => std::rc::Rc::ptr_eq(x, y),
        _ => {
            let same_kind = std::mem::discriminant(&a) == std::mem::discriminant(&b);
            if !same_kind && !a.is_nil() && !b.is_nil() {
                let p = |v: &Value| sprint(std::slice::from_ref(v));
                return Err(format!(
                    "non-comparable types {}: {}, {}: {}",
                    p(&a),
                    a.type_name(),
                    b.type_name(),
                    p(&b)
                ));
            }
            if a.is_nil() || b.is_nil() {
                a.is_nil() == b.is_nil()
            } else {
                return Err(format!(
                    "non-comparable type {}: {}",
                    sprint(std::slice::from_ref(&b)),
                    b.type_name()
                ));
            }
        }
    })
}

fn eq(a: &[Value]) -> Result<Value, String> {
    if a.len() < 2 {
        return Err("missing argument for comparison".into());
    }
    for b in &a[1..] {
        if eq_one(&a[0], b)? {
            return Ok(Value::Bool(true));
        }
    }
    Ok(Value::Bool(false))
}

fn lt(a: &Value, b: &Value) -> Result<bool, String> {
    let (a, b) = (a.clone().collapse_null(), b.clone().collapse_null());
    let (k1, k2) = (basic_kind(&a), basic_kind(&b));
    if k1 == BasicKind::Invalid || k2 == BasicKind::Invalid {
        return Err(BAD_COMPARISON_TYPE.into());
    }
    if k1 != k2 {
        return Err(BAD_COMPARISON.into());
    }
    match (&a, &b) {
        (Value::Int(x) | Value::Int64(x), Value::Int(y) | Value::Int64(y)) => Ok(x < y),
        (Value::Float(x), Value::Float(y)) => Ok(x < y),
        (Value::Str(x), Value::Str(y)) => Ok(x < y),
        _ => Err(BAD_COMPARISON_TYPE.into()),
    }
}

fn le(a: &Value, b: &Value) -> Result<bool, String> {
    if lt(a, b)? {
        return Ok(true);
    }
    eq_one(a, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers_like_go() {
        assert_eq!(trim_zero_decimal("1.00"), "1");
        assert_eq!(trim_zero_decimal("1.50"), "1.50");
        assert_eq!(to_int64(&Value::str("0x10")), 16);
        assert_eq!(to_int64(&Value::str("2.0")), 2);
        assert_eq!(to_int64(&Value::str("x")), 0);
        assert_eq!(to_int64(&Value::Float(2.9)), 2);
        assert_eq!(go_split("a,b,,c", ","), vec!["a", "b", "", "c"]);
        assert_eq!(go_split("", ","), vec![""]);
        assert_eq!(go_split("ab", ""), vec!["a", "b"]);
        assert_eq!(b64dec("aGk="), "hi");
        assert_eq!(b64dec("a!k="), "illegal base64 data at input byte 1");
        assert_eq!(js_escape("a'b<c>\n"), "a\\'b\\u003Cc\\u003E\\u000A");
        assert_eq!(
            html_escape("<a href=\"x\">&'"),
            "&lt;a href=&#34;x&#34;&gt;&amp;&#39;"
        );
        assert!(lookup("printf").is_some());
        assert!(lookup("nope").is_none());
    }
}
