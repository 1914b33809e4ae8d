//! Template engine (crates/render/src/template): parse, then execute with a fixed data value.
//!
//! Input: the template text (libFuzzer's -max_len bounds it; 4 KiB in CI and the long run).
//! Properties: never panics, whatever the text (the engine's limits bound steps, nesting and
//! output); parse errors are of kind Parse and execution errors of kind Exec, both worded like
//! Go's (`template: <name>:…`); text without `{{` renders as itself; output stays under the limit.
#![no_main]

use std::sync::LazyLock;

use connectors_render::template::{TemplateErrorKind, parse};
use libfuzzer_sys::fuzz_target;

static DATA: LazyLock<serde_json::Value> = LazyLock::new(|| {
    serde_json::json!({
        "connector": {"name": "prod", "namespace": "team-a", "address": "https://r.example.com:5000/x"},
        "proxy": {"url": "http://team-a%2Fprod:tok@proxy:8080", "host": "proxy", "port": 8080},
        "list": [1, "two", 3.5, true, null, {"k": "v"}, [1, 2]],
        "map": {"b": 2, "a": "x", "c": {"d": [1]}},
        "empty": "",
        "n": -7,
        "big": 9007199254740993u64,
        "f": 1e300
    })
});

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let template = match parse("t.conf", text) {
        Ok(t) => t,
        Err(e) => {
            assert_eq!(e.kind(), TemplateErrorKind::Parse);
            assert!(e.message().starts_with("template: "), "{:?}", e.message());
            return;
        }
    };
    match template.execute(&DATA) {
        Ok(out) => {
            assert!(out.len() <= 16 << 20, "output of {} bytes", out.len());
            if !text.contains("{{") {
                assert_eq!(out, text, "plain text changed");
            }
        }
        Err(e) => {
            assert_eq!(e.kind(), TemplateErrorKind::Exec);
            assert!(e.message().starts_with("template: "), "{:?}", e.message());
        }
    }
});
