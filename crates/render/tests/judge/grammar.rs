//! A grammar-based generator of templates (deterministic for a seed): pipelines, `if`/`else if`/
//! `with`/`range`/`break`/`continue`, variables and assignment, trim markers, comments,
//! `define`/`template`/`block`, functions with arguments of every kind (right and wrong kinds,
//! nil, missing values), and malformed templates made by damaging well-formed ones.

use serde_json::{Value as Json, json};

pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    pub fn pick<'a, T: ?Sized>(&mut self, items: &[&'a T]) -> &'a T {
        items[self.below(items.len())]
    }
}

/// The Go parameter kinds the generator aims arguments at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Any,
    Str,
    Int,
    Float,
    Bool,
    List,
    Map,
    Other,
    /// `time.Time`: expressions that make one (`toDate`, `dateModify`).
    Time,
    /// The date argument of `date`, `dateInZone`, `htmlDate…` (`interface {}`): a time or Unix
    /// seconds, never anything else, because sprig formats the current time for anything else
    /// (compared by property in `clock_functions_match_go_by_shape`).
    DateArg,
    /// Strings of particular shapes: Go layouts, zone names, durations, dates to parse, semver
    /// constraints and versions.
    Layout,
    Zone,
    Duration,
    DateStr,
    Constraint,
    Version,
}

/// A function and its Go signature, parsed from `func(int, string) string`.
#[derive(Clone, Debug)]
pub struct Sig {
    pub name: String,
    pub params: Vec<Kind>,
    pub variadic: Option<Kind>,
}

impl Sig {
    pub fn parse(name: &str, go: &str) -> Sig {
        let inner = go
            .strip_prefix("func(")
            .and_then(|r| r.split_once(')'))
            .map_or("", |(p, _)| p);
        let mut params = Vec::new();
        let mut variadic = None;
        for p in inner.split(", ").filter(|p| !p.is_empty()) {
            let (dots, t) = match p.strip_prefix("...") {
                Some(t) => (true, t),
                None => (false, p),
            };
            let k = match t {
                "interface {}" | "reflect.Value" => Kind::Any,
                "string" => Kind::Str,
                "int" | "int64" | "uint32" | "uint" => Kind::Int,
                "float64" => Kind::Float,
                "bool" => Kind::Bool,
                "[]interface {}" | "[]string" => Kind::List,
                "map[string]interface {}" => Kind::Map,
                "time.Time" => Kind::Time,
                _ => Kind::Other,
            };
            if dots {
                variadic = Some(k);
            } else {
                params.push(k);
            }
        }
        // Arguments of the right shape for the date and semver functions (wrong kinds come
        // from `arg`'s random kind, as for every function).
        use Kind::{Constraint, DateArg, DateStr, Duration, Layout, Time, Version, Zone};
        let shaped: Option<&[Kind]> = match name {
            "date" => Some(&[Layout, DateArg]),
            "dateInZone" | "date_in_zone" => Some(&[Layout, DateArg, Zone]),
            "htmlDate" => Some(&[DateArg]),
            "htmlDateInZone" => Some(&[DateArg, Zone]),
            "dateModify" | "date_modify" | "mustDateModify" | "must_date_modify" => {
                Some(&[Duration, Time])
            }
            "toDate" | "mustToDate" => Some(&[Layout, DateStr]),
            "semver" => Some(&[Version]),
            "semverCompare" => Some(&[Constraint, Version]),
            _ => None,
        };
        if let Some(kinds) = shaped
            && kinds.len() == params.len()
        {
            params = kinds.to_vec();
        }
        Sig {
            name: name.to_owned(),
            params,
            variadic,
        }
    }
}

/// Go layouts (with text that looks like their elements).
pub const LAYOUTS: &[&str] = &[
    "\"2006-01-02\"",
    "\"2006-01-02 15:04:05\"",
    "\"2006-01-02T15:04:05.999999999Z07:00\"",
    "\"Mon Jan _2 15:04:05 MST 2006\"",
    "\"02 Jan 06 15:04 -0700\"",
    "\"3:04PM .000 __2 002\"",
    "\"Monday January 2 -07:00:00 Z0700\"",
    "\"15:04:05,999\"",
    "\"Janet\"",
    "\"\"",
];
/// Zone names: IANA ones, Go's special ones, and unknown ones (UTC in sprig).
pub const ZONES: &[&str] = &[
    "\"UTC\"",
    "\"Local\"",
    "\"\"",
    "\"America/New_York\"",
    "\"Asia/Kolkata\"",
    "\"Australia/Lord_Howe\"",
    "\"Europe/Berlin\"",
    "\"Nowhere/City\"",
    "\"europe/berlin\"",
];
pub const DURATIONS: &[&str] = &[
    "\"1h\"",
    "\"-90m\"",
    "\"1.5s\"",
    "\"2h45m3ms\"",
    "\"\"",
    "\"1d\"",
    "\"x\"",
    "\"-0\"",
    "\"300us\"",
];
/// (layout, value) pairs are drawn separately: matching and mismatching ones.
pub const DATE_STRS: &[&str] = &[
    "\"2024-02-29\"",
    "\"2024-02-29 13:14:15\"",
    "\"2024-11-03T01:30:00.5-04:00\"",
    "\"Sun Nov  3 01:30:00 EST 2024\"",
    "\"03 Nov 24 01:30 +0530\"",
    "\"1:30AM .250 307 307\"",
    "\"2023-02-29\"",
    "\"\"",
    "\"Janet\"",
];
pub const CONSTRAINTS: &[&str] = &[
    "\"^1.2\"",
    "\"~1.2.3\"",
    "\">= 1.2, < 2.0\"",
    "\"1.2 - 1.4.5\"",
    "\"<1.0 || >=3.0.0-beta\"",
    "\"!=1.2.x\"",
    "\"*\"",
    "\">1.0.0-0\"",
    "\"^0.0.3\"",
    "\"1.x\"",
    "\"=v1.2.3\"",
    "\"\"",
    "\"bad\"",
];
pub const VERSIONS: &[&str] = &[
    "\"1.2.3\"",
    "\"v1.2\"",
    "\"1\"",
    "\"1.3.0-beta.1\"",
    "\"3.0.0-beta.2\"",
    "\"0.0.3\"",
    "\"1.4.5+b7\"",
    "\"2.0.0\"",
    "\"01.2.3\"",
    "\"1.2.3.4\"",
    "\"\"",
    ".ver",
];
/// Instants: Unix seconds and the times `toDate` and `dateModify` make.
pub const TIMES: &[&str] = &[
    "(toDate \"2006-01-02\" \"2024-02-29\")",
    "(toDate \"2006-01-02T15:04:05Z07:00\" \"2024-11-03T01:30:00.5-04:00\")",
    "(toDate \"2006\" \"bad\")",
    "(dateModify \"36h\" (toDate \"2006-01-02 15:04\" \"2024-03-09 22:00\"))",
    "(mustToDate \"Jan 2 2006 MST\" \"Feb 3 2020 PST\")",
    "((toDate \"2006-01-02 15:04\" \"2024-01-31 10:00\").AddDate 0 1 0)",
    "(toDate \"2006-01-02 15:04 -0700\" \"2024-03-10 01:30 -0800\").UTC",
];
/// `*semver.Version` values (drawn with times wherever a `time.Time` or any value goes).
const VERSION_VALUES: &[&str] = &[
    "(semver \"1.2.3-rc.1+b\")",
    "(semver .ver)",
    "(semver \"v1.2\").IncMinor",
];
const UNIX: &[&str] = &["0", "1709210096", "-86401", ".i", "4102444800"];

/// The data every generated template runs with: one of each kind.
pub fn data() -> Json {
    json!({
        "s": "hello",
        "e": "",
        "i": 3,
        "z": 0,
        "neg": -2,
        "f": 1.5,
        "fz": 0.0,
        "b": true,
        "no": false,
        "n": null,
        "l": [1, "two", 3.5, null, true],
        "sl": ["b", "a", "c"],
        "il": [3, 1, 2],
        "el": [],
        "m": {"a": 1, "b": "x", "c": [1, 2], "d": {"e": "deep"}},
        "em": {},
        "url": "https://user:pw@example.com:8080/p/q?x=1&y=2#frag",
        "num": "42",
        "js": "{\"a\":1,\"b\":[true,null]}",
        "csv": "a,b,,c",
        "ver": "1.2.3",
    })
}

const STRINGS: &[&str] = &[
    "\"\"",
    "\"a\"",
    "\"hello\"",
    "\"Hello World\"",
    "\"a,b,c\"",
    "\",\"",
    "\"x-y_z\"",
    "\" sp \"",
    "\"42\"",
    "\"-3\"",
    "\"1.5\"",
    "\"true\"",
    "\"h\\u00e9llo\"",
    "\"https://u:p@h.example:80/a/b?q=1#f\"",
    "\"{\\\"a\\\":1}\"",
    "\"[1,2]\"",
    "\"a\\nb\"",
    "\"\\t\"",
    "\"%s-%d\"",
    "\"%v|%q|%x\"",
    "\"1.2.3\"",
    "\"abc123\"",
    "`raw\\n`",
    "\"/a/b/../c.txt\"",
    "\"ab\"",
    "\"b\"",
    "\"0x1F\"",
    "\"  x  \"",
    ".s",
    ".e",
    ".num",
    ".url",
    ".js",
    ".csv",
    ".ver",
    "$.s",
];
const INTS: &[&str] = &[
    "0", "1", "2", "3", "5", "10", "12", "-1", "-3", "0x10", "0o7", "1_000", "'a'", ".i", ".z",
    ".neg",
];
const FLOATS: &[&str] = &["1.5", "-0.5", "0.0", "2.0", "1e3", "3.75", ".f", ".fz"];
const BOOLS: &[&str] = &["true", "false", ".b", ".no"];
const LISTS: &[&str] = &[
    ".l",
    ".sl",
    ".il",
    ".el",
    "(list 1 2 3)",
    "(list \"a\" \"b\" \"a\")",
    "(list)",
    "(list .s nil 2)",
];
const MAPS: &[&str] = &[
    ".m",
    ".em",
    ".m.d",
    "(dict \"a\" 1 \"b\" \"two\")",
    "(dict)",
    "$",
];
const ODD: &[&str] = &["nil", ".n", ".missing", ".m.nothere", ".m.d.e", "."];

const WORDS: &[&str] = &[
    "", "x", "a b", "\n", "  ", "\t\n  ", "line\n", "{", "}", "text ", " more", "é", "-", "k: ",
];

pub struct Gen<'a> {
    pub rng: Rng,
    funcs: &'a [Sig],
    vars: Vec<String>,
    next_var: usize,
    in_range: usize,
    depth: usize,
    defines: Vec<String>,
}

impl<'a> Gen<'a> {
    pub fn new(seed: u64, funcs: &'a [Sig]) -> Self {
        Self {
            rng: Rng::new(seed),
            funcs,
            vars: Vec::new(),
            next_var: 0,
            in_range: 0,
            depth: 0,
            defines: Vec::new(),
        }
    }

    /// One template; about one in eight is damaged.
    pub fn template(&mut self) -> String {
        self.vars.clear();
        self.in_range = 0;
        self.depth = 0;
        self.defines.clear();
        let mut out = String::new();
        if self.rng.chance(8) {
            let name = format!("d{}", self.rng.below(3));
            let body = self.items(2);
            out.push_str(&format!("{{{{define \"{name}\"}}}}{body}{{{{end}}}}"));
            self.defines.push(name);
            self.vars.clear();
        }
        let n = 1 + self.rng.below(4);
        out.push_str(&self.items(n));
        if self.rng.chance(12) {
            out = self.damage(out);
        }
        out
    }

    fn damage(&mut self, mut t: String) -> String {
        const BITS: &[&str] = &[
            "{{",
            "}}",
            "{{end}}",
            "(",
            ")",
            "|",
            "$",
            "\"",
            "`",
            ":=",
            "=",
            "{{else}}",
            "{{-",
            "-}}",
            "/*",
            "*/",
            "{{break}}",
            "{{continue}}",
            ".",
            ",",
            "{{ $u }}",
            "{{ nosuchfunc }}",
            "'",
            "{{ if }}",
            "{{ range }}",
            "{{ 1 2 }}",
            "{{ . | 3 }}",
            "{{ nil }}",
            "{{ (1) 2 }}",
        ];
        let n = 1 + self.rng.below(2);
        for _ in 0..n {
            let cut = floor_char(&t, self.rng.below(t.len() + 1));
            match self.rng.below(3) {
                0 => {
                    let end = floor_char(&t, cut + self.rng.below(6));
                    if end > cut {
                        t.replace_range(cut..end, "");
                    }
                }
                1 => t.insert_str(cut, self.rng.pick(BITS)),
                _ => t.truncate(cut),
            }
        }
        t
    }

    fn items(&mut self, n: usize) -> String {
        let mut s = String::new();
        for _ in 0..n {
            s.push_str(&self.item());
        }
        s
    }

    fn open(&mut self) -> &'static str {
        if self.rng.chance(25) { "{{- " } else { "{{" }
    }

    fn close(&mut self) -> &'static str {
        if self.rng.chance(25) { " -}}" } else { "}}" }
    }

    fn item(&mut self) -> String {
        let deep = self.depth >= 3;
        let choice = if deep {
            self.rng.below(4)
        } else {
            self.rng.below(11)
        };
        match choice {
            0 => self.rng.pick(WORDS).to_owned(),
            1..=3 => {
                let (o, c) = (self.open(), self.close());
                let p = self.pipeline(true);
                format!("{o}{p}{c}")
            }
            4 => {
                let (o, c) = (self.open(), self.close());
                format!(
                    "{o}/* {} */{c}",
                    self.rng.pick(&["c", "", "x */ y"]).replace("*/", "")
                )
            }
            5 | 6 => self.if_block(),
            7 => self.range_block(),
            8 => self.with_block(),
            9 => {
                if self.in_range > 0 {
                    let kw = self.rng.pick(&["break", "continue"]);
                    let (o, c) = (self.open(), self.close());
                    if self.rng.chance(50) {
                        // A conditional break or continue.
                        let cond = self.pipeline(false);
                        format!("{o}if {cond}{c}{{{{{kw}}}}}{{{{end}}}}")
                    } else {
                        format!("{o}{kw}{c}")
                    }
                } else if let Some(d) = self.defines.first().cloned() {
                    let arg = self.operand(1);
                    format!("{{{{template \"{d}\" {arg}}}}}")
                } else {
                    let arg = self.operand(1);
                    format!(
                        "{{{{block \"b{}\" {arg}}}}}[{{{{.}}}}]{{{{end}}}}",
                        self.rng.below(3)
                    )
                }
            }
            _ => {
                let (o, c) = (self.open(), self.close());
                let p = self.pipeline(false);
                if !self.vars.is_empty() && self.rng.chance(50) {
                    let v = self.vars[self.rng.below(self.vars.len())].clone();
                    format!("{o}{v} = {p}{c}")
                } else {
                    let v = self.new_var();
                    format!("{o}{v} := {p}{c}")
                }
            }
        }
    }

    fn new_var(&mut self) -> String {
        self.next_var += 1;
        let v = format!("$v{}", self.next_var % 5);
        self.vars.push(v.clone());
        v
    }

    /// Runs `f` one block deeper; variables declared inside go out of scope after it.
    fn scoped(&mut self, f: impl FnOnce(&mut Self) -> String) -> String {
        let saved = self.vars.len();
        self.depth += 1;
        let s = f(self);
        self.depth -= 1;
        self.vars.truncate(saved);
        s
    }

    fn if_block(&mut self) -> String {
        let kw = if self.rng.chance(80) { "if" } else { "with" };
        let (o, c) = (self.open(), self.close());
        let cond = self.pipeline(false);
        let mut s = format!("{o}{kw} {cond}{c}");
        s += &self.scoped(|g| {
            let n = 1 + g.rng.below(2);
            g.items(n)
        });
        for _ in 0..self.rng.below(3) {
            let (o, c) = (self.open(), self.close());
            // `else with` continues a `with`, `else if` an `if` (a mismatch, now and then, is
            // a parse error in both).
            let kw2 = if self.rng.chance(95) { kw } else { "with" };
            let cond = self.pipeline(false);
            s += &format!("{o}else {kw2} {cond}{c}");
            s += &self.scoped(|g| g.items(1));
        }
        if self.rng.chance(50) {
            let (o, c) = (self.open(), self.close());
            s += &format!("{o}else{c}");
            s += &self.scoped(|g| g.items(1));
        }
        let (o, c) = (self.open(), self.close());
        s + &format!("{o}end{c}")
    }

    fn with_block(&mut self) -> String {
        let (o, c) = (self.open(), self.close());
        let p = self.pipeline(false);
        let mut s = format!("{o}with {p}{c}");
        s += &self.scoped(|g| {
            let n = 1 + g.rng.below(2);
            g.items(n)
        });
        if self.rng.chance(40) {
            s += "{{else}}";
            s += &self.scoped(|g| g.items(1));
        }
        s + "{{end}}"
    }

    fn range_block(&mut self) -> String {
        const OVER: &[&str] = &[
            ".l",
            ".sl",
            ".il",
            ".el",
            ".m",
            ".em",
            ".i",
            "3",
            "0",
            ".s",
            ".n",
            ".missing",
            ".b",
            ".f",
            "(list 1 2)",
            "(dict \"x\" 1 \"y\" 2)",
            ".m.c",
            "-1",
        ];
        let (o, c) = (self.open(), self.close());
        let over = if self.rng.chance(70) {
            self.rng.pick(OVER).to_owned()
        } else {
            self.pipeline(false)
        };
        let saved = self.vars.len();
        let decl = match self.rng.below(3) {
            0 => String::new(),
            1 => format!("{} := ", self.new_var()),
            _ => {
                let (a, b) = (self.new_var(), self.new_var());
                format!("{a}, {b} := ")
            }
        };
        let mut s = format!("{o}range {decl}{over}{c}");
        self.in_range += 1;
        s += &self.scoped(|g| {
            let n = 1 + g.rng.below(3);
            g.items(n)
        });
        self.in_range -= 1;
        if self.rng.chance(30) {
            s += "{{else}}";
            s += &self.scoped(|g| g.items(1));
        }
        self.vars.truncate(saved);
        s + "{{end}}"
    }

    /// A pipeline: a command, maybe piped into more commands.
    fn pipeline(&mut self, top: bool) -> String {
        let mut s = self.command(0);
        let stages = if self.rng.chance(35) {
            1 + self.rng.below(2)
        } else {
            0
        };
        for _ in 0..stages {
            s += " | ";
            s += &self.call(1, true);
        }
        if top && self.rng.chance(5) {
            s = format!("({s})");
        }
        s
    }

    fn command(&mut self, depth: usize) -> String {
        if self.rng.chance(55) {
            self.call(depth, false)
        } else {
            self.operand(depth)
        }
    }

    /// A function call; `piped` leaves out the last argument (the pipeline supplies it).
    fn call(&mut self, depth: usize, piped: bool) -> String {
        if self.funcs.is_empty() || self.rng.below(1000) < 3 {
            return "nosuch".into();
        }
        let mut f = self.funcs[self.rng.below(self.funcs.len())].clone();
        // A piped value takes the last parameter: never a date argument, which would be the
        // current time for anything but a time or an integer.
        for _ in 0..8 {
            let last = f.params.last().copied();
            if !piped || f.variadic.is_some() || last != Some(Kind::DateArg) {
                break;
            }
            f = self.funcs[self.rng.below(self.funcs.len())].clone();
        }
        if piped && f.variadic.is_none() && f.params.last() == Some(&Kind::DateArg) {
            return "nosuch".into();
        }
        let mut kinds: Vec<Kind> = f.params.clone();
        if let Some(v) = f.variadic {
            for _ in 0..self.rng.below(4) {
                kinds.push(v);
            }
        }
        if self.rng.chance(8) {
            if self.rng.chance(50) {
                kinds.pop();
            } else {
                kinds.push(Kind::Any);
            }
        }
        if piped {
            kinds.pop();
        }
        let mut s = f.name.clone();
        for k in kinds {
            s.push(' ');
            let a = self.arg(k, depth + 1);
            s.push_str(&a);
        }
        s
    }

    fn arg(&mut self, kind: Kind, depth: usize) -> String {
        if kind == Kind::DateArg {
            return if self.rng.chance(60) {
                self.rng.pick(TIMES).to_owned()
            } else {
                self.rng.pick(UNIX).to_owned()
            };
        }
        let kind = if self.rng.chance(15) {
            *self.rng.pick(&[
                &Kind::Str,
                &Kind::Int,
                &Kind::Float,
                &Kind::Bool,
                &Kind::List,
                &Kind::Map,
                &Kind::Other,
            ])
        } else {
            kind
        };
        if depth < 3 && self.rng.chance(12) {
            return format!("({})", self.call(depth, false));
        }
        if !self.vars.is_empty() && self.rng.chance(10) {
            return self.vars[self.rng.below(self.vars.len())].clone();
        }
        self.literal(kind)
    }

    fn literal(&mut self, kind: Kind) -> String {
        let kind = if kind == Kind::Any {
            *self.rng.pick(&[
                &Kind::Str,
                &Kind::Str,
                &Kind::Int,
                &Kind::Float,
                &Kind::Bool,
                &Kind::List,
                &Kind::Map,
                &Kind::Other,
                &Kind::Time,
            ])
        } else {
            kind
        };
        match kind {
            Kind::Str => self.rng.pick(STRINGS).to_owned(),
            Kind::Int => self.rng.pick(INTS).to_owned(),
            Kind::Float => self.rng.pick(FLOATS).to_owned(),
            Kind::Bool => self.rng.pick(BOOLS).to_owned(),
            Kind::List => self.rng.pick(LISTS).to_owned(),
            Kind::Map => self.rng.pick(MAPS).to_owned(),
            Kind::Any | Kind::Other => self.rng.pick(ODD).to_owned(),
            Kind::Time if self.rng.chance(20) => self.rng.pick(VERSION_VALUES).to_owned(),
            Kind::Time => self.rng.pick(TIMES).to_owned(),
            Kind::DateArg => self.rng.pick(UNIX).to_owned(),
            Kind::Layout => self.rng.pick(LAYOUTS).to_owned(),
            Kind::Zone => self.rng.pick(ZONES).to_owned(),
            Kind::Duration => self.rng.pick(DURATIONS).to_owned(),
            Kind::DateStr => self.rng.pick(DATE_STRS).to_owned(),
            Kind::Constraint => self.rng.pick(CONSTRAINTS).to_owned(),
            Kind::Version => self.rng.pick(VERSIONS).to_owned(),
        }
    }

    fn operand(&mut self, depth: usize) -> String {
        if !self.vars.is_empty() && self.rng.chance(25) {
            let v = self.vars[self.rng.below(self.vars.len())].clone();
            return if self.rng.chance(20) {
                format!("{v}.a")
            } else {
                v
            };
        }
        if depth < 2 && self.rng.chance(10) {
            return format!("({})", self.pipeline(false));
        }
        let kind = *self.rng.pick(&[
            &Kind::Str,
            &Kind::Int,
            &Kind::Float,
            &Kind::Bool,
            &Kind::List,
            &Kind::Map,
            &Kind::Other,
        ]);
        self.literal(kind)
    }
}

fn floor_char(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}
