//! sprig's `semver` and `semverCompare`, with the rules of the Go module sprig v3.3.0 uses
//! (`github.com/Masterminds/semver/v3` v3.3.0), not Cargo's: the `semver` crate parses only full
//! `1.2.3` versions and reads `1.2` and `^0.0` its own way, while Masterminds accepts `v1`,
//! `1.2`, x-wildcards anywhere, `||`, hyphen ranges and comma- or space-separated `and`s, and
//! lets a prerelease satisfy a range only when the range names a prerelease. Its grammar is
//! written as regular expressions, which the `regex` crate runs with the same leftmost-first
//! semantics as Go's `regexp`; they are restated here (Go's `\s` is `[\t\n\f\r ]`).

use std::cmp::Ordering;
use std::sync::OnceLock;

use regex::Regex;

/// A parsed version (`*semver.Version`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Version {
    pub(crate) major: u64,
    pub(crate) minor: u64,
    pub(crate) patch: u64,
    pub(crate) pre: String,
    pub(crate) metadata: String,
    pub(crate) original: String,
    /// A `semver.Version` (what `IncMajor` and friends return), not a `*semver.Version`: it has
    /// only the methods with value receivers, and compares by value.
    pub(crate) by_value: bool,
}

const WS: &str = r"[\t\n\f\r ]";
const VERSION: &str = r"v?([0-9]+)(\.[0-9]+)?(\.[0-9]+)?(-([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?(\+([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?";
/// A version in a constraint: like [`VERSION`], with `x`, `X`, `*` (and, as upstream writes the
/// class, `|`) allowed in the numbers.
const CONSTRAINT_VERSION: &str = r"v?([0-9|x|X|\*]+)(\.[0-9|x|X|\*]+)?(\.[0-9|x|X|\*]+)?(-([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?(\+([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?";
const OPS: &str = r"=||!=|>|<|>=|=>|<=|=<|~|~>|\^";

struct Grammar {
    version: Regex,
    constraint: Regex,
    range: Regex,
    find: Regex,
    valid: Regex,
}

fn grammar() -> Result<&'static Grammar, String> {
    static G: OnceLock<Option<Grammar>> = OnceLock::new();
    G.get_or_init(|| {
        let cv = CONSTRAINT_VERSION;
        Some(Grammar {
            version: Regex::new(&format!("^{VERSION}$")).ok()?,
            constraint: Regex::new(&format!("^{WS}*({OPS}){WS}*({cv}){WS}*$")).ok()?,
            range: Regex::new(&format!("{WS}*({cv}){WS}+-{WS}+({cv}){WS}*")).ok()?,
            find: Regex::new(&format!("({OPS}){WS}*({cv})")).ok()?,
            valid: Regex::new(&format!(
                "^({WS}*({OPS}){WS}*({cv}){WS}*)((?:{WS}+|,{WS}*)({OPS}){WS}*({cv}){WS}*)*$"
            ))
            .ok()?,
        })
    })
    .as_ref()
    // The patterns are constants (tests::grammar_compiles).
    .ok_or_else(|| "semver grammar does not compile".to_owned())
}

const ERR_INVALID: &str = "Invalid Semantic Version";

fn parse_u64(s: &str) -> Result<u64, String> {
    s.parse::<u64>().map_err(|_| {
        format!(
            "Error parsing version segment: strconv.ParseUint: parsing {s:?}: value out of range"
        )
    })
}

fn only(s: &str, allowed: impl Fn(u8) -> bool) -> bool {
    s.bytes().all(allowed)
}

fn allowed(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'-'
}

fn validate_prerelease(p: &str) -> Result<(), String> {
    for part in p.split('.') {
        if only(part, |c| c.is_ascii_digit()) {
            if part.len() > 1 && part.starts_with('0') {
                return Err("Version segment starts with 0".into());
            }
        } else if !only(part, allowed) {
            return Err("Invalid Prerelease string".into());
        }
    }
    Ok(())
}

fn validate_metadata(m: &str) -> Result<(), String> {
    if m.split('.').all(|p| only(p, allowed)) {
        Ok(())
    } else {
        Err("Invalid Metadata string".into())
    }
}

impl Version {
    /// `semver.NewVersion`.
    pub(crate) fn parse(v: &str) -> Result<Version, String> {
        let caps = grammar()?
            .version
            .captures(v)
            .ok_or_else(|| ERR_INVALID.to_owned())?;
        let group = |i: usize| caps.get(i).map_or("", |m| m.as_str());
        let seg = |i: usize| -> Result<u64, String> {
            match group(i).trim_start_matches('.') {
                "" => Ok(0),
                s => parse_u64(s),
            }
        };
        let version = Version {
            major: parse_u64(group(1))?,
            minor: seg(2)?,
            patch: seg(3)?,
            pre: group(5).to_owned(),
            metadata: group(8).to_owned(),
            original: v.to_owned(),
            by_value: false,
        };
        if !version.pre.is_empty() {
            validate_prerelease(&version.pre)?;
        }
        if !version.metadata.is_empty() {
            validate_metadata(&version.metadata)?;
        }
        Ok(version)
    }

    /// `Version.String()`.
    pub(crate) fn go_string(&self) -> String {
        let mut s = format!("{}.{}.{}", self.major, self.minor, self.patch);
        if !self.pre.is_empty() {
            s.push('-');
            s.push_str(&self.pre);
        }
        if !self.metadata.is_empty() {
            s.push('+');
            s.push_str(&self.metadata);
        }
        s
    }

    /// `IncMajor`, `IncMinor`, `IncPatch` (a patch increment of a prerelease drops the
    /// prerelease only); the original keeps a leading `v`.
    pub(crate) fn inc(&self, which: &str) -> Version {
        let mut next = Version {
            metadata: String::new(),
            pre: String::new(),
            by_value: true,
            ..self.clone()
        };
        match which {
            "IncMajor" => {
                next.major = self.major.wrapping_add(1);
                next.minor = 0;
                next.patch = 0;
            }
            "IncMinor" => {
                next.minor = self.minor.wrapping_add(1);
                next.patch = 0;
            }
            _ if self.pre.is_empty() => next.patch = self.patch.wrapping_add(1),
            _ => {}
        }
        let v = if self.original.starts_with('v') {
            "v"
        } else {
            ""
        };
        next.original = format!("{v}{}", next.go_string());
        next
    }

    /// `SetPrerelease` and `SetMetadata`.
    pub(crate) fn set(&self, which: &str, to: &str) -> Result<Version, String> {
        let mut next = Version {
            by_value: true,
            ..self.clone()
        };
        if which == "SetPrerelease" {
            if !to.is_empty() {
                validate_prerelease(to)?;
            }
            next.pre = to.to_owned();
        } else {
            if !to.is_empty() {
                validate_metadata(to)?;
            }
            next.metadata = to.to_owned();
        }
        let v = if self.original.starts_with('v') {
            "v"
        } else {
            ""
        };
        next.original = format!("{v}{}", next.go_string());
        Ok(next)
    }

    pub(crate) fn compare(&self, o: &Version) -> Ordering {
        self.major
            .cmp(&o.major)
            .then(self.minor.cmp(&o.minor))
            .then(self.patch.cmp(&o.patch))
            .then_with(|| match (self.pre.is_empty(), o.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => compare_prerelease(&self.pre, &o.pre),
            })
    }
}

fn compare_prerelease(a: &str, b: &str) -> Ordering {
    let ap: Vec<&str> = a.split('.').collect();
    let bp: Vec<&str> = b.split('.').collect();
    for i in 0..ap.len().max(bp.len()) {
        let d = compare_pre_part(
            ap.get(i).copied().unwrap_or(""),
            bp.get(i).copied().unwrap_or(""),
        );
        if d != Ordering::Equal {
            return d;
        }
    }
    Ordering::Equal
}

fn compare_pre_part(s: &str, o: &str) -> Ordering {
    if s == o {
        return Ordering::Equal;
    }
    if s.is_empty() {
        return Ordering::Less;
    }
    if o.is_empty() {
        return Ordering::Greater;
    }
    match (s.parse::<u64>(), o.parse::<u64>()) {
        (Err(_), Err(_)) => {
            if s > o {
                Ordering::Greater
            } else {
                Ordering::Less
            }
        }
        // A number is lower than a word.
        (Err(_), Ok(_)) => Ordering::Greater,
        (Ok(_), Err(_)) => Ordering::Less,
        (Ok(si), Ok(oi)) => {
            if si > oi {
                Ordering::Greater
            } else {
                Ordering::Less
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    TildeOrEqual,
    NotEqual,
    Greater,
    Less,
    GreaterEqual,
    LessEqual,
    Tilde,
    Caret,
}

#[derive(Debug)]
struct Constraint {
    con: Version,
    op: Op,
    minor_dirty: bool,
    patch_dirty: bool,
    dirty: bool,
}

fn is_x(s: &str) -> bool {
    matches!(s, "x" | "X" | "*")
}

fn parse_constraint(c: &str) -> Result<Constraint, String> {
    let g = grammar()?;
    let caps = g
        .constraint
        .captures(c)
        .ok_or_else(|| format!("improper constraint: {c}"))?;
    let group = |i: usize| caps.get(i).map_or("", |m| m.as_str());
    let op = match group(1) {
        "" | "=" => Op::TildeOrEqual,
        "!=" => Op::NotEqual,
        ">" => Op::Greater,
        "<" => Op::Less,
        ">=" | "=>" => Op::GreaterEqual,
        "<=" | "=<" => Op::LessEqual,
        "~" | "~>" => Op::Tilde,
        _ => Op::Caret,
    };
    let (m3, m4, m5, m6) = (group(3), group(4), group(5), group(6));
    let (mut minor_dirty, mut patch_dirty, mut dirty) = (false, false, false);
    let ver = if is_x(m3) || m3.is_empty() {
        dirty = true;
        format!("0.0.0{m6}")
    } else if is_x(m4.trim_start_matches('.')) || m4.is_empty() {
        minor_dirty = true;
        dirty = true;
        format!("{m3}.0.0{m6}")
    } else if is_x(m5.trim_start_matches('.')) || m5.is_empty() {
        dirty = true;
        patch_dirty = true;
        format!("{m3}{m4}.0{m6}")
    } else {
        group(2).to_owned()
    };
    let con = Version::parse(&ver).map_err(|_| "constraint Parser Error".to_owned())?;
    Ok(Constraint {
        con,
        op,
        minor_dirty,
        patch_dirty,
        dirty,
    })
}

impl Constraint {
    fn check(&self, v: &Version) -> bool {
        let c = &self.con;
        let release_only = !v.pre.is_empty() && c.pre.is_empty();
        match self.op {
            Op::NotEqual => {
                if self.dirty {
                    if release_only {
                        return false;
                    }
                    if c.major != v.major {
                        return true;
                    }
                    if c.minor != v.minor && !self.minor_dirty {
                        return true;
                    } else if self.minor_dirty {
                        return false;
                    } else if c.patch != v.patch && !self.patch_dirty {
                        return true;
                    } else if self.patch_dirty {
                        if !v.pre.is_empty() || !c.pre.is_empty() {
                            return compare_prerelease(&v.pre, &c.pre) != Ordering::Equal;
                        }
                        return false;
                    }
                }
                v.compare(c) != Ordering::Equal
            }
            Op::Greater => {
                if release_only {
                    return false;
                }
                if !self.dirty {
                    return v.compare(c) == Ordering::Greater;
                }
                if v.major > c.major {
                    true
                } else if v.major < c.major || self.minor_dirty {
                    false
                } else if self.patch_dirty {
                    v.minor > c.minor
                } else {
                    v.compare(c) == Ordering::Greater
                }
            }
            Op::Less => !release_only && v.compare(c) == Ordering::Less,
            Op::GreaterEqual => !release_only && v.compare(c) != Ordering::Less,
            Op::LessEqual => {
                if release_only {
                    return false;
                }
                if !self.dirty {
                    return v.compare(c) != Ordering::Greater;
                }
                !(v.major > c.major
                    || (v.major == c.major && v.minor > c.minor && !self.minor_dirty))
            }
            Op::Tilde => !release_only && self.tilde(v),
            Op::TildeOrEqual => {
                if release_only {
                    return false;
                }
                if self.dirty {
                    return self.tilde(v);
                }
                v.compare(c) == Ordering::Equal
            }
            Op::Caret => {
                if release_only || v.compare(c) == Ordering::Less {
                    return false;
                }
                if c.major > 0 || self.minor_dirty {
                    return v.major == c.major;
                }
                if v.major > 0 {
                    return false;
                }
                if c.minor > 0 || self.patch_dirty {
                    return v.minor == c.minor;
                }
                if v.minor > 0 {
                    return false;
                }
                c.patch == v.patch
            }
        }
    }

    fn tilde(&self, v: &Version) -> bool {
        let c = &self.con;
        if v.compare(c) == Ordering::Less {
            return false;
        }
        if c.major == 0 && c.minor == 0 && c.patch == 0 && !self.minor_dirty && !self.patch_dirty {
            return true;
        }
        if v.major != c.major {
            return false;
        }
        v.minor == c.minor || self.minor_dirty
    }
}

/// `semver.NewConstraint`: the `||` alternatives, each a list of constraints that must all hold.
fn parse_constraints(c: &str) -> Result<Vec<Vec<Constraint>>, String> {
    let g = grammar()?;
    // Hyphen ranges become `>= a, <= b `.
    let mut rewritten = c.to_owned();
    for caps in g.range.captures_iter(c) {
        let whole = caps.get(0).map_or("", |m| m.as_str());
        let a = caps.get(1).map_or("", |m| m.as_str());
        let b = caps.get(11).map_or("", |m| m.as_str());
        rewritten = rewritten.replacen(whole, &format!(">= {a}, <= {b} "), 1);
    }
    rewritten
        .split("||")
        .map(|alt| {
            if !g.valid.is_match(alt) {
                return Err(format!("improper constraint: {alt}"));
            }
            let mut found: Vec<&str> = g.find.find_iter(alt).map(|m| m.as_str()).collect();
            if found.is_empty() {
                found.push(alt);
            }
            found.into_iter().map(parse_constraint).collect()
        })
        .collect()
}

/// sprig's `semverCompare`.
pub(crate) fn semver_compare(constraint: &str, version: &str) -> Result<bool, String> {
    let alternatives = parse_constraints(constraint)?;
    let v = Version::parse(version)?;
    Ok(alternatives
        .iter()
        .any(|all| all.iter().all(|c| c.check(&v))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grammar_compiles() {
        assert!(grammar().is_ok());
    }

    /// Random constraints and versions of grammar pieces and odd bytes never panic.
    #[test]
    fn random_constraints_never_panic() {
        const BITS: &[&str] = &[
            "1",
            "0",
            "x",
            "*",
            "X",
            ".",
            "-",
            "+",
            "v",
            "^",
            "~",
            ">",
            "<",
            "=",
            "!",
            "|",
            "||",
            ",",
            " ",
            "\t",
            "rc",
            "é",
            "18446744073709551616",
            "01",
            "a",
            "..",
        ];
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = |n: usize| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n as u64) as usize
        };
        for _ in 0..20_000 {
            let (mut c, mut v) = (String::new(), String::new());
            for _ in 0..next(10) {
                c.push_str(BITS[next(BITS.len())]);
            }
            for _ in 0..next(8) {
                v.push_str(BITS[next(BITS.len())]);
            }
            let _ = semver_compare(&c, &v);
            if let Ok(p) = Version::parse(&v) {
                let _ = (p.inc("IncPatch"), p.set("SetMetadata", &c), p.go_string());
            }
        }
    }

    #[test]
    fn masterminds_rules() {
        let yes = |c: &str, v: &str| semver_compare(c, v).expect("valid");
        assert!(yes("^1.2", "1.9.0"));
        assert!(!yes("^1.2", "2.0.0"));
        assert!(yes("~1.2.3", "1.2.9"));
        assert!(!yes("~1.2.3", "1.3.0"));
        assert!(yes(">=1.0 <2.0 || 3.x", "3.4.5"));
        assert!(yes("1.2 - 1.4.5", "1.4.5"));
        assert!(!yes(">1.0", "1.1.0-beta"));
        assert!(yes(">1.0-0", "1.1.0-beta"));
        assert!(yes("v1.2.3", "1.2.3"));
        assert!(yes("*", "0.0.1"));
        assert!(!yes("^0.0.3", "0.0.4"));
        assert!(semver_compare("^1.2", "x").is_err());
        assert!(semver_compare("1.2 !! 3", "1.2.3").is_err());
        assert_eq!(
            Version::parse("v1.2-rc.1+b5").expect("valid").go_string(),
            "1.2.0-rc.1+b5"
        );
        assert!(Version::parse("1.2.3-01").is_err());
    }
}
