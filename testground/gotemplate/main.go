// gotemplate: the judge of the template engine (issue 15). Test peer only; nothing here ships.
//
// Reads cases as JSON lines on stdin, {"name": "...", "template": "...", "data": <JSON>}, and writes one
// JSON line per case on stdout, in order:
//
//	{"ok": true, "output": "..."}
//	{"ok": false, "phase": "parse" | "exec", "error": "..."}
//
// The template is parsed with text/template and sprig v3's TxtFuncMap, named "name" (default "t"), and executed
// with data as dot. JSON integers that fit an int64 become Go ints, other numbers float64s: the same values the
// Rust engine makes of the same JSON (crates/render/src/template/value.rs). Output is capped at 16 MiB (the Rust
// engine's limit): beyond it, execution fails. A panic escaping text/template is reported as phase "panic".
// A case that runs longer than caseTimeout (sprig's deepCopy of a map that holds itself never
// returns) ends the process with the answers so far, as a case that crashes Go does.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"runtime/debug"
	"sort"
	"strings"
	"text/template"
	"time"

	"github.com/Masterminds/sprig/v3"
)

const maxOutput = 16 << 20

// caseTimeout bounds one case; the slowest real case takes milliseconds.
const caseTimeout = 5 * time.Second

type input struct {
	Name     string          `json:"name"`
	Template string          `json:"template"`
	Data     json.RawMessage `json:"data"`
}

type result struct {
	OK     bool   `json:"ok"`
	Output string `json:"output,omitempty"`
	Phase  string `json:"phase,omitempty"`
	Error  string `json:"error,omitempty"`
}

type limited struct {
	buf bytes.Buffer
}

var errTooLong = errors.New("output too long")

func (l *limited) Write(p []byte) (int, error) {
	if l.buf.Len()+len(p) > maxOutput {
		return 0, errTooLong
	}
	return l.buf.Write(p)
}

// convert turns json.Numbers into int (when integral and in range) or float64.
func convert(v interface{}) interface{} {
	switch x := v.(type) {
	case json.Number:
		s := string(x)
		if !strings.ContainsAny(s, ".eE") {
			if i, err := x.Int64(); err == nil {
				return int(i)
			}
		}
		f, _ := x.Float64()
		return f
	case []interface{}:
		for i := range x {
			x[i] = convert(x[i])
		}
		return x
	case map[string]interface{}:
		for k := range x {
			x[k] = convert(x[k])
		}
		return x
	default:
		return v
	}
}

func run(in input) (res result) {
	defer func() {
		if r := recover(); r != nil {
			res = result{Phase: "panic", Error: fmt.Sprint(r)}
		}
	}()
	name := in.Name
	if name == "" {
		name = "t"
	}
	var data interface{}
	if len(in.Data) > 0 {
		dec := json.NewDecoder(bytes.NewReader(in.Data))
		dec.UseNumber()
		if err := dec.Decode(&data); err != nil {
			return result{Phase: "data", Error: err.Error()}
		}
		data = convert(data)
	}
	t, err := template.New(name).Funcs(sprig.TxtFuncMap()).Parse(in.Template)
	if err != nil {
		return result{Phase: "parse", Error: err.Error()}
	}
	var out limited
	if err := t.Execute(&out, data); err != nil {
		return result{Phase: "exec", Error: err.Error()}
	}
	return result{OK: true, Output: out.buf.String()}
}

func main() {
	// A map that holds itself (sprig's `set` can build one) sends fmt into endless recursion; Go
	// then dies of a stack overflow. Keep the stack small so that it dies in milliseconds, not after
	// growing to a gigabyte (the caller restarts the judge after the case).
	debug.SetMaxStack(16 << 20)
	if len(os.Args) > 1 && os.Args[1] == "-funcs" {
		fm := sprig.TxtFuncMap()
		names := make([]string, 0, len(fm))
		for n := range fm {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			fmt.Printf("%s\t%s\n", n, reflect.TypeOf(fm[n]))
		}
		return
	}
	r := bufio.NewReaderSize(os.Stdin, 1<<20)
	w := bufio.NewWriterSize(os.Stdout, 1<<20)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	for {
		line, err := r.ReadBytes('\n')
		if len(bytes.TrimSpace(line)) > 0 {
			var in input
			var res result
			if jerr := json.Unmarshal(line, &in); jerr != nil {
				res = result{Phase: "input", Error: jerr.Error()}
			} else {
				done := make(chan result, 1)
				go func() { done <- run(in) }()
				select {
				case res = <-done:
				case <-time.After(caseTimeout):
					w.Flush()
					fmt.Fprintln(os.Stderr, "gotemplate: a case ran longer than", caseTimeout)
					os.Exit(3)
				}
			}
			if eerr := enc.Encode(res); eerr != nil {
				fmt.Fprintln(os.Stderr, "gotemplate:", eerr)
				os.Exit(1)
			}
			// Written at once: when a later case kills the process, the answers so far tell the
			// caller which case did.
			w.Flush()
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "gotemplate:", err)
			os.Exit(1)
		}
	}
	w.Flush()
}
