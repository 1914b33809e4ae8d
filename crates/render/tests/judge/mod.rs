//! Go's `text/template` + sprig v3 as the judge of our engine (issue 15): the Go program in
//! `testground/gotemplate/`, built and cached by its `build.sh`, renders batches of cases.

#![allow(dead_code)]

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use connectors_render::template::{TemplateErrorKind, parse};
use serde_json::{Value as Json, json};

/// What a case that killed the Go process gave.
pub const DIED: &str = "the Go process died";

/// One template run: its name (as errors print it), text and data.
#[derive(Clone, Debug)]
pub struct Case {
    pub name: String,
    pub template: String,
    pub data: Json,
}

impl Case {
    pub fn new(template: impl Into<String>, data: Json) -> Self {
        Self {
            name: "t".into(),
            template: template.into(),
            data,
        }
    }
}

/// What a run gave: the output, or the phase that failed (with the error text).
#[derive(Clone, Debug)]
pub enum Outcome {
    Output(String),
    Parse(String),
    Exec(String),
    /// Go panicked past text/template's recovery, or died: execution failed, and a Go program
    /// would have crashed.
    Crash(String),
}

impl Outcome {
    /// Same output byte for byte, or a failure in the same phase (error texts may differ).
    pub fn agrees(&self, other: &Outcome) -> bool {
        match (self, other) {
            (Outcome::Output(a), Outcome::Output(b)) => a == b,
            (Outcome::Parse(_), Outcome::Parse(_)) | (Outcome::Exec(_), Outcome::Exec(_)) => true,
            // Where Go crashes we fail cleanly (or, for a map holding itself, which we cannot
            // build, render): see docs/rendered-files.md.
            (Outcome::Crash(_), Outcome::Exec(_)) | (Outcome::Exec(_), Outcome::Crash(_)) => true,
            (Outcome::Crash(e), Outcome::Output(_)) | (Outcome::Output(_), Outcome::Crash(e)) => {
                e == DIED
            }
            _ => false,
        }
    }

    pub fn to_json(&self) -> Json {
        match self {
            Outcome::Output(o) => json!({ "output": o }),
            Outcome::Parse(e) => json!({ "fails": "parse", "error": e }),
            Outcome::Exec(e) => json!({ "fails": "exec", "error": e }),
            Outcome::Crash(e) => json!({ "fails": "exec", "error": e, "crash": true }),
        }
    }

    pub fn from_json(v: &Json) -> Option<Outcome> {
        if let Some(o) = v.get("output").and_then(Json::as_str) {
            return Some(Outcome::Output(o.to_owned()));
        }
        let e = v
            .get("error")
            .and_then(Json::as_str)
            .unwrap_or("")
            .to_owned();
        if v.get("crash") == Some(&json!(true)) {
            return Some(Outcome::Crash(e));
        }
        match v.get("fails").and_then(Json::as_str)? {
            "parse" => Some(Outcome::Parse(e)),
            "exec" => Some(Outcome::Exec(e)),
            _ => None,
        }
    }
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Builds (or finds cached) the judge and returns the path of its binary. Fails the test with a
/// clear message when Go is missing: the differential tests must not pass by not running.
pub fn judge_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let script = repo_root().join("testground/gotemplate/build.sh");
        let out = Command::new("bash")
            .arg(&script)
            .stderr(Stdio::inherit())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(
            out.status.success(),
            "the template judge (Go's text/template + sprig, testground/gotemplate/) could not be built; \
             these tests compare our engine with Go and need Go 1.26 on PATH (see the build output above)"
        );
        let dir = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let bin = Path::new(&dir).join("gotemplate");
        assert!(bin.is_file(), "build.sh printed {dir:?}, which has no gotemplate binary");
        bin
    })
}

/// Runs every case through Go, in one process (restarted after a case that kills it: Go dies
/// of a stack overflow printing a map that contains itself, which sprig's `set` can build; such a
/// case is [`Outcome::Crash`]).
pub fn go_render(cases: &[Case]) -> Vec<Outcome> {
    let lines: Vec<String> = cases
        .iter()
        .map(|c| json!({"name": c.name, "template": c.template, "data": c.data}).to_string())
        .collect();
    if let Some(path) = std::env::var_os("JUDGE_DUMP") {
        // For debugging: the cases as the judge reads them.
        std::fs::write(path, lines.join("\n") + "\n").expect("write JUDGE_DUMP");
    }
    let mut outcomes = Vec::with_capacity(cases.len());
    while outcomes.len() < cases.len() {
        let start = outcomes.len();
        let batch = go_batch(&lines[start..]);
        let got = batch.len();
        outcomes.extend(batch);
        if outcomes.len() < cases.len() {
            assert!(
                outcomes.len() > start || got == 0,
                "the judge stopped answering"
            );
            outcomes.push(Outcome::Crash(DIED.into()));
        }
    }
    outcomes
}

/// Feeds lines to one judge process; returns the answers it gave before it ended.
fn go_batch(lines: &[String]) -> Vec<Outcome> {
    let mut child = Command::new(judge_binary())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the template judge");
    let mut stdin = child.stdin.take().expect("judge stdin");
    let lines = lines.to_vec();
    let writer = std::thread::spawn(move || {
        for l in lines {
            // A dying judge closes the pipe: its answers so far say where it died.
            if stdin.write_all(l.as_bytes()).is_err() || stdin.write_all(b"\n").is_err() {
                break;
            }
        }
    });
    let stdout = BufReader::new(child.stdout.take().expect("judge stdout"));
    let mut outcomes = Vec::new();
    for line in stdout.lines() {
        let Ok(line) = line else { break };
        let v: Json = serde_json::from_str(&line).expect("the judge writes JSON lines");
        let outcome = if v["ok"] == json!(true) {
            Outcome::Output(v["output"].as_str().unwrap_or("").to_owned())
        } else {
            let e = v["error"].as_str().unwrap_or("").to_owned();
            match v["phase"].as_str() {
                Some("parse") => Outcome::Parse(e),
                Some("exec") => Outcome::Exec(e),
                // A panic sprig raises with a non-error value escapes text/template's recovery
                // (a Go program would crash).
                Some("panic") => Outcome::Crash(e),
                other => panic!("judge could not run a case ({other:?}): {e}"),
            }
        };
        outcomes.push(outcome);
    }
    writer.join().expect("judge writer");
    let _ = child.wait();
    outcomes
}

/// Runs a case through our engine.
pub fn ours(case: &Case) -> Outcome {
    match parse(&case.name, &case.template) {
        Err(e) => {
            assert_eq!(e.kind(), TemplateErrorKind::Parse);
            Outcome::Parse(e.to_string())
        }
        Ok(t) => match t.execute(&case.data) {
            Ok(o) => Outcome::Output(o),
            Err(e) => Outcome::Exec(e.to_string()),
        },
    }
}

/// The sprig functions Go offers, as `(name, Go signature)`.
pub fn go_functions() -> Vec<(String, String)> {
    let out = Command::new(judge_binary())
        .arg("-funcs")
        .output()
        .expect("run the judge");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(n, s)| (n.to_owned(), s.to_owned()))
        .collect()
}

/// A disagreement: the case, Go's outcome, ours.
pub type Difference = (Case, Outcome, Outcome);

/// Compares our engine with Go on every case.
pub fn differences_of(cases: &[Case], go: &[Outcome]) -> Vec<Difference> {
    cases
        .iter()
        .zip(go)
        .filter_map(|(c, g)| {
            let o = ours(c);
            (!o.agrees(g)).then(|| (c.clone(), g.clone(), o))
        })
        .collect()
}

pub fn describe((c, g, o): &Difference) -> String {
    format!(
        "{:?} with {}\n     go: {:?}\n    ours: {:?}",
        c.template, c.data, g, o
    )
}

/// Compares our engine with Go on every case; describes each disagreement.
pub fn differences(cases: &[Case], go: &[Outcome]) -> Vec<String> {
    differences_of(cases, go).iter().map(describe).collect()
}

/// The intended differences (docs/rendered-files.md, "Differences from Go"), recognised by
/// what Go and our engine gave.
const INTENDED: &[(&str, &str)] = &[
    (
        "got map[string]string",
        "sprig's split returns map[string]string and Go refuses it for a map[string]interface {} parameter; our maps have one type",
    ),
    (
        "interface {} is map[string]string",
        "sprig's split returns map[string]string and Go refuses it for a map[string]interface {} parameter; our maps have one type",
    ),
    (
        "encountered a cycle",
        "a map cannot contain itself: sprig's set stores a copy here, where Go builds a cycle that its JSON encoder refuses",
    ),
    (
        "got []string",
        "sprig's string-list functions return []string and Go refuses it where another slice type is expected; our lists have one type",
    ),
];

/// sprig functions that return `[]string` or `map[string]string`.
const STRING_LISTS: &[&str] = &[
    "splitList",
    "split",
    "splitn",
    "regexFindAll",
    "regexSplit",
    "keys",
    "sortAlpha",
    "toStrings",
    "until",
    "untilStep",
    "chunk",
];

/// Splits differences into intended ones (counted by reason) and the rest (described).
pub fn classify(diffs: Vec<Difference>) -> (Vec<(&'static str, usize)>, Vec<String>) {
    let mut known: Vec<(&'static str, usize)> = Vec::new();
    let mut rest = Vec::new();
    for d in diffs {
        let why = match (&d.1, &d.2) {
            (Outcome::Output(_), Outcome::Exec(e))
                if e.contains("too long")
                    || e.contains("too large")
                    || e.contains("limit")
                    || e.contains("too deep") =>
            {
                Some("our engine's limits (work, output, list and string sizes) are far below Go's")
            }
            (Outcome::Exec(e), Outcome::Output(_)) => INTENDED
                .iter()
                .find(|(needle, _)| e.contains(needle))
                .map(|(_, why)| *why),
            // Go slices strings by byte; a string cut inside a UTF-8 sequence keeps the broken
            // bytes, which the judge's JSON shows as one U+FFFD each, ours (UTF-8 strings) as
            // one U+FFFD per broken sequence.
            (Outcome::Output(a), Outcome::Output(b))
                if a.contains('\u{FFFD}')
                    && a.replace('\u{FFFD}', "") == b.replace('\u{FFFD}', "") =>
            {
                Some(
                    "strings cut inside a UTF-8 sequence: our strings are UTF-8, broken bytes become one U+FFFD per sequence",
                )
            }
            (Outcome::Output(a), Outcome::Output(b))
                if a.replace("[]interface {}", "\u{0}")
                    .replace("[]\u{0}", "\u{0}")
                    .replace("[]string", "\u{0}")
                    .replace("[]int", "\u{0}")
                    .replace('\u{0}', "[]interface {}")
                    .replace("map[string]string", "map[string]interface {}")
                    == *b
                    || (["typeOf", "typeIs", "%T"]
                        .iter()
                        .any(|f| d.0.template.contains(f))
                        && STRING_LISTS.iter().any(|f| d.0.template.contains(f))) =>
            {
                Some(
                    "sprig's string functions return []string (split: map[string]string): typeOf and %T name Go's static types, ours has one list and one map type",
                )
            }
            (Outcome::Output(a), Outcome::Output(b))
                if d.0.template.contains("b64dec") || d.0.template.contains("b32dec") =>
            {
                let _ = (a, b);
                Some(
                    "bytes that are not UTF-8 (b64dec/b32dec of binary data): our strings are UTF-8, such bytes become U+FFFD",
                )
            }
            _ => None,
        };
        match why {
            Some(w) => match known.iter_mut().find(|(k, _)| *k == w) {
                Some((_, n)) => *n += 1,
                None => known.push((w, 1)),
            },
            None => rest.push(describe(&d)),
        }
    }
    (known, rest)
}
pub mod grammar;
