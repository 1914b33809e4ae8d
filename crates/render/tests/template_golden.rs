//! Golden tests of the template engine: (template, data, output) tables whose outputs are what
//! Go's `text/template` + sprig v3 produce for the same template and a `map[string]interface{}`
//! holding the same data. Go cannot run here, so every expectation was derived from Go's
//! documented behaviour and source; the less obvious ones say why.

use connectors_render::template::{TemplateErrorKind, parse};
use serde_json::{Value as Json, json};

fn render(name: &str, tmpl: &str, data: &Json) -> Result<String, String> {
    let t = parse(name, tmpl).map_err(|e| e.to_string())?;
    t.execute(data).map_err(|e| e.to_string())
}

fn check(cases: &[(&str, Json, &str)]) {
    let mut failures = Vec::new();
    for (tmpl, data, want) in cases {
        match render("t", tmpl, data) {
            Ok(got) if got == *want => {}
            Ok(got) => failures.push(format!("{tmpl:?}\n   want {want:?}\n    got {got:?}")),
            Err(e) => failures.push(format!("{tmpl:?}\n   want {want:?}\n  error {e}")),
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn text_fields_and_printing() {
    check(&[
        ("hello", json!({}), "hello"),
        ("{{ .name }}", json!({"name": "x"}), "x"),
        ("{{.a.b.c}}", json!({"a": {"b": {"c": "deep"}}}), "deep"),
        // A missing key of a map[string]interface{} is an invalid value: `<no value>`.
        ("{{ .missing }}", json!({}), "<no value>"),
        // Fields of a missing value are missing too (no error).
        ("{{ .a.missing.x }}", json!({"a": {}}), "<no value>"),
        // A nil interface turns into an invalid value at the end of the pipeline.
        ("{{ .n }}", json!({"n": null}), "<no value>"),
        (
            "{{ .i }} {{ .f }} {{ .b }}",
            json!({"i": 42, "f": 1.5, "b": true}),
            "42 1.5 true",
        ),
        // fmt's %v of a float64 is strconv's shortest 'g', which switches to an exponent from
        // 1e+06 on (JSON output switches only at 1e21).
        ("{{ .f }}", json!({"f": 1_000_000.5}), "1.0000005e+06"),
        (
            "{{ .list }}",
            json!({"list": ["a", 1, null]}),
            "[a 1 <nil>]",
        ),
        // fmt prints maps with sorted keys.
        ("{{ .m }}", json!({"m": {"b": 1, "a": "x"}}), "map[a:x b:1]"),
        ("{{ . }}", json!({"a": [1]}), "map[a:[1]]"),
        ("{{ .a.b }}", json!({"a": {"b": {}}}), "map[]"),
    ]);
}

#[test]
fn trimming_and_comments() {
    check(&[
        ("a  {{- 1 -}}  b", json!({}), "a1b"),
        ("a\n{{- /* comment */ -}}\nb", json!({}), "ab"),
        ("a {{/* c */}} b", json!({}), "a  b"),
        ("{{- .x }}\n", json!({"x": "v"}), "v\n"),
        // `{{-3}}` is the number -3, not a trim marker (the marker needs a space after it).
        ("x {{-3}}", json!({}), "x -3"),
        (
            "line1\n  {{- if true }}\n  yes\n  {{- end }}\nline2",
            json!({}),
            "line1\n  yes\nline2",
        ),
        // Newlines inside actions are allowed (Go ≥ 1.16).
        ("{{ printf\n \"%s\"\n .x }}", json!({"x": "nl"}), "nl"),
        ("a\t\r\n {{- `x` -}} \r\n\tb", json!({}), "axb"),
    ]);
}

#[test]
fn pipelines_and_parentheses() {
    check(&[
        // The piped value becomes the last argument.
        (r#"{{ "abc" | printf "%s-%s" "x" }}"#, json!({}), "x-abc"),
        ("{{ .a | len }}", json!({"a": [1, 2, 3]}), "3"),
        (
            r#"{{ printf "%d" (len .a) }}"#,
            json!({"a": [1, 2, 3]}),
            "3",
        ),
        (
            r#"{{ (index .m "k").v }}"#,
            json!({"m": {"k": {"v": "deep"}}}),
            "deep",
        ),
        (
            r#"{{ printf "%s/%s" "ns" "name" | urlquery }}"#,
            json!({}),
            "ns%2Fname",
        ),
        (
            r#"{{ "x" | printf "%s" | printf "[%s]" }}"#,
            json!({}),
            "[x]",
        ),
    ]);
}

#[test]
fn variables_and_scopes() {
    check(&[
        (
            r#"{{ $x := "a" }}{{ $x }}{{ $x = "b" }}{{ $x }}"#,
            json!({}),
            "ab",
        ),
        // `=` assigns the existing outer variable.
        (
            "{{ $x := 1 }}{{ if true }}{{ $x = 2 }}{{ end }}{{ $x }}",
            json!({}),
            "2",
        ),
        // `:=` inside a block shadows until its {{end}}.
        (
            "{{ $x := 1 }}{{ if true }}{{ $x := 2 }}{{ $x }}{{ end }}{{ $x }}",
            json!({}),
            "21",
        ),
        (
            "{{ range .l }}{{ $.top }}{{ end }}",
            json!({"l": [1, 2], "top": "T"}),
            "TT",
        ),
        (
            "{{ with .a }}{{ $.b }}{{ .c }}{{ end }}",
            json!({"a": {"c": "C"}, "b": "B"}),
            "BC",
        ),
        // A declared variable's action prints nothing.
        ("{{ $x := 5 }}", json!({}), ""),
        // The if-pipeline's variable is visible in the else branch.
        (
            "{{ if $v := .x }}{{ $v }}{{ else }}[{{ $v }}]{{ end }}",
            json!({"x": 0}),
            "[0]",
        ),
        ("{{ $m := .m }}{{ $m.k }}", json!({"m": {"k": "v"}}), "v"),
    ]);
}

#[test]
fn if_else_and_truthiness() {
    let t = "{{ if .t }}yes{{ else }}no{{ end }}";
    check(&[
        (t, json!({"t": true}), "yes"),
        (t, json!({"t": ""}), "no"),
        (t, json!({}), "no"),
        (t, json!({"t": 0}), "no"),
        (t, json!({"t": 0.0}), "no"),
        (t, json!({"t": []}), "no"),
        (t, json!({"t": {}}), "no"),
        (t, json!({"t": null}), "no"),
        (t, json!({"t": "0"}), "yes"),
        (t, json!({"t": "false"}), "yes"),
        (t, json!({"t": [0]}), "yes"),
    ]);
    let chain = "{{ if eq .x 1 }}one{{ else if eq .x 2 }}two{{ else }}other{{ end }}";
    check(&[
        (chain, json!({"x": 1}), "one"),
        (chain, json!({"x": 2}), "two"),
        (chain, json!({"x": 3}), "other"),
        // and/or return an operand (the first deciding one, else the last) and short-circuit.
        ("{{ and 1 0 2 }}", json!({}), "0"),
        ("{{ and 1 2 }}", json!({}), "2"),
        (r#"{{ or 0 "" "x" }}"#, json!({}), "x"),
        (r#"{{ or 0 "" }}"#, json!({}), ""),
        (
            "{{ not 0 }} {{ not .missing }} {{ not 1 }}",
            json!({}),
            "true true false",
        ),
        // Short-circuit: the index error is never evaluated.
        ("{{ or 1 (index .l 9) }}", json!({"l": []}), "1"),
        ("{{ if and .a .a.b }}y{{ else }}n{{ end }}", json!({}), "n"),
    ]);
}

#[test]
fn range_lists_maps_and_ints() {
    check(&[
        (
            "{{ range .l }}[{{ . }}]{{ end }}",
            json!({"l": ["a", "b"]}),
            "[a][b]",
        ),
        (
            "{{ range $i, $v := .l }}{{ $i }}={{ $v }};{{ end }}",
            json!({"l": ["a", "b"]}),
            "0=a;1=b;",
        ),
        (
            "{{ range $v := .l }}{{ $v }}{{ end }}",
            json!({"l": ["a", "b"]}),
            "ab",
        ),
        // Maps are visited in sorted key order.
        (
            "{{ range .m }}{{ . }},{{ end }}",
            json!({"m": {"b": 2, "a": 1, "c": 3}}),
            "1,2,3,",
        ),
        (
            "{{ range $k, $v := .m }}{{ $k }}:{{ $v }} {{ end }}",
            json!({"m": {"b": 2, "a": 1, "c": 3}}),
            "a:1 b:2 c:3 ",
        ),
        (
            "{{ range .l }}x{{ else }}empty{{ end }}",
            json!({"l": []}),
            "empty",
        ),
        (
            "{{ range .l }}x{{ else }}empty{{ end }}",
            json!({}),
            "empty",
        ),
        (
            "{{ range .m }}x{{ else }}empty{{ end }}",
            json!({"m": {}}),
            "empty",
        ),
        // The multi-connector idiom: a separator before every item but the first.
        (
            "{{- range $i, $c := .connectors }}{{ if $i }},{{ end }}{{ $c.name }}{{ end }}",
            json!({"connectors": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}),
            "a,b,c",
        ),
        // Range over an integer (Go ≥ 1.22).
        ("{{ range 3 }}{{ . }}{{ end }}", json!({}), "012"),
        ("{{ range $i := 2 }}{{ $i }}{{ end }}", json!({}), "01"),
        ("{{ range 0 }}x{{ else }}none{{ end }}", json!({}), "none"),
        (
            "{{ range .l }}{{ if eq . 3 }}{{ break }}{{ end }}{{ if eq . 1 }}{{ continue }}{{ end }}{{ . }}{{ end }}",
            json!({"l": [0, 1, 2, 3, 4]}),
            "02",
        ),
        // A nil element is dot; printing it collapses to `<no value>`.
        (
            "{{ range .l }}{{ . }},{{ end }}",
            json!({"l": [null, "x"]}),
            "<no value>,x,",
        ),
        // Variables declared in the body do not survive the iteration; `=` reaches outside.
        (
            "{{ $n := 0 }}{{ range .l }}{{ $n = add $n . }}{{ end }}{{ $n }}",
            json!({"l": [1, 2, 3]}),
            "6",
        ),
        (
            "{{ range .l }}{{ range . }}{{ . }}{{ end }};{{ end }}",
            json!({"l": [[1, 2], [3]]}),
            "12;3;",
        ),
    ]);
}

#[test]
fn with_define_template_block() {
    check(&[
        (
            "{{ with .a }}{{ . }}{{ else }}none{{ end }}",
            json!({"a": "x"}),
            "x",
        ),
        (
            "{{ with .a }}{{ . }}{{ else }}none{{ end }}",
            json!({}),
            "none",
        ),
        (
            "{{ with .a }}A{{ else with .b }}{{ . }}{{ else }}none{{ end }}",
            json!({"b": "B"}),
            "B",
        ),
        (
            r#"{{ define "d" }}[{{ . }}]{{ end }}{{ template "d" .x }}"#,
            json!({"x": "v"}),
            "[v]",
        ),
        (
            r#"{{ block "b" .x }}<{{ . }}>{{ end }}"#,
            json!({"x": "v"}),
            "<v>",
        ),
        // Inside a template, `$` is the template's own dot.
        (
            r#"{{ define "d" }}{{ $ }}{{ end }}{{ template "d" "arg" }}"#,
            json!({}),
            "arg",
        ),
        // Without a pipeline the template's dot is nil.
        (
            r#"{{ define "d" }}{{ . }}{{ end }}{{ template "d" }}"#,
            json!({}),
            "<no value>",
        ),
        // Text around definitions belongs to the main template.
        (
            "{{ define \"a\" }}x{{ end }}\n{{ template \"a\" }}",
            json!({}),
            "\nx",
        ),
        (
            r#"{{ define "list" }}{{ range . }}({{ . }}){{ end }}{{ end }}{{ template "list" .l }}"#,
            json!({"l": [1, 2]}),
            "(1)(2)",
        ),
    ]);
}

#[test]
fn literals() {
    check(&[
        (r#"{{ "a\tb\u00e9\x41" }}"#, json!({}), "a\tbéA"),
        ("{{ `raw\\n` }}", json!({}), "raw\\n"),
        // A character constant is an int.
        ("{{ 'a' }}", json!({}), "97"),
        (
            "{{ 0x1F }} {{ 1e3 }} {{ 1.50 }} {{ -7 }} {{ 0o17 }} {{ 1_000 }} {{ 017 }}",
            json!({}),
            "31 1000 1.5 -7 15 1000 15",
        ),
        ("{{ true }} {{ false }}", json!({}), "true false"),
        ("{{ print nil }}", json!({}), "<nil>"),
    ]);
}

#[test]
fn builtin_functions() {
    check(&[
        ("{{ len \"héllo\" }}", json!({}), "6"),
        ("{{ len .m }}", json!({"m": {"a": 1, "b": 2}}), "2"),
        ("{{ index .l 1 }}", json!({"l": ["a", "b"]}), "b"),
        (r#"{{ index .m "k" }}"#, json!({"m": {"k": "v"}}), "v"),
        (r#"{{ index .m "nope" }}"#, json!({"m": {}}), "<no value>"),
        ("{{ index .l 0 1 }}", json!({"l": [[1, 2]]}), "2"),
        // Indexing a string gives a byte.
        (r#"{{ index "abc" 1 }}"#, json!({}), "98"),
        (r#"{{ slice "abcdef" 1 3 }}"#, json!({}), "bc"),
        ("{{ slice .l 1 }}", json!({"l": ["a", "b", "c"]}), "[b c]"),
        // Sprint adds spaces only between operands that are both non-strings.
        (r#"{{ print "a" "b" 1 2 "c" }}"#, json!({}), "ab1 2c"),
        (r#"{{ println "a" 1 }}"#, json!({}), "a 1\n"),
        (
            r#"{{ printf "%s%%2F%s" "ns" "name" }}"#,
            json!({}),
            "ns%2Fname",
        ),
        (
            r#"{{ printf "%v|%q|%d|%5.2f|%x" .l "x" 7 3.14159 "hi" }}"#,
            json!({"l": [1, "a"]}),
            "[1 a]|\"x\"|7| 3.14|6869",
        ),
        (r#"{{ printf "%s" 5 }}"#, json!({}), "%!s(int=5)"),
        (r#"{{ printf "%d %d" 1 }}"#, json!({}), "1 %!d(MISSING)"),
        (
            r#"{{ printf "%s" "a" "b" }}"#,
            json!({}),
            "a%!(EXTRA string=b)",
        ),
        (r#"{{ printf "%v" .missing }}"#, json!({}), "<nil>"),
        (r#"{{ printf "%s" .missing }}"#, json!({}), "%!s(<nil>)"),
        (r#"{{ urlquery "a b/c?d" }}"#, json!({}), "a+b%2Fc%3Fd"),
        // evalArgs prints a nil argument as `<no value>` before escaping.
        ("{{ urlquery .missing }}", json!({}), "%3Cno+value%3E"),
        (
            r#"{{ html "<a href='x'>&</a>" }}"#,
            json!({}),
            "&lt;a href=&#39;x&#39;&gt;&amp;&lt;/a&gt;",
        ),
        (
            r#"{{ js "it's <b>" }}"#,
            json!({}),
            "it\\'s \\u003Cb\\u003E",
        ),
        (
            r#"{{ eq .s "x" }} {{ eq 1 2 3 1 }} {{ ne "a" "b" }} {{ lt 1 2 }} {{ le 2 2 }} {{ gt "b" "a" }} {{ ge 1.5 2.5 }}"#,
            json!({"s": "x"}),
            "true true true true true true false",
        ),
        // Comparing a missing value with anything is false, not an error.
        (
            r#"{{ eq .missing "x" }} {{ eq .missing .alsoMissing }}"#,
            json!({}),
            "false true",
        ),
    ]);
}

#[test]
fn sprig_strings_and_encodings() {
    check(&[
        (r#"{{ "user:pass" | b64enc }}"#, json!({}), "dXNlcjpwYXNz"),
        (r#"{{ "dXNlcjpwYXNz" | b64dec }}"#, json!({}), "user:pass"),
        (
            r#"{{ printf ":%s" "tok" | b64enc }}"#,
            json!({}),
            "OnRvaw==",
        ),
        (
            r#"{{ trimPrefix "https://" "https://x.io" }}"#,
            json!({}),
            "x.io",
        ),
        (
            r#"{{ "https://x.io/" | trimSuffix "/" }}"#,
            json!({}),
            "https://x.io",
        ),
        (
            r#"{{ trim "  x \n" }}|{{ trimAll "$" "$$5$" }}"#,
            json!({}),
            "x|5",
        ),
        (r#"{{ upper "ab" }}{{ lower "CD" }}"#, json!({}), "ABcd"),
        (r#"{{ replace "-" "_" "a-b-c" }}"#, json!({}), "a_b_c"),
        (
            r#"{{ contains "ell" "hello" }} {{ hasPrefix "he" "hello" }} {{ hasSuffix "x" "hello" }}"#,
            json!({}),
            "true true false",
        ),
        (r#"{{ splitList "," "a,b,c" }}"#, json!({}), "[a b c]"),
        (r#"{{ (split "." "a.b")._1 }}"#, json!({}), "b"),
        (r#"{{ join "," (list "a" "b" 1) }}"#, json!({}), "a,b,1"),
        (
            r#"{{ quote "a\"b" }} {{ squote "x" }} {{ quote 1 .missing "z" }}"#,
            json!({}),
            "\"a\\\"b\" 'x' \"1\" \"z\"",
        ),
        (
            r#"{{ indent 2 "a\nb" }}|{{ nindent 2 "c" }}"#,
            json!({}),
            "  a\n  b|\n  c",
        ),
        (r#"{{ cat "a" 1 .missing "b" }}"#, json!({}), "a 1 b"),
        (r#"{{ repeat 3 "ab" }}"#, json!({}), "ababab"),
        (
            r#"{{ toString 5 }}{{ toString (list 1 "a") }}"#,
            json!({}),
            "5[1 a]",
        ),
    ]);
}

#[test]
fn sprig_urls() {
    check(&[
        (
            r#"{{ $u := urlParse "https://u:p@Reg.Example:5000/a%20b/c?x=1#frag" }}{{ $u.scheme }}|{{ $u.host }}|{{ $u.hostname }}|{{ $u.path }}|{{ $u.query }}|{{ $u.fragment }}|{{ $u.userinfo }}|{{ $u.opaque }}"#,
            json!({}),
            "https|Reg.Example:5000|Reg.Example|/a b/c|x=1|frag|u:p|",
        ),
        (
            "{{ (urlParse .u).host }}",
            json!({"u": "http://127.0.0.1:8080/namespaces/ns/connectors/c"}),
            "127.0.0.1:8080",
        ),
        (
            r#"{{ urlJoin (dict "scheme" "http" "host" "h:1" "path" "/p" "query" "a=b") }}"#,
            json!({}),
            "http://h:1/p?a=b",
        ),
        (
            r#"{{ $u := urlParse "http://a.b/x" }}{{ $_ := set $u "host" "c.d:9" }}{{ urlJoin $u }}"#,
            json!({}),
            "http://c.d:9/x",
        ),
    ]);
}

#[test]
fn sprig_lists_dicts_and_defaults() {
    check(&[
        (
            "{{ first .l }} {{ last .l }} {{ rest .l }} {{ initial .l }}",
            json!({"l": [1, 2, 3]}),
            "1 3 [2 3] [1 2]",
        ),
        ("{{ first .l }}", json!({"l": []}), "<no value>"),
        (
            "{{ append .l 4 }} {{ prepend .l 0 }} {{ .l }}",
            json!({"l": [1, 2, 3]}),
            "[1 2 3 4] [0 1 2 3] [1 2 3]",
        ),
        ("{{ list }}{{ list 1 (list 2) }}", json!({}), "[][1 [2]]"),
        (
            r#"{{ $d := dict "a" 1 "b" "x" }}{{ $d.a }} {{ get $d "b" }} [{{ get $d "zz" }}] {{ hasKey $d "a" }} {{ hasKey $d "q" }}"#,
            json!({}),
            "1 x [] true false",
        ),
        (r#"{{ keys (dict "only" 1) }}"#, json!({}), "[only]"),
        // An odd argument count gives the last key an empty string.
        (r#"{{ dict "a" }}"#, json!({}), "map[a:]"),
        // sprig's set changes the dict itself (Go maps are references).
        (
            r#"{{ $d := dict }}{{ $_ := set $d "k" "v" }}{{ $d.k }}"#,
            json!({}),
            "v",
        ),
        (
            r#"{{ $d := dict }}{{ range .l }}{{ $_ := set $d . true }}{{ end }}{{ range $k, $_ := $d }}{{ $k }};{{ end }}"#,
            json!({"l": ["b", "a", "b"]}),
            "a;b;",
        ),
        (
            r#"{{ default "dflt" .missing }} {{ default "dflt" "" }} {{ default "dflt" "set" }} {{ .missing | default "p" }} {{ default 5 0 }}"#,
            json!({}),
            "dflt dflt set p 5",
        ),
        (
            r#"{{ empty "" }} {{ empty 0 }} {{ empty (list) }} {{ empty "x" }} {{ empty .missing }}"#,
            json!({}),
            "true true true false true",
        ),
        (
            r#"{{ coalesce .missing "" "first" "second" }}"#,
            json!({}),
            "first",
        ),
        (
            r#"{{ true | ternary "yes" "no" }} {{ ternary "yes" "no" false }}"#,
            json!({}),
            "yes no",
        ),
        (
            r#"{{ has 2 (list 1 2) }} {{ has "x" .missing }}"#,
            json!({}),
            "true false",
        ),
    ]);
}

#[test]
fn sprig_json_and_numbers() {
    check(&[
        (
            r#"{{ toJson (dict "b" (list 1 2) "a" "<&>") }}"#,
            json!({}),
            r#"{"a":"\u003c\u0026\u003e","b":[1,2]}"#,
        ),
        (
            r#"{{ toPrettyJson (dict "a" 1 "b" (list)) }}"#,
            json!({}),
            "{\n  \"a\": 1,\n  \"b\": []\n}",
        ),
        ("{{ .missing | toJson }}", json!({}), "null"),
        (
            "{{ .o | toJson }}",
            json!({"o": {"x": [true, null, 2.5]}}),
            r#"{"x":[true,null,2.5]}"#,
        ),
        // fromJson gives float64 numbers, printed with %v.
        (
            r#"{{ (fromJson "{\"a\":{\"b\":[1,2000000]}}").a.b }}"#,
            json!({}),
            "[1 2e+06]",
        ),
        (r#"{{ fromJson "not json" }}"#, json!({}), "<no value>"),
        (
            r#"{{ add 1 2 3 }} {{ sub 10 4 }} {{ add "2" 3 }} {{ int "42" }} {{ int 3.9 }} {{ int "x" }}"#,
            json!({}),
            "6 6 5 42 3 0",
        ),
        (
            "{{ add1 1 }} {{ mul 2 3 }} {{ div 7 2 }} {{ mod 7 2 }}",
            json!({}),
            "2 6 3 1",
        ),
    ]);
}

#[test]
fn documented_fragments() {
    let data = json!({
        "connector": {
            "metadata": {"name": "name", "namespace": "ns"},
            "status": {"proxyAddress": "http://127.0.0.1:8080/namespaces/ns/connectors/name"}
        },
        "connectors": [
            {"name": "a", "namespace": "ns1", "metadata": {"name": "a", "namespace": "ns1"}},
            {"name": "b", "namespace": "ns2", "metadata": {"name": "b", "namespace": "ns2"}}
        ],
        "context": {"token": "tok"},
        "connectorclass": {"proxyAddress": "http://127.0.0.1:8080"}
    });
    check(&[
        (
            concat!(
                "{{- $proxyUrl := urlParse .connector.status.proxyAddress -}}\n",
                "{{- $username := printf \"%s%%2F%s\" .connector.metadata.namespace .connector.metadata.name -}}\n",
                "{{- printf \"%s://%s:%s@%s\" $proxyUrl.scheme $username .context.token $proxyUrl.host -}}\n",
            ),
            data.clone(),
            "http://ns%2Fname:tok@127.0.0.1:8080",
        ),
        (
            "{{ printf \"%s/%s\" .connector.metadata.namespace .connector.metadata.name | urlquery }}",
            data.clone(),
            "ns%2Fname",
        ),
        (
            concat!(
                "{{- $u := urlParse .connectorclass.proxyAddress -}}\n",
                "{{- $users := list -}}\n",
                "{{- range .connectors }}{{ $users = append $users (printf \"%s%%2F%s\" .metadata.namespace .metadata.name) }}{{ end -}}\n",
                "{{ $u.scheme }}://{{ join \",\" $users }}:{{ .context.token }}@{{ $u.host }}",
            ),
            data.clone(),
            "http://ns1%2Fa,ns2%2Fb:tok@127.0.0.1:8080",
        ),
        (
            "{{ range $i, $c := .connectors }}{{ if $i }},{{ end }}{{ printf \"%s%%2F%s\" $c.namespace $c.name }}{{ end }}",
            data.clone(),
            "ns1%2Fa,ns2%2Fb",
        ),
        (
            "Authorization: Basic {{ printf \":%s\" .context.token | b64enc }}",
            data,
            "Authorization: Basic OnRvaw==",
        ),
    ]);
}

#[test]
fn parse_errors_name_the_file_and_line() {
    let cases = [
        (
            "{{ foo }}",
            "template: config.json:1: function \"foo\" not defined",
        ),
        (
            "a\nb\n{{ .x | nope }}",
            "template: config.json:3: function \"nope\" not defined",
        ),
        ("{{ if .x }}", "template: config.json:1: unexpected EOF"),
        ("{{ end }}", "template: config.json:1: unexpected {{end}}"),
        ("{{ else }}", "template: config.json:1: unexpected {{else}}"),
        (
            "{{ $x }}",
            "template: config.json:1: undefined variable \"$x\"",
        ),
        (
            "{{ range .l }}{{ $y := . }}{{ end }}{{ $y }}",
            "template: config.json:1: undefined variable \"$y\"",
        ),
        ("x\n{{ .x", "template: config.json:2: unclosed action"),
        (
            "{{ \"abc }}",
            "template: config.json:1: unterminated quoted string",
        ),
        (
            "{{ break }}",
            "template: config.json:1: {{break}} outside {{range}}",
        ),
        (
            "{{ printf \"x\" | 3 }}",
            "template: config.json:1: non executable command in pipeline stage 2",
        ),
        (
            "{{ }}",
            "template: config.json:1: missing value for command",
        ),
        (
            "{{ /* x */ }}",
            "template: config.json:1: unexpected \"/\" in command",
        ),
        (
            "{{/* x */ }}",
            "template: config.json:1: comment ends before closing delimiter",
        ),
        (
            "{{ define \"a\" }}x{{ end }}{{ define \"a\" }}y{{ end }}",
            "template: config.json:1: template: multiple definition of template \"a\"",
        ),
        // Go lexes `1.2.3` as the numbers `1.2` and `.3`.
        (
            "{{ 1.2.3 }}",
            "template: config.json:1: unexpected \".3\" in operand",
        ),
        (
            "{{ \"x\".y }}",
            "template: config.json:1: unexpected . after term \"\\\"x\\\"\"",
        ),
        ("{{ \"\\q\" }}", "template: config.json:1: invalid syntax"),
    ];
    for (tmpl, want) in cases {
        match parse("config.json", tmpl) {
            Ok(_) => panic!("{tmpl:?} parsed"),
            Err(e) => {
                assert_eq!(e.kind(), TemplateErrorKind::Parse);
                assert_eq!(e.to_string(), want, "{tmpl:?}");
            }
        }
    }
}

#[test]
fn exec_errors_name_the_node() {
    let cases = [
        (
            "{{ .a.b }}",
            json!({"a": null}),
            // The position is that of the second field token (Go's chain position).
            "template: x:1:5: executing \"x\" at <.a.b>: nil pointer evaluating interface {}.b",
        ),
        (
            "{{ .a.b }}",
            json!({"a": "s"}),
            "template: x:1:5: executing \"x\" at <.a.b>: can't evaluate field b in type interface {}",
        ),
        (
            "{{ index .l 5 }}",
            json!({"l": [1]}),
            "template: x:1:3: executing \"x\" at <index .l 5>: error calling index: index out of range: 5",
        ),
        (
            "{{ b64enc .missing }}",
            json!({}),
            "template: x:1:10: executing \"x\" at <.missing>: invalid value; expected string",
        ),
        (
            "{{ b64enc .n }}",
            json!({"n": 3}),
            "template: x:1:10: executing \"x\" at <.n>: wrong type for value; expected string; got int",
        ),
        (
            "{{ b64enc 3 }}",
            json!({}),
            "template: x:1:10: executing \"x\" at <3>: expected string; found 3",
        ),
        (
            "{{ template \"nope\" }}",
            json!({}),
            "template: x:1:12: executing \"x\" at <{{template \"nope\"}}>: template \"nope\" not defined",
        ),
        (
            "{{ range 1.5 }}{{ end }}",
            json!({}),
            "template: x:1:9: executing \"x\" at <1.5>: range can't iterate over 1.5",
        ),
        (
            "\n\n  {{ len 3 }}",
            json!({}),
            "template: x:3:5: executing \"x\" at <len 3>: error calling len: len of type int",
        ),
        (
            "{{ eq 1 \"a\" }}",
            json!({}),
            "template: x:1:3: executing \"x\" at <eq 1 \"a\">: error calling eq: incompatible types for comparison",
        ),
        (
            "{{ first \"abc\" }}",
            json!({}),
            "template: x:1:3: executing \"x\" at <first \"abc\">: error calling first: Cannot find first on type string",
        ),
        (
            "{{ urlParse \"http://a b\" }}",
            json!({}),
            "template: x:1:3: executing \"x\" at <urlParse \"http://a b\">: error calling urlParse: unable to parse url: parse \"http://a b\": invalid character \" \" in host name",
        ),
        (
            "{{ .a 1 }}",
            json!({"a": {}}),
            "template: x:1:3: executing \"x\" at <.a>: a is not a method but has arguments",
        ),
        (
            "{{ \"x\" 1 }}",
            json!({}),
            "template: x:1:3: executing \"x\" at <\"x\">: can't give argument to non-function \"x\"",
        ),
        (
            "{{ nil }}",
            json!({}),
            "template: x:1:3: executing \"x\" at <nil>: nil is not a command",
        ),
        (
            "{{ $x = 1 }}",
            json!({}),
            "template: x:1:8: executing \"x\" at <1>: undefined variable: $x",
        ),
        (
            "{{ printf }}",
            json!({}),
            "template: x:1:3: executing \"x\" at <printf>: wrong number of args for printf: want at least 1 got 0",
        ),
        (
            "{{ define \"d\" }}{{ .q.w }}{{ end }}{{ template \"d\" .a }}",
            json!({"a": {"q": 1}}),
            "template: x:1:21: executing \"d\" at <.q.w>: can't evaluate field w in type interface {}",
        ),
        (
            "{{ define \"r\" }}{{ template \"r\" . }}{{ end }}{{ template \"r\" . }}",
            json!({}),
            "template: x:1:28: executing \"r\" at <{{template \"r\" .}}>: exceeded maximum template depth (100)",
        ),
    ];
    for (tmpl, data, want) in cases {
        let t = parse("x", tmpl).unwrap_or_else(|e| panic!("{tmpl:?}: {e}"));
        match t.execute(&data) {
            Ok(out) => panic!("{tmpl:?} gave {out:?}"),
            Err(e) => {
                assert_eq!(e.kind(), TemplateErrorKind::Exec);
                assert_eq!(e.to_string(), want, "{tmpl:?}");
            }
        }
    }
}

/// A tiny deterministic generator (xorshift64*), so the test needs no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

#[test]
fn parse_and_execute_never_panic() {
    const PIECES: &[&str] = &[
        "{{", "}}", "{{-", "-}}", " ", "\n", ".", ".a", ".b.c", "$", "$x", ":=", "=", "|", "(",
        ")", ",", "\"s\"", "`r`", "'c'", "1", "-2", "0x1", "1e3", "1.5", "nil", "true", "if",
        "else", "end", "range", "with", "define", "template", "block", "break", "continue",
        "printf", "index", "len", "and", "or", "not", "eq", "dict", "list", "set", "urlParse",
        "b64enc", "default", "toJson", "slice", "/*", "*/", "text", "é", "\\", "\"", "{", "}", "%",
    ];
    let data = json!({"a": {"b": null}, "b": {"c": [1, "x", null]}, "l": [1, 2], "s": "str"});
    let mut parsed = 0;
    // `TEMPLATE_FUZZ_ITERATIONS=5000000 cargo test --release …` for a longer run.
    let iterations: u64 = std::env::var("TEMPLATE_FUZZ_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let seed = std::env::var("TEMPLATE_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x9E37_79B9_7F4A_7C15);
    let mut rng = Rng(seed);
    for _ in 0..iterations {
        let n = (rng.next() % 24) as usize;
        let text: String = (0..n).map(|_| rng.pick(PIECES)).collect();
        if let Ok(t) = parse("fuzz", &text) {
            parsed += 1;
            let _ = t.execute(&data);
        }
    }
    assert!(
        parsed > 100,
        "the generator should produce some valid templates ({parsed})"
    );
    // Every prefix of some real templates.
    let samples = [
        "{{- range $i, $c := .connectors }}{{ if $i }},{{ end }}{{ printf \"%s%%2F%s\" $c.namespace $c.name }}{{ end -}}",
        "{{ define \"x\" }}{{ with .a }}{{ . | toJson }}{{ else with .b }}b{{ end }}{{ end }}{{ template \"x\" . }}",
        "{{/* c */}}{{ $u := urlParse \"http://h:1/p\" }}{{ $u.host | quote }}{{ 'x' }}{{ `raw` }}{{ 0x1F }}",
    ];
    for s in samples {
        for (i, _) in s.char_indices() {
            if let Ok(t) = parse("prefix", &s[..i]) {
                let _ = t.execute(&data);
            }
        }
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    // Run on a thread with a small stack to prove the limits keep recursion bounded.
    let handle = std::thread::Builder::new()
        .stack_size(1 << 20)
        .spawn(|| {
            let deep_parens = format!("{{{{ {}1{} }}}}", "(".repeat(5000), ")".repeat(5000));
            let e = parse("t", &deep_parens).expect_err("too deep");
            assert!(e.to_string().contains("max expression depth exceeded"), "{e}");
            let deep_ifs = format!("{}x{}", "{{ if 1 }}".repeat(5000), "{{ end }}".repeat(5000));
            let e = parse("t", &deep_ifs).expect_err("too deep");
            assert!(e.to_string().contains("max expression depth exceeded"), "{e}");
            // Just under the parse limit, and recursing through a template.
            let nested = format!(
                "{{{{ define \"r\" }}}}{}{{{{ template \"r\" . }}}}{}{{{{ end }}}}{{{{ template \"r\" . }}}}",
                "{{ if 1 }}".repeat(90),
                "{{ end }}".repeat(90)
            );
            let t = parse("t", &nested).expect("parses");
            let e = t.execute(&json!({})).expect_err("too deep");
            assert!(e.to_string().contains("exceeded maximum"), "{e}");
            let t = parse("t", "{{ range 100000000 }}{{ end }}").expect("parses");
            let e = t.execute(&json!({})).expect_err("too long");
            assert!(e.to_string().contains("work limit"), "{e}");
        })
        .expect("thread");
    handle.join().expect("no stack overflow");
}

#[test]
fn hostile_values_hit_limits_quickly() {
    let cases = [
        // Exponentially shared lists: too deep, or too much to print / encode.
        "{{ $x := list 1 }}{{ range 70 }}{{ $x = list $x $x }}{{ end }}{{ $x }}",
        "{{ $x := list 1 }}{{ range 40 }}{{ $x = list $x $x }}{{ end }}{{ $x }}",
        "{{ $x := list 1 }}{{ range 40 }}{{ $x = list $x $x }}{{ end }}{{ toJson $x | len }}",
        "{{ $x := list 1 }}{{ range 40 }}{{ $x = list $x $x }}{{ end }}{{ has $x (list $x) }}",
        // set copies its value: doubling maps.
        "{{ $d := dict }}{{ range $i := 60 }}{{ $_ := set $d (print $i) $d }}{{ end }}",
        // Doubling strings.
        "{{ $s := \"ab\" }}{{ range 60 }}{{ $s = print $s $s }}{{ end }}{{ len $s }}",
        "{{ repeat 100000000 \"x\" }}",
        "{{ printf \"%999999d%999999d\" 1 2 | repeat 100 }}",
        // Many small maps (memory).
        "{{ $d := dict }}{{ range 10000000 }}{{ $_ := set $d (print .) (dict) }}{{ end }}",
        // Quadratic list growth.
        "{{ $l := list }}{{ range 1000000 }}{{ $l = append $l . }}{{ end }}",
    ];
    for tmpl in cases {
        let start = std::time::Instant::now();
        let t = parse("h", tmpl).unwrap_or_else(|e| panic!("{tmpl}: {e}"));
        let e = t.execute(&json!({})).expect_err(tmpl);
        let msg = e.to_string();
        assert!(
            [
                "work limit",
                "too deep",
                "too large",
                "size limit",
                "exceeded"
            ]
            .iter()
            .any(|w| msg.contains(w)),
            "{tmpl}: {msg}"
        );
        assert!(
            start.elapsed().as_secs() < 20,
            "{tmpl} took {:?}",
            start.elapsed()
        );
    }
}
