//! The rest of sprig v3's `TxtFuncMap` (the first functions are in `funcs.rs`): strings, paths,
//! lists, dicts, numbers, reflection, hashes. Each follows sprig's source (v3.3.0) and the Go
//! library functions it calls, checked against Go by `tests/template_judge.rs`.

use std::collections::BTreeMap;
use std::rc::Rc;

use super::fmt::{go_quote, sprint};
use super::funcs::{
    Func, NIL_DEREF, Param, deep_equal, empty, kind_name, list_items, s, strslice, strval,
    to_float64, to_int64,
};
use super::gotime::{GoTime, Loc, load_location, parse_local};
use super::json::{to_json, to_pretty_json, to_raw_json};
use super::semver::{Version as SemVersion, semver_compare};
use super::value::{MAX_STRING, Value, charge};

use Param::{Any, Float, Int, Map, Str, Time};

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

pub(crate) static MORE: &[Func] = funcs![
    "hello"() => |_| Ok(Value::str("Hello!")),
    // strings
    "abbrev"(Int, Str) => |a| {
        let w = int(&a[0]);
        Ok(Value::Str(if w < 4 { s(&a[1]).to_owned() } else { lossy(&abbreviate_full(s(&a[1]).as_bytes(), 0, w)) }))
    },
    "abbrevboth"(Int, Int, Str) => |a| {
        let (l, r) = (int(&a[0]), int(&a[1]));
        if r < 4 || l > 0 && r < 7 {
            return Ok(a[2].clone());
        }
        Ok(Value::Str(lossy(&abbreviate_full(s(&a[2]).as_bytes(), l, r))))
    },
    "trunc"(Int, Str) => |a| {
        let (c, b) = (int(&a[0]), s(&a[1]).as_bytes());
        let n = b.len() as i64;
        Ok(Value::Str(if c < 0 && n + c > 0 {
            lossy(&b[(n + c) as usize..])
        } else if c >= 0 && n > c {
            lossy(&b[..c as usize])
        } else {
            s(&a[1]).to_owned()
        }))
    },
    "substr"(Int, Int, Str) => |a| {
        let (start, end, b) = (int(&a[0]), int(&a[1]), s(&a[2]).as_bytes());
        let n = b.len() as i64;
        let range = if start < 0 {
            (0, end)
        } else if end < 0 || end > n {
            (start, n)
        } else {
            (start, end)
        };
        if range.0 < 0 || range.1 < range.0 || range.1 > n {
            return Err(format!("runtime error: slice bounds out of range [{}:{}]", range.0, range.1));
        }
        Ok(Value::Str(lossy(&b[range.0 as usize..range.1 as usize])))
    },
    "nospace"(Str) => |a| {
        Ok(Value::Str(latin1_filter(s(&a[0]), |c| !go_is_space(c))))
    },
    "title"(Str) => |a| Ok(Value::Str(title(s(&a[0])))),
    "untitle"(Str) => |a| {
        let mut next = true;
        Ok(Value::Str(s(&a[0]).chars().map(|c| {
            if go_is_space(c) {
                next = true;
                c
            } else if next {
                next = false;
                to_lower(c)
            } else {
                c
            }
        }).collect()))
    },
    "swapcase"(Str) => |a| {
        let mut ws = true;
        Ok(Value::Str(s(&a[0]).chars().map(|c| {
            if c.is_uppercase() {
                ws = false;
                to_lower(c)
            } else if c.is_lowercase() {
                let was = ws;
                ws = false;
                if was { to_title(c) } else { to_upper(c) }
            } else {
                ws = go_is_space(c);
                c
            }
        }).collect()))
    },
    "initials"(Str) => |a| {
        let mut out = String::new();
        let mut gap = true;
        for &b in s(&a[0]).as_bytes() {
            let c = char::from(b);
            if go_is_space(c) {
                gap = true;
            } else if gap {
                out.push(c);
                gap = false;
            }
        }
        Ok(Value::Str(out))
    },
    "wrap"(Int, Str) => |a| Ok(Value::Str(lossy(&wrap_custom(s(&a[1]).as_bytes(), int(&a[0]), b"\n", false)))),
    "wrapWith"(Int, Str, Str) => |a| {
        let sep = if s(&a[1]).is_empty() { "\n" } else { s(&a[1]) };
        Ok(Value::Str(lossy(&wrap_custom(s(&a[2]).as_bytes(), int(&a[0]), sep.as_bytes(), true))))
    },
    "plural"(Str, Str, Int) => |a| Ok(if int(&a[2]) == 1 { a[0].clone() } else { a[1].clone() }),
    "trimall"(Str, Str) => |a| {
        let cut = s(&a[0]);
        Ok(Value::str(s(&a[1]).trim_matches(|c| cut.contains(c))))
    },
    "b32enc"(Str) => |a| Ok(Value::Str(b32enc(s(&a[0]).as_bytes()))),
    "b32dec"(Str) => |a| Ok(Value::Str(b32dec(s(&a[0])))),
    "splitn"(Str, Int, Str) => |a| {
        let parts = go_splitn(s(&a[2]), s(&a[0]), int(&a[1]));
        Ok(Value::map(parts.into_iter().enumerate().map(|(i, p)| (format!("_{i}"), Value::Str(p))).collect()))
    },
    // A nil `[]string` comes back as it is (a nil `[]interface {}` as an empty list).
    "toStrings"(Any) => |a| Ok(match &a[0] {
        Value::List(l) if l.is_nil_strings() => a[0].clone(),
        v => Value::list(strslice(v).into_iter().map(Value::Str).collect()),
    }),
    "sortAlpha"(Any) => |a| {
        if let Value::List(l) = &a[0]
            && l.is_nil_strings()
        {
            return Ok(a[0].clone());
        }
        let mut items = match &a[0] {
            Value::List(_) => strslice(&a[0]),
            Value::Missing | Value::Null => vec!["<nil>".to_owned()],
            other => vec![strval(other)],
        };
        items.sort();
        Ok(Value::list(items.into_iter().map(Value::Str).collect()))
    },
    "atoi"(Str) => |a| Ok(Value::Int(s(&a[0]).parse::<i64>().unwrap_or(0))),
    "int64"(Any) => |a| Ok(Value::Int64(to_int64(&a[0]))),
    "float64"(Any) => |a| Ok(Value::Float(to_float64(&a[0]))),
    "toDecimal"(Any) => |a| {
        let text = sprint(std::slice::from_ref(&a[0]));
        Ok(Value::Int64(parse_go_base(&text, 8).unwrap_or(0)))
    },
    "seq"(; ...Int) => seq,
    "until"(Int) => |a| {
        let n = int(&a[0]);
        until_step(0, n, if n < 0 { -1 } else { 1 })
    },
    "untilStep"(Int, Int, Int) => |a| until_step(int(&a[0]), int(&a[1]), int(&a[2])),
    "fail"(Str) => |a| Err(s(&a[0]).to_owned()),
    // paths (slash-separated; on Linux `osBase` and friends are the same functions)
    "base"(Str) => |a| Ok(Value::Str(path_base(s(&a[0])))),
    "dir"(Str) => |a| Ok(Value::Str(path_dir(s(&a[0])))),
    "clean"(Str) => |a| Ok(Value::Str(path_clean(s(&a[0])))),
    "ext"(Str) => |a| Ok(Value::str(path_ext(s(&a[0])))),
    "isAbs"(Str) => |a| Ok(Value::Bool(s(&a[0]).starts_with('/'))),
    "osBase"(Str) => |a| Ok(Value::Str(path_base(s(&a[0])))),
    "osDir"(Str) => |a| Ok(Value::Str(path_dir(s(&a[0])))),
    "osClean"(Str) => |a| Ok(Value::Str(path_clean(s(&a[0])))),
    "osExt"(Str) => |a| Ok(Value::str(path_ext(s(&a[0])))),
    "osIsAbs"(Str) => |a| Ok(Value::Bool(s(&a[0]).starts_with('/'))),
    // lists
    "push"(Any, Any) => |a| {
        let mut items = list_items(&a[0], "Cannot push on type")?;
        items.push(a[1].clone());
        Ok(Value::list(items))
    },
    "tuple"(; ...Any) => |a| Ok(Value::list(a.to_vec())),
    "reverse"(Any) => |a| {
        let mut items = list_items(&a[0], "Cannot find reverse on type")?;
        items.reverse();
        Ok(Value::list(items))
    },
    "compact"(Any) => |a| {
        let items = list_items(&a[0], "Cannot compact on type")?;
        Ok(Value::list(items.into_iter().filter(|v| !empty(v)).collect()))
    },
    "uniq"(Any) => |a| {
        let items = list_items(&a[0], "Cannot find uniq on type")?;
        let mut out: Vec<Value> = Vec::new();
        for v in items {
            if !out.iter().any(|o| deep_equal(o, &v, 0)) {
                out.push(v);
            }
        }
        Ok(Value::list(out))
    },
    "without"(Any; ...Any) => |a| {
        let items = list_items(&a[0], "Cannot find without on type")?;
        let omit = &a[1..];
        Ok(Value::list(items.into_iter().filter(|v| !omit.iter().any(|o| deep_equal(o, v, 0))).collect()))
    },
    "concat"(; ...Any) => |a| {
        let mut out = Vec::new();
        for l in a {
            match l {
                Value::List(items) => {
                    charge(items.len() as u64);
                    out.extend(items.iter().cloned());
                }
                Value::Missing | Value::Null => return Err(NIL_DEREF.into()),
                other => return Err(format!("Cannot concat type {} as list", kind_name(other))),
            }
        }
        Ok(if a.is_empty() { Value::nil_list() } else { Value::list(out) })
    },
    "chunk"(Int, Any) => chunk,
    // dicts
    "unset"(Map, Str) => |a| {
        match &a[0] {
            Value::Map(m) => {
                m.borrow_mut().remove(s(&a[1]));
                Ok(a[0].clone())
            }
            // Go's nil map: deleting from it is a no-op, and it prints as `map[]`.
            _ => Ok(Value::map(BTreeMap::new())),
        }
    },
    "pluck"(Str; ...Map) => |a| {
        let key = s(&a[0]);
        Ok(Value::list(a[1..].iter().filter_map(|d| match d {
            Value::Map(m) => m.borrow().get(key).cloned(),
            _ => None,
        }).collect()))
    },
    "pick"(Map; ...Str) => |a| {
        let mut out = BTreeMap::new();
        if let Value::Map(m) = &a[0] {
            let m = m.borrow();
            for k in &a[1..] {
                if let Some(v) = m.get(s(k)) {
                    out.insert(s(k).to_owned(), v.clone());
                }
            }
        }
        Ok(Value::map(out))
    },
    "omit"(Map; ...Str) => |a| {
        let mut out = BTreeMap::new();
        if let Value::Map(m) = &a[0] {
            for (k, v) in m.borrow().iter() {
                if !a[1..].iter().any(|o| s(o) == k) {
                    out.insert(k.clone(), v.clone());
                }
            }
        }
        Ok(Value::map(out))
    },
    "values"(Map) => |a| Ok(Value::list(match &a[0] {
        Value::Map(m) => m.borrow().values().cloned().collect(),
        _ => Vec::new(),
    })),
    "deepCopy"(Any) => |a| deep_copy(&a[0]),
    "mustDeepCopy"(Any) => |a| deep_copy(&a[0]),
    "dig"(; ...Any) => dig,
    // defaults, JSON
    "all"(; ...Any) => |a| Ok(Value::Bool(a.iter().all(|v| !empty(v)))),
    "any"(; ...Any) => |a| Ok(Value::Bool(a.iter().any(|v| !empty(v)))),
    "toRawJson"(Any) => |a| to_raw_json(&a[0]).map(Value::Str).ok_or_else(|| json_error(&a[0])),
    "mustToRawJson"(Any) => |a| to_raw_json(&a[0]).map(Value::Str).ok_or_else(|| json_error(&a[0])),
    "mustToJson"(Any) => |a| to_json(&a[0]).map(Value::Str).ok_or_else(|| json_error(&a[0])),
    "mustToPrettyJson"(Any) => |a| to_pretty_json(&a[0]).map(Value::Str).ok_or_else(|| json_error(&a[0])),
    "mustFromJson"(Str) => |a| serde_json::from_str::<serde_json::Value>(s(&a[0]))
        .map(|j| Value::from_json_floats(&j))
        .map_err(|e| format!("invalid JSON: {e}")),
    // reflection
    "typeOf"(Any) => |a| Ok(Value::str(go_type(&a[0]))),
    "typeIs"(Str, Any) => |a| Ok(Value::Bool(s(&a[0]) == go_type(&a[1]))),
    "typeIsLike"(Str, Any) => |a| {
        let t = go_type(&a[1]);
        Ok(Value::Bool(s(&a[0]) == t || format!("*{}", s(&a[0])) == t))
    },
    "kindOf"(Any) => |a| Ok(Value::str(kind_name(&a[0]))),
    "kindIs"(Str, Any) => |a| Ok(Value::Bool(s(&a[0]) == kind_name(&a[1]))),
    "deepEqual"(Any, Any) => |a| Ok(Value::Bool(deep_equal(&a[0], &a[1], 0))),
    // numbers
    "max"(Any; ...Any) => |a| Ok(Value::Int64(a.iter().map(to_int64).fold(to_int64(&a[0]), i64::max))),
    "biggest"(Any; ...Any) => |a| Ok(Value::Int64(a.iter().map(to_int64).fold(to_int64(&a[0]), i64::max))),
    "min"(Any; ...Any) => |a| Ok(Value::Int64(a.iter().map(to_int64).fold(to_int64(&a[0]), i64::min))),
    "maxf"(Any; ...Any) => |a| Ok(Value::Float(a[1..].iter().map(to_float64).fold(to_float64(&a[0]), go_max))),
    "minf"(Any; ...Any) => |a| Ok(Value::Float(a[1..].iter().map(to_float64).fold(to_float64(&a[0]), go_min))),
    "floor"(Any) => |a| Ok(Value::Float(to_float64(&a[0]).floor())),
    "ceil"(Any) => |a| Ok(Value::Float(to_float64(&a[0]).ceil())),
    // hashes
    "sha256sum"(Str) => |a| Ok(Value::Str(hex(ring::digest::digest(&ring::digest::SHA256, s(&a[0]).as_bytes()).as_ref()))),
    "sha512sum"(Str) => |a| Ok(Value::Str(hex(ring::digest::digest(&ring::digest::SHA512, s(&a[0]).as_bytes()).as_ref()))),
    "sha1sum"(Str) => |a| Ok(Value::Str(hex(ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, s(&a[0]).as_bytes()).as_ref()))),
    "adler32sum"(Str) => |a| Ok(Value::Str(adler32(s(&a[0]).as_bytes()).to_string())),
];

/// The aliases sprig registers for the same function (the `must…` forms fail where the plain
/// ones panic; both are execution errors here).
pub(crate) const ALIASES: &[(&str, &str)] = &[
    ("mustRegexFind", "regexFind"),
    ("mustRegexFindAll", "regexFindAll"),
    ("mustRegexReplaceAll", "regexReplaceAll"),
    ("mustRegexReplaceAllLiteral", "regexReplaceAllLiteral"),
    ("mustRegexSplit", "regexSplit"),
    ("mustPush", "push"),
    ("mustAppend", "append"),
    ("mustPrepend", "prepend"),
    ("mustFirst", "first"),
    ("mustLast", "last"),
    ("mustRest", "rest"),
    ("mustInitial", "initial"),
    ("mustReverse", "reverse"),
    ("mustCompact", "compact"),
    ("mustUniq", "uniq"),
    ("mustWithout", "without"),
    ("mustHas", "has"),
    ("mustChunk", "chunk"),
    ("mustSlice", "slice"),
    ("date_in_zone", "dateInZone"),
    ("date_modify", "dateModify"),
    ("must_date_modify", "mustDateModify"),
];

fn int(v: &Value) -> i64 {
    match v {
        Value::Int(i) | Value::Int64(i) => *i,
        _ => 0,
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Go's `unicode.IsSpace`.
pub(crate) fn go_is_space(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n' | '\u{b}' | '\u{c}' | '\r' | ' ' | '\u{85}' | '\u{a0}'
    ) || (c > '\u{ff}' && c.is_whitespace())
}

fn to_lower(c: char) -> char {
    let mut it = c.to_lowercase();
    match (it.next(), it.next()) {
        (Some(l), None) => l,
        _ => c,
    }
}

fn to_upper(c: char) -> char {
    let mut it = c.to_uppercase();
    match (it.next(), it.next()) {
        (Some(u), None) => u,
        _ => c,
    }
}

fn to_title(c: char) -> char {
    // Title case differs from upper case only for a few digraphs (ǆ → ǅ).
    match c {
        'ǆ' | 'ǅ' | 'Ǆ' => 'ǅ',
        'ǉ' | 'ǈ' | 'Ǉ' => 'ǈ',
        'ǌ' | 'ǋ' | 'Ǌ' => 'ǋ',
        'ǳ' | 'ǲ' | 'Ǳ' => 'ǲ',
        c => to_upper(c),
    }
}

/// goutils' byte loops: each byte taken as a rune (Latin-1), kept when `keep` says so.
fn latin1_filter(s: &str, keep: impl Fn(char) -> bool) -> String {
    let bytes = s.as_bytes();
    let kept: Vec<char> = bytes
        .iter()
        .map(|&b| char::from(b))
        .filter(|&c| keep(c))
        .collect();
    if kept.len() == bytes.len() {
        return s.to_owned();
    }
    kept.into_iter().collect()
}

/// Go's `strings.Title`.
fn title(s: &str) -> String {
    let is_sep = |c: char| {
        if c.is_ascii() {
            !(c.is_ascii_alphanumeric() || c == '_')
        } else if c.is_alphabetic() || c.is_numeric() {
            false
        } else {
            go_is_space(c)
        }
    };
    let mut prev = ' ';
    s.chars()
        .map(|c| {
            let out = if is_sep(prev) { to_title(c) } else { c };
            prev = c;
            out
        })
        .collect()
}

/// goutils' `AbbreviateFull` (byte offsets, as Go slices strings).
fn abbreviate_full(b: &[u8], offset: i64, max: i64) -> Vec<u8> {
    let n = b.len() as i64;
    if b.is_empty() {
        return Vec::new();
    }
    if max < 4 {
        return Vec::new();
    }
    if n <= max {
        return b.to_vec();
    }
    let mut offset = offset.min(n);
    if n - offset < max - 3 {
        offset = n - (max - 3);
    }
    let mut out = b"...".to_vec();
    if offset <= 4 {
        let mut head = b[..(max - 3) as usize].to_vec();
        head.extend_from_slice(b"...");
        return head;
    }
    if max < 7 {
        return Vec::new();
    }
    if offset + max - 3 < n {
        out.extend(abbreviate_full(&b[offset as usize..], 0, max - 3));
        return out;
    }
    out.extend_from_slice(&b[(n - (max - 3)) as usize..]);
    out
}

/// goutils' `WrapCustom`.
fn wrap_custom(b: &[u8], len: i64, nl: &[u8], long_words: bool) -> Vec<u8> {
    if b.is_empty() {
        return Vec::new();
    }
    let len = usize::try_from(len.max(1)).unwrap_or(usize::MAX);
    let n = b.len();
    let mut offset = 0;
    let mut out = Vec::new();
    while n - offset > len {
        if b[offset] == b' ' {
            offset += 1;
            continue;
        }
        let end = (len + offset + 1).min(n);
        let space = b[offset..end].iter().rposition(|&c| c == b' ');
        if let Some(sp) = space {
            out.extend_from_slice(&b[offset..offset + sp]);
            out.extend_from_slice(nl);
            offset += sp + 1;
        } else if long_words {
            out.extend_from_slice(&b[offset..offset + len]);
            out.extend_from_slice(nl);
            offset += len;
        } else {
            let end = len + offset;
            match b[end..].iter().position(|&c| c == b' ') {
                None => {
                    out.extend_from_slice(&b[offset..]);
                    offset = n;
                }
                Some(i) => {
                    out.extend_from_slice(&b[offset..end + i]);
                    out.extend_from_slice(nl);
                    offset = end + i + 1;
                }
            }
        }
    }
    out.extend_from_slice(&b[offset.min(n)..]);
    out
}

const B32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// Go's `base32.StdEncoding.EncodeToString`.
fn b32enc(b: &[u8]) -> String {
    let mut out = String::new();
    for chunk in b.chunks(5) {
        let mut buf = [0u8; 5];
        buf[..chunk.len()].copy_from_slice(chunk);
        let bits = buf.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x));
        let chars = match chunk.len() {
            1 => 2,
            2 => 4,
            3 => 5,
            4 => 7,
            _ => 8,
        };
        for i in 0..8 {
            if i < chars {
                out.push(char::from(B32[((bits >> (35 - 5 * i)) & 31) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Go's `base32.StdEncoding.DecodeString`; on error sprig returns the error's text.
fn b32dec(s: &str) -> String {
    let src: Vec<u8> = s.bytes().filter(|c| *c != b'\r' && *c != b'\n').collect();
    match b32decode(&src) {
        Ok(bytes) => lossy(&bytes),
        Err(at) => format!("illegal base32 data at input byte {at}"),
    }
}

fn b32decode(all: &[u8]) -> Result<Vec<u8>, usize> {
    let olen = all.len();
    let mut src = all;
    let mut out = Vec::new();
    let mut end = false;
    while !src.is_empty() && !end {
        let mut dbuf = [0u8; 8];
        let mut dlen = 8;
        let mut j = 0;
        while j < 8 {
            let Some((&c, rest)) = src.split_first() else {
                return Err(olen - j);
            };
            src = rest;
            if c == b'=' && j >= 2 && src.len() < 8 {
                if src.len() + j < 7 {
                    return Err(olen);
                }
                for k in 0..7 - j {
                    if src.len() > k && src[k] != b'=' {
                        return Err(olen - src.len() + k - 1);
                    }
                }
                dlen = j;
                end = true;
                if matches!(dlen, 1 | 3 | 6) {
                    return Err(olen - src.len() - 1);
                }
                break;
            }
            let Some(v) = B32.iter().position(|&x| x == c) else {
                return Err(olen - src.len() - 1);
            };
            dbuf[j] = v as u8;
            j += 1;
        }
        let d = dbuf;
        let bytes = [
            d[0] << 3 | d[1] >> 2,
            d[1] << 6 | d[2] << 1 | d[3] >> 4,
            d[3] << 4 | d[4] >> 1,
            d[4] << 7 | d[5] << 2 | d[6] >> 3,
            d[6] << 5 | d[7],
        ];
        let n = match dlen {
            8 => 5,
            7 => 4,
            5 => 3,
            4 => 2,
            2 => 1,
            _ => 0,
        };
        out.extend_from_slice(&bytes[..n]);
    }
    Ok(out)
}

/// Go's `strings.SplitN`.
fn go_splitn(s: &str, sep: &str, n: i64) -> Vec<String> {
    if n == 0 {
        return Vec::new();
    }
    if n < 0 {
        if sep.is_empty() {
            return s.chars().map(String::from).collect();
        }
        return s.split(sep).map(str::to_owned).collect();
    }
    let n = usize::try_from(n).unwrap_or(usize::MAX);
    if sep.is_empty() {
        let chars: Vec<char> = s.chars().collect();
        if chars.len() <= n {
            return chars.into_iter().map(String::from).collect();
        }
        let mut out: Vec<String> = chars[..n - 1].iter().map(|c| c.to_string()).collect();
        out.push(chars[n - 1..].iter().collect());
        return out;
    }
    s.splitn(n, sep).map(str::to_owned).collect()
}

/// `strconv.ParseInt(s, base, 64)` for bases up to 10.
fn parse_go_base(s: &str, base: u32) -> Option<i64> {
    let (neg, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() {
        return None;
    }
    let mut v: i128 = 0;
    for c in digits.chars() {
        v = v * i128::from(base) + i128::from(c.to_digit(base)?);
        if v > i128::from(i64::MAX) + 1 {
            return None;
        }
    }
    let v = if neg { -v } else { v };
    i64::try_from(v).ok()
}

fn until_step(start: i64, stop: i64, step: i64) -> Result<Value, String> {
    let mut out = Vec::new();
    let mut i = start;
    let push = |out: &mut Vec<Value>, i: i64| -> Result<(), String> {
        if out.len() >= MAX_STRING / 8 || !charge(1) {
            return Err("list too long".into());
        }
        out.push(Value::Int(i));
        Ok(())
    };
    if stop < start {
        if step >= 0 {
            return Ok(Value::list(out));
        }
        while i > stop {
            push(&mut out, i)?;
            i = i.wrapping_add(step);
        }
    } else {
        if step <= 0 {
            return Ok(Value::list(out));
        }
        while i < stop {
            push(&mut out, i)?;
            i = match i.checked_add(step) {
                Some(n) => n,
                None => break,
            };
        }
    }
    Ok(Value::list(out))
}

fn seq(a: &[Value]) -> Result<Value, String> {
    let p: Vec<i64> = a.iter().map(int).collect();
    let (start, end, step) = match p.as_slice() {
        [end] => (1, *end, if *end < 1 { -1 } else { 1 }),
        [start, end] => (*start, *end, if end < start { -1 } else { 1 }),
        [start, step, end] => {
            if end < start && *step > 0 {
                return Ok(Value::str(""));
            }
            let inc = if end < start { -1 } else { 1 };
            return seq_string(*start, end + inc, *step);
        }
        _ => return Ok(Value::str("")),
    };
    seq_string(start, end + step, step)
}

fn seq_string(start: i64, stop: i64, step: i64) -> Result<Value, String> {
    let Value::List(l) = until_step(start, stop, step)? else {
        return Ok(Value::str(""));
    };
    let parts: Vec<String> = l.iter().map(|v| int(v).to_string()).collect();
    Ok(Value::Str(parts.join(" ")))
}

fn chunk(a: &[Value]) -> Result<Value, String> {
    let size = int(&a[0]);
    let items = list_items(&a[1], "Cannot chunk type")?;
    let l = items.len() as i64;
    // Go computes the count in floating point: `floor((l-1)/size) + 1`.
    let count = ((l - 1) as f64 / size as f64).floor() + 1.0;
    if size == 0 || !(0.0..=(l + 1) as f64).contains(&count) {
        return Err("runtime error: makeslice: len out of range".into());
    }
    let count = count as i64;
    let mut out = Vec::new();
    for i in 0..count {
        let mut clen = size;
        if i == count - 1 {
            clen = l % size;
            if clen == 0 {
                clen = size;
            }
        }
        if clen < 0 {
            return Err("runtime error: makeslice: len out of range".into());
        }
        let from = (i * size) as usize;
        let to = from + clen as usize;
        if to > items.len() {
            return Err("runtime error: index out of range".into());
        }
        out.push(Value::list(items[from..to].to_vec()));
    }
    Ok(Value::list(out))
}

fn deep_copy(v: &Value) -> Result<Value, String> {
    match v {
        Value::Missing | Value::Null => {
            Err("reflect: call of reflect.Value.Type on zero Value".into())
        }
        v => Ok(v.copystructure()),
    }
}

/// sprig's `dig`: keys…, a default, a dict.
fn dig(a: &[Value]) -> Result<Value, String> {
    if a.len() < 3 {
        return Err(format!("reflect: Call with too few input arguments{}", ""));
    }
    let Value::Map(m) = &a[a.len() - 1] else {
        return Err(format!(
            "interface conversion: interface {{}} is {}, not map[string]interface {{}}",
            go_type(&a[a.len() - 1])
        ));
    };
    let default = &a[a.len() - 2];
    let keys = &a[..a.len() - 2];
    let mut cur = Value::Map(m.clone());
    for (i, k) in keys.iter().enumerate() {
        let Value::Str(k) = k else {
            return Err(format!(
                "interface conversion: interface {{}} is {}, not string",
                go_type(k)
            ));
        };
        let next = match &cur {
            Value::Map(m) => m.borrow().get(k).cloned(),
            other => {
                return Err(format!(
                    "interface conversion: interface {{}} is {}, not map[string]interface {{}}",
                    go_type(other)
                ));
            }
        };
        match next {
            None => return Ok(default.clone()),
            Some(v) if i == keys.len() - 1 => return Ok(v),
            Some(v) => cur = v,
        }
    }
    Ok(default.clone())
}

fn json_error(v: &Value) -> String {
    format!(
        "json: unsupported value: {}",
        sprint(std::slice::from_ref(v))
    )
}

/// `%T` of a value.
pub(crate) fn go_type(v: &Value) -> &'static str {
    v.type_name()
}

/// Go's `math.Max` / `math.Min` (NaN wins; -0 < +0).
fn go_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else if a == 0.0 && b == 0.0 {
        if a.is_sign_negative() { b } else { a }
    } else {
        a.max(b)
    }
}

fn go_min(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else if a == 0.0 && b == 0.0 {
        if a.is_sign_negative() { a } else { b }
    } else {
        a.min(b)
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn adler32(b: &[u8]) -> u32 {
    const MOD: u32 = 65521;
    let (mut a, mut s) = (1u32, 0u32);
    for &x in b {
        a = (a + u32::from(x)) % MOD;
        s = (s + a) % MOD;
    }
    (s << 16) | a
}

/// Go's `path.Clean`.
pub(crate) fn path_clean(p: &str) -> String {
    if p.is_empty() {
        return ".".into();
    }
    let rooted = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            s => parts.push(s),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

/// Go's `path.Base`.
fn path_base(p: &str) -> String {
    if p.is_empty() {
        return ".".into();
    }
    let t = p.trim_end_matches('/');
    if t.is_empty() {
        return "/".into();
    }
    t.rsplit('/').next().unwrap_or(t).to_owned()
}

/// Go's `path.Dir`.
fn path_dir(p: &str) -> String {
    let dir = match p.rfind('/') {
        Some(i) => &p[..=i],
        None => "",
    };
    path_clean(dir)
}

/// Go's `path.Ext`.
fn path_ext(p: &str) -> &str {
    for (i, c) in p.char_indices().rev() {
        match c {
            '/' => return "",
            '.' => return &p[i..],
            _ => {}
        }
    }
    ""
}

/// Go's `regexp.Compile`: RE2 syntax, whose Perl classes and word boundaries are ASCII-only
/// (the regex crate's are Unicode unless told otherwise).
pub(crate) fn go_regex(pattern: &str) -> Result<regex::Regex, String> {
    let mut out = String::with_capacity(pattern.len() + 16);
    let mut chars = pattern.chars().peekable();
    let mut in_class = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let Some(n) = chars.next() else {
                    out.push('\\');
                    break;
                };
                match (in_class, n) {
                    (_, 'Q') if !in_class => {
                        // `\Q…\E`: literal text.
                        let mut lit = String::new();
                        while let Some(c) = chars.next() {
                            if c == '\\' && chars.peek() == Some(&'E') {
                                chars.next();
                                break;
                            }
                            lit.push(c);
                        }
                        out.push_str(&regex::escape(&lit));
                    }
                    // Escaped punctuation is itself in RE2 (`\<` is a word boundary to the regex
                    // crate).
                    (_, '<' | '>') => out.push(n),
                    (_, c) if c.is_ascii_alphabetic() && !"aftnrvxpPdDsSwWbBAz".contains(c) => {
                        return Err(format!(
                            "error parsing regexp: invalid escape sequence: `\\{c}`"
                        ));
                    }
                    (false, 'd' | 'D' | 'w' | 'W' | 's' | 'S' | 'b' | 'B') => {
                        out.push_str("(?-u:\\");
                        out.push(n);
                        out.push(')');
                    }
                    (true, 'd') => out.push_str("0-9"),
                    (true, 'w') => out.push_str("0-9A-Za-z_"),
                    (true, 's') => out.push_str("\\t\\n\\x0C\\r "),
                    _ => {
                        out.push('\\');
                        out.push(n);
                    }
                }
            }
            // RE2 reads a `{` that does not start a repetition `{n}`, `{n,}`, `{n,m}` as itself.
            '{' if !in_class && !starts_repetition(chars.clone()) => out.push_str("\\{"),
            '[' if !in_class => {
                in_class = true;
                out.push('[');
                if chars.peek() == Some(&'^') {
                    out.push('^');
                    chars.next();
                }
                if chars.peek() == Some(&']') {
                    out.push_str("\\]");
                    chars.next();
                }
            }
            '[' if in_class && chars.peek() == Some(&':') => {
                // A POSIX class `[:alpha:]` inside a bracket expression.
                out.push('[');
                for d in chars.by_ref() {
                    out.push(d);
                    if d == ']' {
                        break;
                    }
                }
            }
            '[' => out.push_str("\\["),
            ']' if in_class => {
                in_class = false;
                out.push(']');
            }
            c => out.push(c),
        }
    }
    regex::RegexBuilder::new(&out)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| {
            format!(
                "error parsing regexp: {}",
                e.to_string().lines().last().unwrap_or("")
            )
        })
}

fn starts_repetition(mut rest: impl Iterator<Item = char>) -> bool {
    let mut digits = 0;
    let mut comma = false;
    for c in rest.by_ref() {
        match c {
            '0'..='9' => digits += 1,
            ',' if !comma && digits > 0 => comma = true,
            '}' => return digits > 0,
            _ => return false,
        }
    }
    false
}

/// Go's `allMatches`: at most `n` matches (all when `n < 0`), empty matches right after a match
/// skipped.
fn go_find_all(re: &regex::Regex, s: &str, n: i64) -> Vec<(usize, usize)> {
    let limit = if n < 0 {
        usize::MAX
    } else {
        usize::try_from(n).unwrap_or(usize::MAX)
    };
    let mut out = Vec::new();
    let (mut pos, mut prev_end) = (0usize, None);
    while out.len() < limit && pos <= s.len() {
        let Some(m) = re.find_at(s, pos) else { break };
        let mut accept = true;
        if m.end() == pos {
            if Some(m.start()) == prev_end {
                accept = false;
            }
            pos += s[pos..].chars().next().map_or(1, char::len_utf8);
        } else {
            pos = m.end();
        }
        prev_end = Some(m.end());
        if accept {
            out.push((m.start(), m.end()));
        }
    }
    out
}

fn go_replace_all(re: &regex::Regex, s: &str, repl: &str, literal: bool) -> String {
    let mut out = String::new();
    let (mut last, mut search) = (0usize, 0usize);
    while search <= s.len() {
        let Some(caps) = re.captures_at(s, search) else {
            break;
        };
        let Some(m) = caps.get(0) else { break };
        out.push_str(&s[last..m.start()]);
        if m.end() > last || m.start() == 0 {
            if literal {
                out.push_str(repl);
            } else {
                caps.expand(repl, &mut out);
            }
        }
        last = m.end();
        let width = s[search..].chars().next().map_or(1, char::len_utf8);
        if search + width > m.end() {
            search += width;
        } else if search + 1 > m.end() {
            search += 1;
        } else {
            search = m.end();
        }
        if out.len() > MAX_STRING {
            break;
        }
    }
    out.push_str(&s[last.min(s.len())..]);
    out
}

fn go_regex_split(re: &regex::Regex, s: &str, n: i64) -> Vec<String> {
    if n == 0 {
        return Vec::new();
    }
    if !re.as_str().is_empty() && s.is_empty() {
        return vec![String::new()];
    }
    let matches = go_find_all(re, s, n);
    let mut out = Vec::new();
    let (mut beg, mut end) = (0, 0);
    for (a, b) in matches {
        if n > 0 && out.len() as i64 == n - 1 {
            break;
        }
        end = a;
        if b != 0 {
            out.push(s[beg..end].to_owned());
        }
        beg = b;
    }
    if end != s.len() {
        out.push(s[beg..].to_owned());
    }
    out
}

/// Go's `regexp.QuoteMeta`.
fn quote_meta(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn strings_value(v: Vec<String>) -> Value {
    Value::list(v.into_iter().map(Value::Str).collect())
}

pub(crate) static REGEX: &[Func] = funcs![
    "regexMatch"(Str, Str) => |a| Ok(Value::Bool(go_regex(s(&a[0])).is_ok_and(|r| r.is_match(s(&a[1]))))),
    "mustRegexMatch"(Str, Str) => |a| Ok(Value::Bool(go_regex(s(&a[0]))?.is_match(s(&a[1])))),
    "regexFind"(Str, Str) => |a| {
        let r = go_regex(s(&a[0]))?;
        Ok(Value::str(r.find(s(&a[1])).map_or("", |m| m.as_str())))
    },
    "regexFindAll"(Str, Str, Int) => |a| {
        let (r, t) = (go_regex(s(&a[0]))?, s(&a[1]));
        let found = go_find_all(&r, t, int(&a[2]));
        if found.is_empty() {
            return Ok(Value::nil_strings());
        }
        Ok(strings_value(found.into_iter().map(|(x, y)| t[x..y].to_owned()).collect()))
    },
    "regexReplaceAll"(Str, Str, Str) => |a| Ok(Value::Str(go_replace_all(&go_regex(s(&a[0]))?, s(&a[1]), s(&a[2]), false))),
    "regexReplaceAllLiteral"(Str, Str, Str) => |a| Ok(Value::Str(go_replace_all(&go_regex(s(&a[0]))?, s(&a[1]), s(&a[2]), true))),
    "regexSplit"(Str, Str, Int) => |a| {
        let n = int(&a[2]);
        let parts = go_regex_split(&go_regex(s(&a[0]))?, s(&a[1]), n);
        if n == 0 {
            return Ok(Value::nil_strings());
        }
        Ok(strings_value(parts))
    },
    "regexQuoteMeta"(Str) => |a| Ok(Value::Str(quote_meta(s(&a[0])))),
];

/// Random bytes from the system's generator.
fn random_bytes(n: usize) -> Result<Vec<u8>, String> {
    use ring::rand::SecureRandom as _;
    let mut buf = vec![0u8; n];
    ring::rand::SystemRandom::new()
        .fill(&mut buf)
        .map_err(|_| "no random numbers".to_owned())?;
    Ok(buf)
}

/// A uniform index below `n` (rejection sampling).
fn random_below(n: u64) -> Result<u64, String> {
    let zone = u64::MAX - u64::MAX % n;
    loop {
        let b = random_bytes(8)?;
        let x = u64::from_le_bytes(b.try_into().map_err(|_| "no random numbers".to_owned())?);
        if x < zone {
            return Ok(x % n);
        }
    }
}

/// goutils' `CryptoRandom…`: `count` characters from `alphabet`; sprig turns errors into "".
fn random_string(count: &Value, alphabet: &[u8]) -> Result<Value, String> {
    let n = int(count);
    if n <= 0 {
        return Ok(Value::str(""));
    }
    let n = usize::try_from(n).unwrap_or(usize::MAX);
    if n > MAX_STRING || !charge(n as u64) {
        return Err("random string too long".into());
    }
    let mut out = String::with_capacity(n);
    for _ in 0..n {
        out.push(char::from(
            alphabet[random_below(alphabet.len() as u64)? as usize],
        ));
    }
    Ok(Value::Str(out))
}

const ALPHA: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
const ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
const DIGITS: &[u8] = b"0123456789";
const ASCII: &[u8] = b" !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~";

pub(crate) static RANDOM: &[Func] = funcs![
    "randAlpha"(Int) => |a| random_string(&a[0], ALPHA),
    "randAlphaNum"(Int) => |a| random_string(&a[0], ALNUM),
    "randNumeric"(Int) => |a| random_string(&a[0], DIGITS),
    "randAscii"(Int) => |a| random_string(&a[0], ASCII),
    "randBytes"(Int) => |a| {
        use base64::Engine as _;
        let n = usize::try_from(int(&a[0])).map_err(|_| "runtime error: makeslice: len out of range".to_owned())?;
        if n > MAX_STRING || !charge(n as u64) {
            return Err("too many random bytes".into());
        }
        Ok(Value::Str(base64::engine::general_purpose::STANDARD.encode(random_bytes(n)?)))
    },
    "randInt"(Int, Int) => |a| {
        let (lo, hi) = (int(&a[0]), int(&a[1]));
        let span = hi.checked_sub(lo).filter(|s| *s > 0).ok_or("invalid argument to Intn")?;
        Ok(Value::Int(lo + random_below(span as u64)? as i64))
    },
    "uuidv4"() => |_| {
        let mut b = random_bytes(16)?;
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        let h = hex(&b);
        Ok(Value::Str(format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])))
    },
    "shuffle"(Str) => |a| {
        let mut chars: Vec<char> = s(&a[0]).chars().collect();
        for i in (1..chars.len()).rev() {
            let j = random_below(i as u64 + 1)? as usize;
            chars.swap(i, j);
        }
        Ok(Value::Str(chars.into_iter().collect()))
    },
];

/// sprig functions that do not run here, with the reason (docs/rendered-files.md lists them).
pub(crate) const REFUSED: &[(&str, &str)] = &[
    (
        "env",
        "it would hand the driver's environment to whoever writes a ConnectorClass",
    ),
    (
        "expandenv",
        "it would hand the driver's environment to whoever writes a ConnectorClass",
    ),
    (
        "getHostByName",
        "a template must not make the driver resolve names on the network",
    ),
    ("genPrivateKey", KEYGEN),
    ("genCA", KEYGEN),
    ("genCAWithKey", KEYGEN),
    ("genSelfSignedCert", KEYGEN),
    ("genSelfSignedCertWithKey", KEYGEN),
    ("genSignedCert", KEYGEN),
    ("genSignedCertWithKey", KEYGEN),
    ("buildCustomCert", KEYGEN),
    ("encryptAES", AES),
    ("decryptAES", AES),
    ("bcrypt", HASHING),
    ("htpasswd", HASHING),
    ("derivePassword", HASHING),
];

const KEYGEN: &str = "generating keys and certificates while rendering a client configuration gives every \
                      render different key material and lets a class spend the driver's CPU (an RSA key takes \
                      seconds); mount real certificates instead";
const HASHING: &str = "password hashing belongs to servers, not to a client configuration, and each call would \
                       cost the driver about 100 ms of CPU (bcrypt) or 32 MiB of memory (scrypt)";
const AES: &str =
    "a ConnectorClass is no place for encryption keys, and AES-CBC is not in our crypto library";

/// The error a refused function gives.
fn refusal(name: &str) -> String {
    let why = REFUSED
        .iter()
        .find(|(n, _)| *n == name)
        .map_or("", |(_, w)| *w);
    format!("{name} is not available in Connectors templates: {why}")
}

pub(crate) static REFUSED_FUNCS: &[Func] = funcs![
    "env"(; ...Any) => |_| Err(refusal("env")),
    "expandenv"(; ...Any) => |_| Err(refusal("expandenv")),
    "getHostByName"(; ...Any) => |_| Err(refusal("getHostByName")),
    "genPrivateKey"(; ...Any) => |_| Err(refusal("genPrivateKey")),
    "genCA"(; ...Any) => |_| Err(refusal("genCA")),
    "genCAWithKey"(; ...Any) => |_| Err(refusal("genCAWithKey")),
    "genSelfSignedCert"(; ...Any) => |_| Err(refusal("genSelfSignedCert")),
    "genSelfSignedCertWithKey"(; ...Any) => |_| Err(refusal("genSelfSignedCertWithKey")),
    "genSignedCert"(; ...Any) => |_| Err(refusal("genSignedCert")),
    "genSignedCertWithKey"(; ...Any) => |_| Err(refusal("genSignedCertWithKey")),
    "buildCustomCert"(; ...Any) => |_| Err(refusal("buildCustomCert")),
    "encryptAES"(; ...Any) => |_| Err(refusal("encryptAES")),
    "decryptAES"(; ...Any) => |_| Err(refusal("decryptAES")),
    "bcrypt"(; ...Any) => |_| Err(refusal("bcrypt")),
    "htpasswd"(; ...Any) => |_| Err(refusal("htpasswd")),
    "derivePassword"(; ...Any) => |_| Err(refusal("derivePassword")),
];

/// mergo's `Merge` / `MergeWithOverwrite` of one `map[string]interface{}` into another, as
/// sprig calls them: nested maps merge in place, lists are never merged.
fn merge_into(dst: &Value, src: &Value, overwrite: bool, depth: usize) -> Result<(), String> {
    let (Value::Map(d), Value::Map(s)) = (dst, src) else {
        return Ok(());
    };
    if depth > super::value::MAX_VALUE_DEPTH || !charge(1) {
        return Err("merge: values nested too deep".into());
    }
    let entries: Vec<(String, Value)> = s
        .borrow()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (k, sv) in entries {
        if sv.is_nil() {
            if overwrite {
                d.borrow_mut().insert(k, Value::Null);
            }
            continue;
        }
        let dv = d.borrow().get(&k).cloned();
        if let (Value::Map(_), Some(dm @ Value::Map(_))) = (&sv, &dv) {
            merge_into(dm, &sv, overwrite, depth + 1)?;
        }
        if overwrite && matches!(sv, Value::List(_)) {
            d.borrow_mut().insert(k.clone(), sv.clone());
        }
        let dv = d.borrow().get(&k).cloned();
        if let Some(dv) = &dv
            && !empty(dv)
            && (matches!(sv, Value::List(_)) || matches!((&sv, dv), (Value::Map(_), Value::Map(_))))
        {
            continue;
        }
        if overwrite || dv.as_ref().is_none_or(empty) {
            d.borrow_mut().insert(k, sv);
        }
    }
    Ok(())
}

fn merge(a: &[Value], overwrite: bool) -> Result<Value, String> {
    let dst = match &a[0] {
        Value::Map(_) => a[0].clone(),
        _ => Value::map(BTreeMap::new()),
    };
    for src in &a[1..] {
        merge_into(&dst, src, overwrite, 0)?;
    }
    Ok(dst)
}

pub(crate) static MERGE: &[Func] = funcs![
    "merge"(Map; ...Map) => |a| merge(a, false),
    "mustMerge"(Map; ...Map) => |a| merge(a, false),
    "mergeOverwrite"(Map; ...Map) => |a| merge(a, true),
    "mustMergeOverwrite"(Map; ...Map) => |a| merge(a, true),
];

/// A decimal `mantissa × 10^exp`: shopspring/decimal as sprig's `addf`, `subf`, `mulf`, `divf`
/// and `add1f` use it (each float taken at its shortest decimal form, exact arithmetic, division
/// to 16 places rounded half away from zero). Where the mantissa would leave `i128`, the
/// operation falls back to `f64` arithmetic.
#[derive(Clone, Copy)]
struct Dec {
    m: i128,
    e: i32,
}

impl Dec {
    fn from_f64(f: f64) -> Option<Dec> {
        if !f.is_finite() {
            return None;
        }
        // `{:e}` prints the shortest representation that reads back as `f`.
        let text = format!("{f:e}");
        let (mant, exp) = text.split_once('e')?;
        let exp: i32 = exp.parse().ok()?;
        let (neg, mant) = match mant.strip_prefix('-') {
            Some(m) => (true, m),
            None => (false, mant),
        };
        let (int, frac) = mant.split_once('.').unwrap_or((mant, ""));
        let digits = format!("{int}{frac}");
        let m: i128 = digits.parse().ok()?;
        Some(Dec {
            m: if neg { -m } else { m },
            e: exp - i32::try_from(frac.len()).ok()?,
        })
    }

    fn to_f64(self) -> f64 {
        format!("{}e{}", self.m, self.e).parse().unwrap_or(f64::NAN)
    }

    fn scale(m: i128, by: i32) -> Option<i128> {
        let mut m = m;
        for _ in 0..by {
            m = m.checked_mul(10)?;
        }
        Some(m)
    }

    fn align(a: Dec, b: Dec) -> Option<(i128, i128, i32)> {
        let e = a.e.min(b.e);
        Some((Dec::scale(a.m, a.e - e)?, Dec::scale(b.m, b.e - e)?, e))
    }

    fn add(a: Dec, b: Dec) -> Option<Dec> {
        let (x, y, e) = Dec::align(a, b)?;
        Some(Dec {
            m: x.checked_add(y)?,
            e,
        })
    }

    fn sub(a: Dec, b: Dec) -> Option<Dec> {
        let (x, y, e) = Dec::align(a, b)?;
        Some(Dec {
            m: x.checked_sub(y)?,
            e,
        })
    }

    fn mul(a: Dec, b: Dec) -> Option<Dec> {
        Some(Dec {
            m: a.m.checked_mul(b.m)?,
            e: a.e.checked_add(b.e)?,
        })
    }

    fn div(a: Dec, b: Dec) -> Option<Dec> {
        // q = a/b to 16 places, rounded half away from zero.
        let shift = a.e - b.e + 16;
        let (num, den) = if shift >= 0 {
            (Dec::scale(a.m, shift)?, b.m)
        } else {
            (a.m, Dec::scale(b.m, -shift)?)
        };
        let mut q = num.checked_div(den)?;
        let r = num.checked_rem(den)?;
        if r.unsigned_abs().checked_mul(2)? >= den.unsigned_abs() {
            q += if (num < 0) != (den < 0) { -1 } else { 1 };
        }
        Some(Dec { m: q, e: -16 })
    }
}

fn decimal_op(
    first: &Value,
    rest: &[Value],
    op: fn(Dec, Dec) -> Option<Dec>,
    fallback: fn(f64, f64) -> f64,
    divides: bool,
) -> Result<Value, String> {
    let mut acc_f = to_float64(first);
    let mut acc = Dec::from_f64(acc_f);
    for v in rest {
        let x = to_float64(v);
        if divides && x == 0.0 {
            return Err("decimal division by zero".into());
        }
        acc = match (acc, Dec::from_f64(x)) {
            (Some(a), Some(b)) => op(a, b),
            _ => None,
        };
        acc_f = match acc {
            Some(d) => d.to_f64(),
            None => fallback(acc_f, x),
        };
        if acc.is_none() {
            acc = Dec::from_f64(acc_f);
        }
    }
    Ok(Value::Float(match acc {
        Some(d) => d.to_f64(),
        None => acc_f,
    }))
}

/// Go's `math.Ldexp`: `frac` × 2^`exp`, with one rounding where the result is subnormal.
fn go_ldexp(frac: f64, exp: i64) -> f64 {
    if frac == 0.0 || !frac.is_finite() {
        return frac;
    }
    let (mut frac, mut exp) = (frac, exp);
    if frac.abs() < f64::MIN_POSITIVE {
        frac *= (1u64 << 52) as f64;
        exp -= 52;
    }
    let bits = frac.to_bits();
    exp += ((bits >> 52) & 0x7ff) as i64 - 1023;
    if exp < -1075 {
        return 0f64.copysign(frac);
    }
    if exp > 1023 {
        return f64::INFINITY.copysign(frac);
    }
    let mut m = 1.0;
    if exp < -1022 {
        exp += 53;
        m = 1.0 / (1u64 << 53) as f64;
    }
    let bits = (bits & !(0x7ff << 52)) | (((exp + 1023) as u64) << 52);
    m * f64::from_bits(bits)
}

/// Go's `math.Pow(10, y)` for an integer `y`: repeated squaring of the mantissa and one final
/// scaling, which differs from the C library's `pow` in the last bit for some exponents
/// (`round 1e3 97` is 1000 in Go).
fn go_pow10(y: i64) -> f64 {
    match y {
        0 => return 1.0,
        1 => return 10.0,
        i64::MIN => return 0.0,
        _ => {}
    }
    // 10 = 0.625 × 2^4
    let (mut a1, mut ae) = (1.0f64, 0i64);
    let (mut x1, mut xe) = (0.625f64, 4i64);
    let mut i = y.unsigned_abs();
    while i != 0 {
        if !(-(1 << 12)..=(1 << 12)).contains(&xe) {
            ae += xe;
            break;
        }
        if i & 1 == 1 {
            a1 *= x1;
            ae += xe;
        }
        x1 *= x1;
        xe <<= 1;
        if x1 < 0.5 {
            x1 += x1;
            xe -= 1;
        }
        i >>= 1;
    }
    if y < 0 {
        a1 = 1.0 / a1;
        ae = -ae;
    }
    go_ldexp(a1, ae)
}

/// sprig's `round`.
fn round(a: &[Value]) -> Result<Value, String> {
    let on = match a.get(2) {
        Some(Value::Float(f)) => *f,
        _ => 0.5,
    };
    let val = to_float64(&a[0]);
    let pow = go_pow10(int(&a[1]));
    let digit = pow * val;
    let frac = digit - digit.trunc();
    let r = if frac >= on {
        digit.ceil()
    } else {
        digit.floor()
    };
    Ok(Value::Float(r / pow))
}

pub(crate) static FLOATS: &[Func] = funcs![
    "addf"(; ...Any) => |a| decimal_op(&Value::Float(0.0), a, Dec::add, |x, y| x + y, false),
    "add1f"(Any) => |a| decimal_op(&a[0], &[Value::Int(1)], Dec::add, |x, y| x + y, false),
    "subf"(Any; ...Any) => |a| decimal_op(&a[0], &a[1..], Dec::sub, |x, y| x - y, false),
    "mulf"(Any; ...Any) => |a| decimal_op(&a[0], &a[1..], Dec::mul, |x, y| x * y, false),
    "divf"(Any; ...Any) => |a| decimal_op(&a[0], &a[1..], Dec::div, |x, y| x / y, true),
    "round"(Any, Int; ...Float) => round,
];

// huandu/xstrings v1.5.0, as sprig's `camelcase` (ToPascalCase), `snakecase` and `kebabcase` use it.

fn xs_connector(c: char) -> bool {
    c == '-' || c == '_' || go_is_space(c)
}

/// Go's `unicode.IsPunct` (category P): exact for ASCII and Latin-1, the general and CJK
/// punctuation blocks beyond.
fn go_is_punct(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_punctuation() && !"$+<=>^`|~".contains(c);
    }
    matches!(c, '¡' | '§' | '«' | '¶' | '·' | '»' | '¿')
        || ('\u{2010}'..='\u{2027}').contains(&c)
        || ('\u{2030}'..='\u{205E}').contains(&c) && !matches!(c, '\u{2044}' | '\u{2052}')
        || ('\u{3001}'..='\u{3003}').contains(&c)
        || ('\u{3008}'..='\u{3011}').contains(&c)
}

fn xs_alphabet(c: char) -> bool {
    c.is_alphabetic()
        && !(('\u{4E00}'..='\u{9FCC}').contains(&c)
            || ('\u{3400}'..='\u{4D85}').contains(&c)
            || ('\u{20000}'..='\u{2B81D}').contains(&c))
}

fn xs_number(c: char) -> bool {
    c.is_numeric()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Word {
    Invalid,
    Number,
    Upper,
    Alphabet,
    Connector,
    Punct,
    Other,
}

/// xstrings' `nextWord`: the kind of the first word of `s`, the word and the rest.
fn next_word(s: &str) -> (Word, &str, &str) {
    let mut it = s.char_indices().peekable();
    let Some((_, first)) = it.next() else {
        return (Word::Invalid, "", "");
    };
    let mut end = first.len_utf8();
    let take_while = |end: &mut usize, f: &dyn Fn(char) -> bool| {
        for c in s[*end..].chars() {
            if !f(c) {
                break;
            }
            *end += c.len_utf8();
        }
    };
    let kind = if xs_connector(first) {
        take_while(&mut end, &xs_connector);
        Word::Connector
    } else if go_is_punct(first) {
        take_while(&mut end, &go_is_punct);
        Word::Punct
    } else if first.is_uppercase() {
        if let Some(next) = s[end..].chars().next() {
            if next.is_uppercase() {
                let mut prev = next.len_utf8();
                end += prev;
                let mut stop = None;
                for c in s[end..].chars() {
                    if !c.is_uppercase() {
                        stop = Some(c);
                        break;
                    }
                    prev = c.len_utf8();
                    end += prev;
                }
                if stop.is_some_and(xs_alphabet) {
                    end -= prev;
                }
            } else if xs_alphabet(next) {
                take_while(&mut end, &|c| xs_alphabet(c) && !c.is_uppercase());
            }
        }
        Word::Upper
    } else if xs_alphabet(first) {
        take_while(&mut end, &|c| xs_alphabet(c) && !c.is_uppercase());
        Word::Alphabet
    } else if xs_number(first) {
        take_while(&mut end, &xs_number);
        Word::Number
    } else {
        take_while(&mut end, &|c| {
            !(xs_connector(c) || xs_alphabet(c) || xs_number(c) || go_is_punct(c))
        });
        Word::Other
    };
    (kind, &s[..end], &s[end..])
}

fn xs_lower(out: &mut String, kind: Word, word: &str, connector: char) {
    if kind != Word::Upper && kind != Word::Connector {
        out.push_str(word);
        return;
    }
    for c in word.chars() {
        if xs_connector(c) {
            out.push(connector);
        } else if c.is_uppercase() {
            out.push(to_lower(c));
        } else {
            out.push(c);
        }
    }
}

/// xstrings' `camelCaseToLowerCase`.
fn to_lower_case(s: &str, connector: char) -> String {
    let mut out = String::new();
    if s.is_empty() {
        return out;
    }
    let (mut wt, mut word, mut rest) = next_word(s);
    while !rest.is_empty() {
        if wt != Word::Connector {
            xs_lower(&mut out, wt, word, connector);
        }
        let (prev, last) = (wt, word);
        (wt, word, rest) = next_word(rest);
        match prev {
            Word::Number => {
                while wt == Word::Alphabet || wt == Word::Number {
                    xs_lower(&mut out, wt, word, connector);
                    (wt, word, rest) = next_word(rest);
                }
                if !matches!(wt, Word::Invalid | Word::Punct | Word::Connector) {
                    out.push(connector);
                }
            }
            Word::Connector => xs_lower(&mut out, prev, last, connector),
            Word::Punct => {}
            _ => {
                if wt != Word::Number {
                    if wt != Word::Connector && wt != Word::Punct {
                        out.push(connector);
                    }
                    continue;
                }
                if rest.is_empty() {
                    continue;
                }
                let last = word;
                (wt, word, rest) = next_word(rest);
                if wt != Word::Alphabet {
                    xs_lower(&mut out, Word::Number, last, connector);
                    if wt != Word::Connector && wt != Word::Punct {
                        out.push(connector);
                    }
                    continue;
                }
                out.push(connector);
                xs_lower(&mut out, Word::Number, last, connector);
                while wt == Word::Alphabet || wt == Word::Number {
                    xs_lower(&mut out, wt, word, connector);
                    (wt, word, rest) = next_word(rest);
                }
                if !matches!(wt, Word::Invalid | Word::Connector | Word::Punct) {
                    out.push(connector);
                }
            }
        }
    }
    xs_lower(&mut out, wt, word, connector);
    out
}

/// xstrings' `ToPascalCase`.
fn to_pascal_case(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    let mut first_upper = false;
    let mut r0 = None;
    for c in chars.by_ref() {
        if !xs_connector(c) {
            first_upper = c.is_uppercase();
            r0 = Some(to_upper(c));
            break;
        }
        out.push(c);
    }
    let Some(mut r0) = r0 else {
        // Only connectors: xstrings writes the last one twice.
        if let Some(last) = s.chars().last() {
            out.push(last);
        }
        return out;
    };
    for c in chars {
        let r1 = r0;
        r0 = c;
        if xs_connector(r0) && xs_connector(r1) {
            out.push(r1);
            continue;
        }
        if xs_connector(r1) {
            first_upper = r0.is_uppercase();
            r0 = to_upper(r0);
        } else {
            if first_upper {
                if r0.is_uppercase() {
                    r0 = to_lower(r0);
                } else {
                    first_upper = false;
                }
            }
            out.push(r1);
        }
    }
    out.push(r0);
    out
}

pub(crate) static CASES: &[Func] = funcs![
    "camelcase"(Str) => |a| Ok(Value::Str(to_pascal_case(s(&a[0])))),
    "snakecase"(Str) => |a| Ok(Value::Str(to_lower_case(s(&a[0]), '_'))),
    "kebabcase"(Str) => |a| Ok(Value::Str(to_lower_case(s(&a[0]), '-'))),
];

/// Go's `time.Duration.String`.
fn go_duration_string(d: i64) -> String {
    let neg = d < 0;
    let mut u = d.unsigned_abs();
    // `fmtFrac`: the fraction of u / 10^prec without trailing zeros; returns u / 10^prec.
    let frac = |u: u64, prec: u32, out: &mut String| -> u64 {
        let p = 10u64.pow(prec);
        let f = u % p;
        if f != 0 {
            let digits = format!("{f:0width$}", width = prec as usize);
            out.push('.');
            out.push_str(digits.trim_end_matches('0'));
        }
        u / p
    };
    let mut out = String::new();
    if u < 1_000_000_000 {
        let (prec, unit) = match u {
            0 => return "0s".into(),
            1..1_000 => (0, "ns"),
            1_000..1_000_000 => (3, "µs"),
            _ => (6, "ms"),
        };
        let mut f = String::new();
        let whole = frac(u, prec, &mut f);
        out = format!("{whole}{f}{unit}");
    } else {
        let mut f = String::new();
        u = frac(u, 9, &mut f);
        let secs = format!("{}{f}s", u % 60);
        u /= 60;
        if u > 0 {
            let mins = u % 60;
            u /= 60;
            if u > 0 {
                out.push_str(&format!("{u}h"));
            }
            out.push_str(&format!("{mins}m"));
        }
        out.push_str(&secs);
    }
    if neg { format!("-{out}") } else { out }
}

/// Go's `time.ParseDuration`; `None` where Go fails.
fn go_parse_duration(s: &str) -> Option<i64> {
    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let int_part = &rest[..int_len];
        rest = &rest[int_len..];
        let mut frac_part = "";
        if let Some(r) = rest.strip_prefix('.') {
            let n = r.bytes().take_while(u8::is_ascii_digit).count();
            frac_part = &r[..n];
            rest = &r[n..];
        }
        if int_part.is_empty() && frac_part.is_empty() {
            return None;
        }
        let unit_len = rest
            .char_indices()
            .find(|(_, c)| *c == '.' || c.is_ascii_digit())
            .map_or(rest.len(), |(i, _)| i);
        let unit: u128 = match &rest[..unit_len] {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return None,
        };
        rest = &rest[unit_len..];
        let whole: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().ok()?
        };
        let mut v = whole.checked_mul(unit)?;
        if !frac_part.is_empty() {
            let mut scale: u128 = 1;
            let mut f: u128 = 0;
            for b in frac_part.bytes().take(30) {
                f = f * 10 + u128::from(b - b'0');
                scale *= 10;
            }
            v += f * unit / scale;
        }
        total = total.checked_add(v)?;
        if total > 1 << 63 {
            return None;
        }
    }
    let total = i128::try_from(total).ok()?;
    i64::try_from(if neg { -total } else { total }).ok()
}

pub(crate) static DURATIONS: &[Func] = funcs![
    // Go's switch takes only `string` and `int64`: a template's (and our) integers are `int`, 0.
    "duration"(Any) => |a| {
        let n = match &a[0] {
            Value::Str(s) => s.parse::<i64>().unwrap_or(0),
            Value::Int64(n) => *n,
            _ => 0,
        };
        Ok(Value::Str(go_duration_string(n.wrapping_mul(1_000_000_000))))
    },
    "durationRound"(Any) => |a| {
        let d = match &a[0] {
            Value::Str(s) => go_parse_duration(s).unwrap_or(0),
            Value::Int64(n) => *n,
            Value::Time(t) => t.since(),
            _ => 0,
        };
        let u = d.unsigned_abs();
        const S: u64 = 1_000_000_000;
        let units: [(u64, &str); 6] = [
            (S * 3600 * 24 * 365, "y"),
            (S * 3600 * 24 * 30, "mo"),
            (S * 3600 * 24, "d"),
            (S * 3600, "h"),
            (S * 60, "m"),
            (S, "s"),
        ];
        Ok(Value::Str(
            units
                .iter()
                .find(|(n, _)| u > *n)
                .map_or_else(|| "0s".to_owned(), |(n, unit)| format!("{}{unit}", u / n)),
        ))
    },
];

/// sprig's `dateInZone`: a `time.Time` or a Unix time in seconds (`int`, `int64`), anything
/// else the current time, in the zone named (UTC where there is none of that name).
fn date_in_zone(layout: &str, date: &Value, zone: &str) -> String {
    let t = match date {
        Value::Time(t) => (**t).clone(),
        Value::Int(n) | Value::Int64(n) => GoTime::unix(*n),
        _ => GoTime::now(),
    };
    let loc = load_location(zone).unwrap_or(Loc::Utc);
    t.with_loc(loc).format(layout)
}

fn time_arg(v: &Value) -> GoTime {
    match v {
        Value::Time(t) => (**t).clone(),
        _ => GoTime::zero(),
    }
}

fn time_value(t: GoTime) -> Value {
    Value::Time(Rc::new(t))
}

/// Go's `time.Duration.Round(time.Second)`.
fn round_to_second(d: i64) -> i64 {
    const S: i64 = 1_000_000_000;
    let r = d % S;
    if d < 0 {
        let r = -r;
        if r + r < S {
            return d + r;
        }
        d.checked_sub(S - r).unwrap_or(i64::MIN)
    } else {
        if r + r < S {
            return d - r;
        }
        d.checked_add(S - r).unwrap_or(i64::MAX)
    }
}

pub(crate) static DATES: &[Func] = funcs![
    "now"() => |_| Ok(time_value(GoTime::now())),
    "date"(Str, Any) => |a| Ok(Value::Str(date_in_zone(s(&a[0]), &a[1], "Local"))),
    "dateInZone"(Str, Any, Str) => |a| Ok(Value::Str(date_in_zone(s(&a[0]), &a[1], s(&a[2])))),
    "htmlDate"(Any) => |a| Ok(Value::Str(date_in_zone("2006-01-02", &a[0], "Local"))),
    "htmlDateInZone"(Any, Str) => |a| Ok(Value::Str(date_in_zone("2006-01-02", &a[0], s(&a[1])))),
    "dateModify"(Str, Time) => |a| {
        let t = time_arg(&a[1]);
        Ok(time_value(match go_parse_duration(s(&a[0])) {
            Some(d) => t.add(d),
            None => t,
        }))
    },
    "mustDateModify"(Str, Time) => |a| {
        let d = go_parse_duration(s(&a[0]))
            .ok_or_else(|| format!("time: invalid duration {}", go_quote(s(&a[0]))))?;
        Ok(time_value(time_arg(&a[1]).add(d)))
    },
    "toDate"(Str, Str) => |a| {
        Ok(time_value(parse_local(s(&a[0]), s(&a[1])).unwrap_or_else(|_| GoTime::zero())))
    },
    "mustToDate"(Str, Str) => |a| Ok(time_value(parse_local(s(&a[0]), s(&a[1]))?)),
    "unixEpoch"(Time) => |a| Ok(Value::Str(time_arg(&a[0]).sec.to_string())),
    "ago"(Any) => |a| {
        let t = match &a[0] {
            Value::Time(t) => (**t).clone(),
            Value::Int(n) | Value::Int64(n) => GoTime::unix(*n),
            _ => GoTime::now(),
        };
        Ok(Value::Str(go_duration_string(round_to_second(t.since()))))
    },
    "semver"(Str) => |a| Ok(Value::Version(Rc::new(SemVersion::parse(s(&a[0]))?))),
    "semverCompare"(Str, Str) => |a| Ok(Value::Bool(semver_compare(s(&a[0]), s(&a[1]))?)),
];
