//! The part of Go's `fmt` and `strconv` templates reach: `print`, `printf`, `println`, the
//! printing of action results, `%q` quoting and Go's float formatting.

use super::value::{MAX_STRING, Value, visit};

/// Go's `unicode.IsPrint`, approximated without Unicode category tables: controls, separators
/// other than the ASCII space, the common format characters, private-use code points and
/// non-characters are not printable.
pub(crate) fn is_print(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    let n = u32::from(c);
    let format = matches!(
        n,
        0x00AD
            | 0x0600..=0x0605
            | 0x061C
            | 0x06DD
            | 0x070F
            | 0x180E
            | 0x200B..=0x200F
            | 0x202A..=0x202E
            | 0x2060..=0x2064
            | 0x2066..=0x206F
            | 0xFEFF
            | 0xFFF9..=0xFFFB
    );
    let private = matches!(n, 0xE000..=0xF8FF | 0xF0000..=0x10FFFF);
    let nonchar = (n & 0xFFFE) == 0xFFFE || (0xFDD0..=0xFDEF).contains(&n);
    !(format || private || nonchar)
}

fn push_escaped(out: &mut String, c: char, quote: char, ascii_only: bool) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    if c == quote || c == '\\' {
        out.push('\\');
        out.push(c);
        return;
    }
    if (!ascii_only || c.is_ascii()) && is_print(c) {
        out.push(c);
        return;
    }
    match c {
        '\u{7}' => out.push_str("\\a"),
        '\u{8}' => out.push_str("\\b"),
        '\u{c}' => out.push_str("\\f"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\u{b}' => out.push_str("\\v"),
        c if c < ' ' || c == '\u{7f}' => {
            let b = c as u8;
            out.push_str("\\x");
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xF)]));
        }
        c if u32::from(c) < 0x10000 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
        c => out.push_str(&format!("\\U{:08x}", u32::from(c))),
    }
}

/// Go's `strconv.Quote`.
pub(crate) fn go_quote(s: &str) -> String {
    quote_with(s, false)
}

fn quote_with(s: &str, ascii_only: bool) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        push_escaped(&mut out, c, '"', ascii_only);
    }
    out.push('"');
    out
}

/// Go's `strconv.QuoteRune`.
fn quote_rune(c: char) -> String {
    let mut out = String::from("'");
    push_escaped(&mut out, c, '\'', false);
    out.push('\'');
    out
}

/// Go's `strconv.CanBackquote`.
fn can_backquote(s: &str) -> bool {
    s.chars()
        .all(|c| c != '`' && c != '\u{FEFF}' && (c == '\t' || !c.is_control()))
}

/// The decimal digits of `|f|` (trailing zeros dropped) and the position of the decimal point:
/// `|f| = 0.d1d2… × 10^dp`. `sig` is the number of significant digits to round to, `None` for
/// the shortest representation that reads back the same.
fn decimal(f: f64, sig: Option<usize>) -> (Vec<u8>, i32) {
    if f == 0.0 {
        return (Vec::new(), 0);
    }
    let s = match sig {
        None => format!("{:e}", f.abs()),
        Some(n) => format!("{:.*e}", n.max(1) - 1, f.abs()),
    };
    let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let mut digits: Vec<u8> = mant.bytes().filter(u8::is_ascii_digit).collect();
    while digits.len() > 1 && digits.last() == Some(&b'0') {
        digits.pop();
    }
    (digits, exp + 1)
}

fn fmt_e(out: &mut String, d: &[u8], dp: i32, prec: usize, e: char) {
    out.push(d.first().map_or('0', |&b| char::from(b)));
    if prec > 0 {
        out.push('.');
        for i in 1..=prec {
            out.push(d.get(i).map_or('0', |&b| char::from(b)));
        }
    }
    out.push(e);
    let exp = if d.is_empty() { 0 } else { dp - 1 };
    out.push(if exp < 0 { '-' } else { '+' });
    let exp = exp.unsigned_abs();
    if exp < 10 {
        out.push('0');
    }
    out.push_str(&exp.to_string());
}

fn fmt_f(out: &mut String, d: &[u8], dp: i32, prec: usize) {
    let digit = |j: i64| -> char {
        usize::try_from(j)
            .ok()
            .and_then(|j| d.get(j))
            .map_or('0', |&b| char::from(b))
    };
    if dp > 0 {
        for j in 0..i64::from(dp) {
            out.push(digit(j));
        }
    } else {
        out.push('0');
    }
    if prec > 0 {
        out.push('.');
        for i in 1..=prec {
            out.push(digit(i64::from(dp) + i as i64 - 1));
        }
    }
}

/// Go's `strconv.FormatFloat(f, verb, prec, 64)` for `e E f F g G`; `prec` `None` is Go's -1.
/// strconv's `FormatFloat(x, 'x', prec, 64)` (`%x` of a float): `0x1.f4p+09`.
fn format_hex_float(x: f64, fmt: char, prec: Option<usize>) -> String {
    let bits = x.to_bits();
    let neg = bits >> 63 != 0;
    let mut exp = ((bits >> 52) & 0x7ff) as i32;
    let mut mant = bits & ((1 << 52) - 1);
    if exp == 0 {
        exp += 1;
    } else {
        mant |= 1 << 52;
    }
    exp -= 1023;
    if mant == 0 {
        exp = 0;
    }
    mant <<= 60 - 52;
    while mant != 0 && mant & (1 << 60) == 0 {
        mant <<= 1;
        exp -= 1;
    }
    if let Some(p) = prec.filter(|p| *p < 15) {
        let shift = (p * 4) as u32;
        let extra = (mant << shift) & ((1 << 60) - 1);
        mant >>= 60 - shift;
        if extra | (mant & 1) > 1 << 59 {
            mant += 1;
        }
        mant <<= 60 - shift;
        if mant & (1 << 61) != 0 {
            mant >>= 1;
            exp += 1;
        }
    }
    let hex: &[u8; 16] = if fmt == 'X' {
        b"0123456789ABCDEF"
    } else {
        b"0123456789abcdef"
    };
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    out.push('0');
    out.push(fmt);
    out.push(if (mant >> 60) & 1 == 1 { '1' } else { '0' });
    mant <<= 4;
    match prec {
        None if mant != 0 => {
            out.push('.');
            while mant != 0 {
                out.push(char::from(hex[((mant >> 60) & 15) as usize]));
                mant <<= 4;
            }
        }
        Some(p) if p > 0 => {
            out.push('.');
            for _ in 0..p {
                out.push(char::from(hex[((mant >> 60) & 15) as usize]));
                mant <<= 4;
            }
        }
        _ => {}
    }
    out.push(if fmt == 'X' { 'P' } else { 'p' });
    out.push(if exp < 0 { '-' } else { '+' });
    let e = exp.unsigned_abs();
    if e < 100 {
        out.push_str(&format!("{e:02}"));
    } else {
        out.push_str(&e.to_string());
    }
    out
}

pub(crate) fn format_float(f: f64, verb: char, prec: Option<usize>) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    let mut out = String::new();
    if f.is_sign_negative() {
        out.push('-');
    }
    let a = f.abs();
    match verb {
        'f' | 'F' => match prec {
            Some(p) => out.push_str(&format!("{a:.p$}")),
            None => out.push_str(&format!("{a}")),
        },
        'e' | 'E' => {
            let (d, dp) = decimal(a, prec.map(|p| p + 1));
            let p = prec.unwrap_or(d.len().max(1) - 1);
            fmt_e(&mut out, &d, dp, p, verb);
        }
        _ => {
            let shortest = prec.is_none();
            let mut p = prec.unwrap_or(0).max(1);
            let (d, dp) = decimal(a, if shortest { None } else { Some(p) });
            if shortest {
                p = d.len();
            }
            let mut eprec = p;
            if eprec > d.len() && d.len() as i64 >= i64::from(dp) {
                eprec = d.len();
            }
            if shortest {
                eprec = 6;
            }
            let exp = i64::from(dp) - 1;
            let e = if verb == 'G' { 'E' } else { 'e' };
            if exp < -4 || exp >= eprec as i64 {
                let pp = p.min(d.len());
                fmt_e(&mut out, &d, dp, pp.saturating_sub(1), e);
            } else {
                let pp = if p as i64 > i64::from(dp) { d.len() } else { p };
                let prec = (pp as i64 - i64::from(dp)).max(0) as usize;
                fmt_f(&mut out, &d, dp, prec);
            }
        }
    }
    out
}

/// `%v` of a float64: shortest `%g` with Go's exponent rule (`1e+06`, `123456`, `1e-05`).
#[cfg(test)]
fn float_v(f: f64) -> String {
    format_float(f, 'g', None)
}

#[derive(Clone, Copy, Default)]
struct Flags {
    minus: bool,
    plus: bool,
    sharp: bool,
    space: bool,
    zero: bool,
    sharp_v: bool,
    wid: Option<usize>,
    prec: Option<usize>,
}

#[derive(Default)]
struct Printer {
    buf: String,
    f: Flags,
    depth: usize,
}

const TOO_LARGE: i64 = 1_000_000;

impl Printer {
    fn write_padding(&mut self, n: usize) {
        let c = if self.f.zero { '0' } else { ' ' };
        self.buf.extend(std::iter::repeat_n(c, n));
    }

    fn pad(&mut self, s: &str) {
        let Some(wid) = self.f.wid else {
            self.buf.push_str(s);
            return;
        };
        let n = wid.saturating_sub(s.chars().count());
        if self.f.minus {
            self.buf.push_str(s);
            self.write_padding(n);
        } else {
            self.write_padding(n);
            self.buf.push_str(s);
        }
    }

    fn pad_spaces(&mut self, s: &str) {
        let zero = std::mem::replace(&mut self.f.zero, false);
        self.pad(s);
        self.f.zero = zero;
    }

    fn bad_verb(&mut self, verb: char, v: &Value) {
        self.buf.push_str("%!");
        self.buf.push(verb);
        self.buf.push('(');
        if v.is_nil() {
            self.buf.push_str("<nil>");
        } else {
            self.buf.push_str(v.type_name());
            self.buf.push('=');
            self.print_arg(v, 'v');
        }
        self.buf.push(')');
    }

    fn print_arg(&mut self, v: &Value, verb: char) {
        // Stop early on huge or exponentially shared values; the executor then fails.
        if self.buf.len() > MAX_STRING || !visit(self.depth) {
            return;
        }
        if v.is_nil() {
            match verb {
                'T' | 'v' => self.pad("<nil>"),
                _ => self.bad_verb(verb, v),
            }
            return;
        }
        if verb == 'T' {
            self.pad(v.type_name());
            return;
        }
        match v {
            Value::Missing | Value::Null => {}
            Value::Bool(b) => match verb {
                't' | 'v' => self.pad(if *b { "true" } else { "false" }),
                _ => self.bad_verb(verb, v),
            },
            Value::Int(i) | Value::Int64(i) => self.fmt_integer(*i, verb, v),
            Value::Float(x) => self.fmt_float(*x, verb, v),
            Value::Str(s) => self.fmt_string(s, verb, v),
            Value::List(items) => {
                self.buf.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        self.buf.push(' ');
                    }
                    self.print_elem(item, verb);
                }
                self.buf.push(']');
            }
            Value::Map(m) => {
                self.buf.push_str("map[");
                for (i, (k, item)) in m.borrow().iter().enumerate() {
                    if i > 0 {
                        self.buf.push(' ');
                    }
                    self.fmt_string(k, verb, &Value::Str(k.clone()));
                    self.buf.push(':');
                    self.print_elem(item, verb);
                }
                self.buf.push(']');
            }
            // Both are `fmt.Stringer`s, which `%v`, `%s`, `%q`, `%x` and `%X` print.
            Value::Time(_) | Value::Version(_) => {
                let s = match v {
                    Value::Time(t) => t.go_string(),
                    Value::Version(ver) => ver.go_string(),
                    _ => String::new(),
                };
                match verb {
                    'v' | 's' | 'q' | 'x' | 'X' => self.fmt_string(&s, verb, v),
                    _ => self.bad_verb(verb, &Value::Str(s)),
                }
            }
        }
    }

    /// An element of a list or map: a nil interface prints `<nil>` whatever the verb.
    fn print_elem(&mut self, v: &Value, verb: char) {
        if v.is_nil() {
            self.buf.push_str("<nil>");
        } else {
            self.depth += 1;
            self.print_arg(v, verb);
            self.depth -= 1;
        }
    }

    fn fmt_string(&mut self, s: &str, verb: char, v: &Value) {
        let truncated: String;
        let s = match self.f.prec {
            Some(p) if matches!(verb, 'v' | 's' | 'q') => {
                truncated = s.chars().take(p).collect();
                truncated.as_str()
            }
            _ => s,
        };
        match verb {
            'v' if self.f.sharp_v => self.pad(&go_quote(s)),
            'v' | 's' => self.pad(s),
            'x' | 'X' => self.fmt_sx(s.as_bytes(), verb == 'X'),
            'q' => {
                let q = if self.f.sharp && can_backquote(s) {
                    format!("`{s}`")
                } else {
                    quote_with(s, self.f.plus)
                };
                self.pad(&q);
            }
            _ => self.bad_verb(verb, v),
        }
    }

    fn fmt_sx(&mut self, b: &[u8], upper: bool) {
        let digits: &[u8; 16] = if upper {
            b"0123456789ABCDEF"
        } else {
            b"0123456789abcdef"
        };
        let x = if upper { 'X' } else { 'x' };
        let len = self.f.prec.map_or(b.len(), |p| p.min(b.len()));
        let mut s = String::new();
        if self.f.sharp && len > 0 {
            s.push('0');
            s.push(x);
        }
        for (i, c) in b[..len].iter().enumerate() {
            if self.f.space && i > 0 {
                s.push(' ');
                if self.f.sharp {
                    s.push('0');
                    s.push(x);
                }
            }
            s.push(char::from(digits[usize::from(c >> 4)]));
            s.push(char::from(digits[usize::from(c & 0xF)]));
        }
        self.pad_spaces(&s);
    }

    fn fmt_integer(&mut self, i: i64, verb: char, v: &Value) {
        match verb {
            'v' | 'd' => self.fmt_int(i, 10, false, verb),
            'b' => self.fmt_int(i, 2, false, verb),
            'o' | 'O' => self.fmt_int(i, 8, false, verb),
            'x' => self.fmt_int(i, 16, false, verb),
            'X' => self.fmt_int(i, 16, true, verb),
            'c' => {
                let c = u32::try_from(i)
                    .ok()
                    .and_then(char::from_u32)
                    .unwrap_or('\u{FFFD}');
                self.pad_spaces(&c.to_string());
            }
            'q' => {
                let c = u32::try_from(i)
                    .ok()
                    .and_then(char::from_u32)
                    .unwrap_or('\u{FFFD}');
                self.pad_spaces(&quote_rune(c));
            }
            'U' => {
                let mut s = format!("U+{:04X}", i);
                if self.f.sharp
                    && let Some(c) = u32::try_from(i).ok().and_then(char::from_u32)
                    && is_print(c)
                {
                    s.push_str(&format!(" '{c}'"));
                }
                self.pad_spaces(&s);
            }
            _ => self.bad_verb(verb, v),
        }
    }

    fn fmt_int(&mut self, i: i64, base: u32, upper: bool, verb: char) {
        let negative = i < 0;
        let u = i.unsigned_abs();
        let mut digits = match base {
            2 => format!("{u:b}"),
            8 => format!("{u:o}"),
            16 if upper => format!("{u:X}"),
            16 => format!("{u:x}"),
            _ => u.to_string(),
        };
        let mut prec = 0usize;
        if let Some(p) = self.f.prec {
            prec = p;
            if p == 0 && u == 0 {
                let zero = std::mem::replace(&mut self.f.zero, false);
                let w = self.f.wid.unwrap_or(0);
                self.write_padding(w);
                self.f.zero = zero;
                return;
            }
        } else if self.f.zero
            && !self.f.minus
            && let Some(w) = self.f.wid
        {
            prec = w;
            if negative || self.f.plus || self.f.space {
                prec = prec.saturating_sub(1);
            }
        }
        if digits.len() < prec {
            digits = "0".repeat(prec - digits.len()) + &digits;
        }
        let mut s = String::new();
        if negative {
            s.push('-');
        } else if self.f.plus {
            s.push('+');
        } else if self.f.space {
            s.push(' ');
        }
        if self.f.sharp {
            match base {
                2 => s.push_str("0b"),
                8 if !digits.starts_with('0') => s.push('0'),
                16 => s.push_str(if upper { "0X" } else { "0x" }),
                _ => {}
            }
        }
        if verb == 'O' {
            s.push_str("0o");
        }
        s.push_str(&digits);
        self.pad_spaces(&s);
    }

    fn fmt_float(&mut self, x: f64, verb: char, v: &Value) {
        let (fmt, prec) = match verb {
            'v' => ('g', None),
            'g' | 'G' => (verb, self.f.prec),
            'e' | 'E' | 'f' | 'F' => (verb, Some(self.f.prec.unwrap_or(6))),
            'x' | 'X' => (verb, self.f.prec),
            _ => {
                self.bad_verb(verb, v);
                return;
            }
        };
        let mut num = if matches!(fmt, 'x' | 'X') && x.is_finite() {
            format_hex_float(x, fmt, prec)
        } else {
            format_float(x, if matches!(fmt, 'x' | 'X') { 'g' } else { fmt }, prec)
        };
        if !num.starts_with(['-', '+']) {
            num.insert(0, '+');
        }
        if self.f.space && num.starts_with('+') && !self.f.plus {
            num.replace_range(0..1, " ");
        }
        if num[1..].starts_with(['I', 'N']) {
            if num[1..].starts_with('N') && !self.f.space && !self.f.plus {
                num.remove(0);
            }
            self.pad_spaces(&num);
            return;
        }
        if self.f.plus || !num.starts_with('+') {
            if self.f.zero
                && !self.f.minus
                && let Some(w) = self.f.wid
                && w > num.len()
            {
                self.buf.push_str(&num[..1]);
                self.write_padding(w - num.len());
                self.buf.push_str(&num[1..]);
                return;
            }
            self.pad(&num);
            return;
        }
        self.pad(&num[1..]);
    }
}

/// `%v` of a single value, as an action prints it (`<no value>` for a missing one).
pub(crate) fn print_action_value(v: &Value) -> String {
    match v {
        Value::Missing => "<no value>".into(),
        v => sprint(std::slice::from_ref(v)),
    }
}

/// Go's `fmt.Sprint`: spaces between operands when neither is a string.
pub(crate) fn sprint(args: &[Value]) -> String {
    let mut p = Printer::default();
    let mut prev_string = false;
    for (i, arg) in args.iter().enumerate() {
        let is_string = matches!(arg, Value::Str(_));
        if i > 0 && !is_string && !prev_string {
            p.buf.push(' ');
        }
        p.print_arg(arg, 'v');
        prev_string = is_string;
    }
    p.buf
}

/// Go's `fmt.Sprintln`: spaces between all operands and a newline.
pub(crate) fn sprintln(args: &[Value]) -> String {
    let mut p = Printer::default();
    for (i, arg) in args.iter().enumerate() {
        if i > 0 {
            p.buf.push(' ');
        }
        p.print_arg(arg, 'v');
    }
    p.buf.push('\n');
    p.buf
}

/// Parses a decimal number at `i` in `b` (Go's `parsenum`).
fn parse_num(b: &[u8], mut i: usize, end: usize) -> (Option<usize>, usize) {
    let mut num: i64 = 0;
    let mut isnum = false;
    while i < end && b[i].is_ascii_digit() {
        if num > TOO_LARGE {
            return (None, end);
        }
        num = num * 10 + i64::from(b[i] - b'0');
        isnum = true;
        i += 1;
    }
    (isnum.then_some(num as usize), i)
}

struct ArgState {
    arg_num: usize,
    reordered: bool,
    good_arg_num: bool,
}

impl ArgState {
    /// Go's `argNumber`: an explicit `[n]` index at `i`.
    fn arg_number(&mut self, b: &[u8], i: usize, num_args: usize) -> (usize, bool) {
        if i >= b.len() || b[i] != b'[' {
            return (i, false);
        }
        self.reordered = true;
        // Go's parseArgNumber.
        let (index, wid, ok) = {
            let s = &b[i..];
            let mut res = (0usize, 1usize, false);
            if s.len() >= 3
                && let Some(close) = s.iter().skip(1).position(|&c| c == b']').map(|p| p + 1)
            {
                let (n, newi) = parse_num(s, 1, close);
                res = match n {
                    Some(n) if newi == close && n >= 1 => (n - 1, close + 1, true),
                    Some(0) if newi == close => (usize::MAX, close + 1, true),
                    _ => (0, close + 1, false),
                };
            }
            res
        };
        if ok && index < num_args {
            self.arg_num = index;
            return (i + wid, true);
        }
        self.good_arg_num = false;
        (i + wid, ok)
    }
}

fn int_from_arg(args: &[Value], arg_num: usize) -> (Option<i64>, usize) {
    match args.get(arg_num) {
        Some(Value::Int(n) | Value::Int64(n)) if n.abs() <= TOO_LARGE => (Some(*n), arg_num + 1),
        Some(_) => (None, arg_num + 1),
        None => (None, arg_num),
    }
}

/// Go's `fmt.Sprintf`, with its error notations (`%!d(string=x)`, `%!s(MISSING)`,
/// `%!(EXTRA …)`, `%!(NOVERB)`).
pub(crate) fn sprintf(format: &str, args: &[Value]) -> String {
    let b = format.as_bytes();
    let end = b.len();
    let mut p = Printer::default();
    let mut st = ArgState {
        arg_num: 0,
        reordered: false,
        good_arg_num: true,
    };
    let mut i = 0;
    while i < end {
        st.good_arg_num = true;
        let lasti = i;
        while i < end && b[i] != b'%' {
            i += 1;
        }
        if i > lasti {
            p.buf.push_str(&format[lasti..i]);
        }
        if i >= end {
            break;
        }
        i += 1;
        p.f = Flags::default();
        while i < end {
            match b[i] {
                b'#' => p.f.sharp = true,
                b'0' => p.f.zero = !p.f.minus,
                b'+' => p.f.plus = true,
                b'-' => {
                    p.f.minus = true;
                    p.f.zero = false;
                }
                b' ' => p.f.space = true,
                _ => break,
            }
            i += 1;
        }
        let (ni, mut after_index) = st.arg_number(b, i, args.len());
        i = ni;
        if i < end && b[i] == b'*' {
            i += 1;
            let (w, n) = int_from_arg(args, st.arg_num);
            st.arg_num = n;
            match w {
                Some(w) if w < 0 => {
                    p.f.wid = Some(w.unsigned_abs() as usize);
                    p.f.minus = true;
                    p.f.zero = false;
                }
                Some(w) => p.f.wid = Some(w as usize),
                None => p.buf.push_str("%!(BADWIDTH)"),
            }
            after_index = false;
        } else {
            let (w, ni) = parse_num(b, i, end);
            p.f.wid = w;
            i = ni;
            if after_index && w.is_some() {
                st.good_arg_num = false;
            }
        }
        if i + 1 < end && b[i] == b'.' {
            i += 1;
            if after_index {
                st.good_arg_num = false;
            }
            let (ni, ai) = st.arg_number(b, i, args.len());
            i = ni;
            after_index = ai;
            if i < end && b[i] == b'*' {
                i += 1;
                let (pr, n) = int_from_arg(args, st.arg_num);
                st.arg_num = n;
                match pr {
                    Some(pr) if pr >= 0 => p.f.prec = Some(pr as usize),
                    Some(_) => p.f.prec = None,
                    None => p.buf.push_str("%!(BADPREC)"),
                }
                after_index = false;
            } else {
                let (pr, ni) = parse_num(b, i, end);
                p.f.prec = Some(pr.unwrap_or(0));
                i = ni;
            }
        }
        if !after_index {
            let (ni, _) = st.arg_number(b, i, args.len());
            i = ni;
        }
        if i >= end {
            p.buf.push_str("%!(NOVERB)");
            break;
        }
        let verb = format[i..].chars().next().unwrap_or('?');
        i += verb.len_utf8();
        if verb == '%' {
            p.buf.push('%');
        } else if !st.good_arg_num {
            p.buf.push_str(&format!("%!{verb}(BADINDEX)"));
        } else if st.arg_num >= args.len() {
            p.buf.push_str(&format!("%!{verb}(MISSING)"));
        } else {
            if verb == 'v' {
                p.f.sharp_v = p.f.sharp;
                p.f.sharp = false;
                p.f.plus = false;
            }
            p.print_arg(&args[st.arg_num], verb);
            st.arg_num += 1;
        }
    }
    if !st.reordered && st.arg_num < args.len() {
        p.f = Flags::default();
        p.buf.push_str("%!(EXTRA ");
        for (k, arg) in args[st.arg_num..].iter().enumerate() {
            if k > 0 {
                p.buf.push_str(", ");
            }
            if arg.is_nil() {
                p.buf.push_str("<nil>");
            } else {
                p.buf.push_str(arg.type_name());
                p.buf.push('=');
                p.print_arg(arg, 'v');
            }
        }
        p.buf.push(')');
    }
    p.buf
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> Value {
        Value::str(x)
    }

    #[test]
    fn floats_like_go() {
        let cases = [
            (0.0, "0"),
            (1.0, "1"),
            (1.5, "1.5"),
            (100000.0, "100000"),
            (1_000_000.0, "1e+06"),
            (1_234_567.0, "1.234567e+06"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-2.5, "-2.5"),
            (1e21, "1e+21"),
            (123.456, "123.456"),
        ];
        for (f, want) in cases {
            assert_eq!(float_v(f), want, "{f}");
        }
        assert_eq!(format_float(1.0, 'e', Some(6)), "1.000000e+00");
        assert_eq!(format_float(1234.5678, 'e', Some(2)), "1.23e+03");
        assert_eq!(format_float(3.14259, 'f', Some(2)), "3.14");
        assert_eq!(format_float(2.0, 'f', Some(6)), "2.000000");
        assert_eq!(format_float(1234.5678, 'g', Some(3)), "1.23e+03");
        assert_eq!(format_float(0.5, 'g', Some(3)), "0.5");
    }

    #[test]
    fn sprintf_like_go() {
        let cases: Vec<(&str, Vec<Value>, &str)> = vec![
            ("%s%%2F%s", vec![s("ns"), s("name")], "ns%2Fname"),
            ("%d", vec![Value::Int(42)], "42"),
            (
                "%5d|%-5d|%05d",
                vec![Value::Int(42), Value::Int(42), Value::Int(-42)],
                "   42|42   |-0042",
            ),
            ("%v %v", vec![Value::Bool(true), Value::Null], "true <nil>"),
            ("%q", vec![s("a\"b\n")], "\"a\\\"b\\n\""),
            ("%x %X", vec![s("hi"), Value::Int(255)], "6869 FF"),
            ("%s", vec![Value::Int(5)], "%!s(int=5)"),
            ("%d", vec![s("x")], "%!d(string=x)"),
            ("%s", vec![Value::Null], "%!s(<nil>)"),
            ("%s %s", vec![s("a")], "a %!s(MISSING)"),
            (
                "%s",
                vec![s("a"), Value::Int(1), s("b")],
                "a%!(EXTRA int=1, string=b)",
            ),
            ("abc%", vec![], "abc%!(NOVERB)"),
            (
                "%.2f|%8.3f|%e",
                vec![
                    Value::Float(3.14259),
                    Value::Float(2.5),
                    Value::Float(1234.5),
                ],
                "3.14|   2.500|1.234500e+03",
            ),
            (
                "%v",
                vec![Value::list(vec![s("a"), Value::Int(1), Value::Null])],
                "[a 1 <nil>]",
            ),
            (
                "%d",
                vec![Value::list(vec![Value::Int(1), s("a")])],
                "[1 %!d(string=a)]",
            ),
            ("%[2]s-%[1]s", vec![s("a"), s("b")], "b-a"),
            ("%.2s|%5.1s|", vec![s("hello"), s("xyz")], "he|    x|"),
            (
                "%t %v",
                vec![Value::Bool(false), Value::Float(1e6)],
                "false 1e+06",
            ),
            ("%c%c", vec![Value::Int(72), Value::Int(105)], "Hi"),
            (
                "%T %T %T",
                vec![s(""), Value::Int(1), Value::Null],
                "string int <nil>",
            ),
            ("%+d % d", vec![Value::Int(5), Value::Int(5)], "+5  5"),
            (
                "%#x %#o %b",
                vec![Value::Int(255), Value::Int(8), Value::Int(5)],
                "0xff 010 101",
            ),
            ("%*d", vec![Value::Int(4), Value::Int(7)], "   7"),
        ];
        for (f, args, want) in cases {
            assert_eq!(sprintf(f, &args), want, "{f}");
        }
    }

    #[test]
    fn sprint_spacing() {
        assert_eq!(sprint(&[s("a"), s("b")]), "ab");
        assert_eq!(sprint(&[Value::Int(1), Value::Int(2)]), "1 2");
        assert_eq!(sprint(&[Value::Int(1), s("a"), Value::Int(2)]), "1a2");
        assert_eq!(sprintln(&[s("a"), s("b")]), "a b\n");
        let m = Value::from_json(&serde_json::json!({"b": 2, "a": [1, "x"]}));
        assert_eq!(sprint(&[m]), "map[a:[1 x] b:2]");
    }

    #[test]
    fn quoting() {
        assert_eq!(go_quote("tab\there"), "\"tab\\there\"");
        assert_eq!(go_quote("\u{1}é\u{a0}"), "\"\\x01é\\u00a0\"");
    }
}
