package process_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/expr-lang/expr"

	"github.com/sluice-dev/sluice/pipeline"
	"github.com/sluice-dev/sluice/process"
	"github.com/sluice-dev/sluice/record"
)

// run processes rec with p's worker and returns the output (nil: dropped)
// and the rejection.
func run(t testing.TB, w pipeline.Worker, subject, rec string) (string, *pipeline.Rejection, bool) {
	t.Helper()
	out, _, err := w.Process(pipeline.Input{Subject: subject, ID: record.ID{Stream: "S", Seq: 1}, Data: []byte(rec)}, nil)
	if err != nil {
		var rej *pipeline.Rejection
		if !errors.As(err, &rej) {
			t.Fatalf("Process(%q) error %v is not a *pipeline.Rejection", rec, err)
		}
		return "", rej, false
	}
	return string(out), nil, out != nil
}

func TestValidator_Gate(t *testing.T) {
	for _, tc := range []struct {
		in     string
		rule   string // "" means valid
		offset int
	}{
		{in: `{"a":1}`},
		{in: `[1,2,3]`},
		{in: `"str"`},
		{in: " {\"a\" : [1, 2.5e-3, null, true, false, \"x\\u00e9\\n\"]}\r"},
		{in: `"\ud83d\ude00"`},
		{in: `"é😀"`},
		{in: `1e-400`},
		{in: `{"a":1`, rule: process.RuleSyntax, offset: 6},
		{in: `{"a":1}{"b":2}`, rule: process.RuleTrailingData, offset: 7},
		{in: `{"a":1} x`, rule: process.RuleTrailingData, offset: 8},
		{in: `not json`, rule: process.RuleSyntax, offset: 1},
		{in: `{"a":tru}`, rule: process.RuleSyntax, offset: 8},
		{in: "\"a\xffb\"", rule: process.RuleInvalidUTF8, offset: 2},
		{in: "\"\xed\xa0\x80\"", rule: process.RuleInvalidUTF8, offset: 1}, // a surrogate encoded in UTF-8
		{in: "\"\xc0\xaf\"", rule: process.RuleInvalidUTF8, offset: 1},     // overlong
		{in: `"\ud800"`, rule: process.RuleLoneSurrogate, offset: 1},
		{in: `{"k":"x\udc00"}`, rule: process.RuleLoneSurrogate, offset: 7},
		{in: `"\ud800\u0041"`, rule: process.RuleLoneSurrogate, offset: 1},
		{in: "{\"a\":\"\x00\"}", rule: process.RuleNUL, offset: 6},
		{in: "{\"a\":1}\x00", rule: process.RuleNUL, offset: 7},
		{in: "\"a\tb\"", rule: process.RuleControlChar, offset: 2},
		{in: "\xef\xbb\xbf{}", rule: process.RuleBOM, offset: 0},
		{in: " \r\n", rule: process.RuleEmpty, offset: 3},
		{in: `1e400`, rule: process.RuleNumberRange, offset: 0},
		{in: `[-1e309]`, rule: process.RuleNumberRange, offset: 1},
		{in: `01`, rule: process.RuleTrailingData, offset: 1},
		{in: `{"a":"b",}`, rule: process.RuleSyntax, offset: 9},
		{in: `[1,]`, rule: process.RuleSyntax, offset: 3},
		{in: strings.Repeat("[", 65) + strings.Repeat("]", 65), rule: process.RuleMaxDepth, offset: 64},
		{in: strings.Repeat("[", 64) + strings.Repeat("]", 64)},
	} {
		t.Run(tc.in, func(t *testing.T) {
			out, rej, _ := run(t, process.Validator{}.NewWorker(), "s", tc.in)
			if tc.rule == "" {
				if rej != nil || out != strings.Trim(tc.in, " \r\n\t") {
					t.Fatalf("Process(%q) = %q, %v; want it unchanged", tc.in, out, rej)
				}
				return
			}
			if rej == nil {
				t.Fatalf("Process(%q) = %q, want rule %s", tc.in, out, tc.rule)
			}
			if rej.Rule != tc.rule || rej.Reason != tc.rule || rej.Offset != tc.offset || rej.Step != -1 {
				t.Fatalf("Process(%q) rejected with %+v; want rule %s at byte %d", tc.in, *rej, tc.rule, tc.offset)
			}
			if !strings.Contains(rej.Error(), tc.rule) || !strings.Contains(rej.Error(), "byte") {
				t.Fatalf("reason %q does not name the rule and the offset", rej.Error())
			}
		})
	}
}

func TestProcessor_Limits(t *testing.T) {
	p, err := process.New(process.Options{MaxRecordBytes: 10, MaxMessageBytes: 20, MaxDepth: 2})
	if err != nil {
		t.Fatal(err)
	}
	w := p.NewWorker()
	if _, rej, _ := run(t, w, "s", `{"a":"0123456789"}`); rej == nil || rej.Rule != process.RuleMaxRecordBytes {
		t.Fatalf("long record: %+v", rej)
	}
	if _, rej, _ := run(t, w, "s", `[[[]]]`); rej == nil || rej.Rule != process.RuleMaxDepth || rej.Offset != 2 {
		t.Fatalf("deep record: %+v", rej)
	}
	var rej *pipeline.Rejection
	if err := p.CheckMessage(make([]byte, 21)); !errors.As(err, &rej) || rej.Rule != process.RuleMaxMessageBytes {
		t.Fatalf("long message: %v", err)
	}
	if err := p.CheckMessage(make([]byte, 20)); err != nil {
		t.Fatalf("message at the limit: %v", err)
	}
}

var fixedNow = time.Date(2026, 12, 2, 14, 0, 0, 123456789, time.UTC)

func newProc(t testing.TB, steps ...process.Step) pipeline.Worker {
	t.Helper()
	p, err := process.New(process.Options{Steps: steps, Now: func() time.Time { return fixedNow }})
	if err != nil {
		t.Fatal(err)
	}
	return p.NewWorker()
}

// issueSteps are the steps of the issue's example.
var issueSteps = []process.Step{
	{Filter: `event != "drop"`},
	{Set: []process.Assignment{{Path: "ingested_at", Expr: "now()"}, {Path: "user", Expr: "upper(user)"}, {Path: "geo.country", Expr: `lower(geo.country ?? "unknown")`}}},
	{Delete: []string{"password", "debug.trace"}},
	{Rename: []process.Renaming{{From: "usr", To: "user_name"}}},
	{Reject: &process.Reject{If: "amount < 0", Reason: "negative amount"}},
}

func TestProcessor_Steps(t *testing.T) {
	w := newProc(t, issueSteps...)
	for _, tc := range []struct {
		name, in, want string
		drop           bool
		step           int // a rejecting step, -1: none
		reason         string
	}{
		{name: "all", in: `{"event":"click","user":"ada","password":"x","geo":{"country":"FR","city":"Paris"},"debug":{"trace":"t","lvl":1},"usr":"a1","amount":3}`,
			want: `{"event":"click","user":"ADA","geo":{"country":"fr","city":"Paris"},"debug":{"lvl":1},"amount":3,"ingested_at":"2026-12-02T14:00:00.123456789Z","user_name":"a1"}`, step: -1},
		{name: "missing geo", in: `{"event":"v","user":"bo","amount":0}`,
			want: `{"event":"v","user":"BO","amount":0,"ingested_at":"2026-12-02T14:00:00.123456789Z","geo":{"country":"unknown"}}`, step: -1},
		{name: "drop", in: `{"event":"drop","user":"x"}`, drop: true, step: -1},
		{name: "reject", in: `{"event":"e","user":"x","amount":-1}`, step: 4, reason: "negative amount"},
		{name: "upper of a number", in: `{"event":"e","user":5}`, step: 1, reason: "upper"},
		{name: "geo not an object", in: `{"event":"e","user":"u","geo":7}`, step: 1, reason: "geo.country"},
		{name: "not an object", in: `[1]`, step: 1, reason: "not an object"},
		{name: "escaped key", in: `{"event":"e","us\u0065r":"x","amount":1}`,
			want: `{"event":"e","us\u0065r":"X","amount":1,"ingested_at":"2026-12-02T14:00:00.123456789Z","geo":{"country":"unknown"}}`, step: -1},
		{name: "duplicate keys, last wins", in: `{"event":"drop","event":"keep","user":"a","amount":1}`,
			want: `{"event":"drop","event":"keep","user":"A","amount":1,"ingested_at":"2026-12-02T14:00:00.123456789Z","geo":{"country":"unknown"}}`, step: -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, rej, kept := run(t, w, "ingest.x", tc.in)
			switch {
			case tc.step >= 0:
				if rej == nil || rej.Step != tc.step || !strings.Contains(rej.Msg, tc.reason) {
					t.Fatalf("got %q, %+v; want a rejection by step %d mentioning %q", out, rej, tc.step, tc.reason)
				}
			case tc.drop:
				if kept || rej != nil {
					t.Fatalf("got %q, %v; want a drop", out, rej)
				}
			default:
				if rej != nil || out != tc.want {
					t.Fatalf("got\n %s, %v\nwant\n %s", out, rej, tc.want)
				}
				if !json.Valid([]byte(out)) {
					t.Fatalf("output %s is not JSON", out)
				}
			}
		})
	}
}

// TestProcessor_Now: a set of now() writes what time.RFC3339Nano writes,
// in UTC.
func TestProcessor_Now(t *testing.T) {
	for _, now := range []time.Time{
		time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		time.Date(2026, 1, 2, 3, 4, 5, 120000000, time.FixedZone("x", 3600)),
		time.Date(2026, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Date(2026, 12, 31, 23, 59, 59, 1, time.UTC),
	} {
		p, err := process.New(process.Options{Steps: []process.Step{{Set: []process.Assignment{{Path: "t", Expr: "now()"}}}}, Now: func() time.Time { return now }})
		if err != nil {
			t.Fatal(err)
		}
		out, rej, _ := run(t, p.NewWorker(), "s", `{}`)
		if want := `{"t":"` + now.UTC().Format(time.RFC3339Nano) + `"}`; rej != nil || out != want {
			t.Errorf("now() = %s, %v; want %s", out, rej, want)
		}
	}
}

func TestProcessor_StepsSeeEarlierSteps(t *testing.T) {
	w := newProc(t,
		process.Step{Set: []process.Assignment{{Path: "n", Expr: "n * 2"}, {Path: "a.b", Expr: `"x"`}}},
		process.Step{Set: []process.Assignment{{Path: "m", Expr: "n + 1"}, {Path: "c", Expr: "a.b + subject"}}},
		process.Step{Rename: []process.Renaming{{From: "m", To: "z.m"}}},
		process.Step{Filter: "z.m == 21"},
	)
	out, rej, _ := run(t, w, "ingest.s", `{"n":10,"a":{}}`)
	if want := `{"n":20,"a":{"b":"x"},"c":"xingest.s","z":{"m":21}}`; rej != nil || out != want {
		t.Fatalf("got %s, %v; want %s", out, rej, want)
	}
}

// TestProcessor_OutputsStayValid: an output stays as it was while the
// worker processes more records into the same buffer, also when a step
// had to write the edits into the worker's scratch space first (a rename
// read by a later filter).
func TestProcessor_OutputsStayValid(t *testing.T) {
	w := newProc(t,
		process.Step{Rename: []process.Renaming{{From: "a", To: "b"}}},
		process.Step{Filter: "b != 0"},
	)
	var buf []byte
	var outs []string
	var got [][]byte
	for i := range 50 {
		out, nbuf, err := w.Process(pipeline.Input{Data: fmt.Appendf(nil, `{"a":%d,"pad":"%s"}`, i+1, strings.Repeat("x", i))}, buf)
		if err != nil {
			t.Fatal(err)
		}
		buf = nbuf
		got = append(got, out)
		outs = append(outs, string(out))
	}
	for i, o := range got {
		if want := fmt.Sprintf(`{"pad":"%s","b":%d}`, strings.Repeat("x", i), i+1); string(o) != want || outs[i] != want {
			t.Fatalf("output %d is now %s (was %s), want %s", i, o, outs[i], want)
		}
	}
}

func TestProcessor_RuntimeErrors(t *testing.T) {
	for _, tc := range []struct{ expr, in, want string }{
		{`amount / 0`, `{"amount":1}`, "division by zero"},
		{`amount % 0`, `{"amount":1}`, "integer divide by zero"},
		{`tags[5]`, `{"tags":[1]}`, "out of range"},
		{`missing.field + 1`, `{}`, "invalid operation"},
		{`len(map(1..10000000, # * 2))`, `{}`, "memory budget exceeded"}, // expr's run-time limit stays on
	} {
		w := newProc(t, process.Step{Set: []process.Assignment{{Path: "x", Expr: tc.expr}}})
		_, rej, _ := run(t, w, "s", tc.in)
		if rej == nil || rej.Step != 0 || rej.Reason != "step_error" || !strings.Contains(rej.Msg, tc.want) {
			t.Errorf("%s on %s: %+v; want a step_error mentioning %q", tc.expr, tc.in, rej, tc.want)
		}
	}
}

func TestNew_CompileErrors(t *testing.T) {
	for _, tc := range []struct {
		step process.Step
		want string
	}{
		{process.Step{Filter: `event == `}, `process.steps[1].filter: expression "event == " at 1:`},
		{process.Step{Set: []process.Assignment{{Path: "a", Expr: `uper(x)`}}}, `process.steps[1].set.a: expression "uper(x)" at 1:1: unknown name uper`},
		{process.Step{Reject: &process.Reject{If: "a > 1"}}, "process.steps[1].reject.reason"},
		{process.Step{Delete: []string{"a..b"}}, "empty part"},
		{process.Step{}, "exactly one of"},
		{process.Step{Filter: strings.Repeat("1+", 3000) + "1"}, "exceeds maximum allowed nodes"},
	} {
		_, err := process.New(process.Options{Steps: []process.Step{{Filter: "true"}, tc.step}})
		var ce *process.CompileError
		if !errors.As(err, &ce) || ce.Step != 1 || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v) = %v; want a CompileError of step 1 containing %q", tc.step, err, tc.want)
		}
	}
}

// FuzzProcess feeds anything to the gate and the issue's steps: nothing may
// panic, and whatever is delivered is valid UTF-8 JSON that encoding/json
// accepts, with a record the gate accepts.
func FuzzProcess(f *testing.F) {
	for _, s := range []string{`{"a":1}`, `[1,2,3]`, `"str"`, `{"a":1`, `{"a":1}{"b":2}`, `not json`,
		`{"a":tru}`, ` {"a" : [1, 2.5e-3, null, true, false, "x\u00e9\n"]} `, `"\ud800"`, "\"\xff\"", `1e`, `-0`, `01`,
		`{"a":"b",}`, `[1,]`, `{"a" "b"}`, "\"a\tb\"", `{"\u0000":1}`, `1.`, `.5`, `[[[[[]]]]]`, ``, ` `,
		`{"event":"click","user":"ada","geo":{"country":"FR"},"password":"p","usr":"u","amount":1}`} {
		f.Add([]byte(s))
	}
	addCorpus(f)
	p, err := process.New(process.Options{Steps: issueSteps})
	if err != nil {
		f.Fatal(err)
	}
	gateW, stepsW := process.Validator{}.NewWorker(), p.NewWorker()
	f.Fuzz(func(t *testing.T, b []byte) {
		in := pipeline.Input{Subject: "s", Data: b}
		out, _, err := gateW.Process(in, nil)
		var rej *pipeline.Rejection
		switch {
		case err == nil:
			checkStrict(t, b, out)
		case !errors.As(err, &rej):
			t.Fatalf("gate error %v is not a rejection", err)
		case json.Valid(b) && utf8.Valid(b):
			// encoding/json accepts it: only the rules it does not check
			// may refuse it.
			switch rej.Rule {
			case process.RuleLoneSurrogate, process.RuleMaxDepth, process.RuleNumberRange, process.RuleMaxRecordBytes:
			default:
				t.Fatalf("gate rejects %.200q (%v), which encoding/json accepts", b, err)
			}
		}
		out, _, err = stepsW.Process(in, nil)
		if err == nil && out != nil {
			checkStrict(t, b, out)
		}
	})
}

func checkStrict(t *testing.T, in, out []byte) {
	t.Helper()
	if !utf8.Valid(out) || !json.Valid(out) {
		t.Fatalf("input %.200q gave output %.200q, which is not valid UTF-8 JSON", in, out)
	}
	var v any
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("input %.200q gave output %.200q, which encoding/json refuses: %v", in, out, err)
	}
	w := process.Validator{}.NewWorker()
	if _, _, err := w.Process(pipeline.Input{Data: out}, nil); err != nil {
		t.Fatalf("input %.200q gave output %.200q, which the gate itself refuses: %v", in, out, err)
	}
}

// TestFilter_AgreesWithExpr: filters (some evaluated without the VM)
// decide as expr itself does on the decoded record.
func TestFilter_AgreesWithExpr(t *testing.T) {
	recs := []string{`{"a":"drop"}`, `{"a":"b"}`, `{"a":""}`, `{"a":3}`, `{"a":-1.5}`, `{"a":0}`, `{"a":true}`,
		`{"a":null}`, `{}`, `{"a":[1]}`, `{"a":{"x":1}}`, `{"a":9007199254740993}`, `{"a":9007199254740992}`}
	for _, src := range []string{`a == "drop"`, `a != "drop"`, `"drop" == a`, `a < "c"`, `a >= "b"`, `a < 0`, `0 > a`,
		`a <= 3`, `a == 3`, `a != 0`, `a > -1.5`, `-1.5 == a`, `a == 9007199254740993`, `a > 2.5 && a < 4`} {
		w := newProc(t, process.Step{Filter: src})
		for _, r := range recs {
			var env map[string]any
			if err := json.Unmarshal([]byte(r), &env); err != nil {
				t.Fatal(err)
			}
			for k, v := range env { // as the worker decodes: integers as int
				if f, ok := v.(float64); ok && f == float64(int(f)) && !strings.Contains(r, ".") {
					env[k] = int(f)
				}
			}
			if strings.Contains(r, "900719925474099") {
				n, _ := strconv.Atoi(r[5 : len(r)-1])
				env["a"] = n
			}
			want, werr := expr.Eval(src, env)
			_, rej, kept := run(t, w, "s", r)
			switch {
			case werr != nil || want == nil:
				if rej == nil {
					t.Errorf("%s on %s: kept=%v, want a step error (expr: %v, %v)", src, r, kept, want, werr)
				}
			case rej != nil:
				t.Errorf("%s on %s: rejected (%v), want %v", src, r, rej, want)
			case kept != want.(bool):
				t.Errorf("%s on %s: kept=%v, want %v", src, r, kept, want)
			}
		}
	}
}

// upper(field) and lower(field) have a path without the VM for ASCII
// strings without escapes; every record gives what the VM gives (the same
// expression written so that only the VM can run it), including the
// records that fall back: non-ASCII, escapes, other types, a missing field.
func TestSteps_CaseFastPathMatchesVM(t *testing.T) {
	fast := newProc(t, process.Step{Set: []process.Assignment{{Path: "u", Expr: "upper(user)"}, {Path: "l", Expr: "lower(geo.country)"}}})
	slow := newProc(t, process.Step{Set: []process.Assignment{{Path: "u", Expr: `upper(user + "")`}, {Path: "l", Expr: `lower(geo.country + "")`}}})
	for _, rec := range []string{
		`{"user":"alice","geo":{"country":"DE"}}`,
		`{"user":"lazy zebra AZ az","geo":{"country":"ZA za"}}`,
		`{"user":"Mixed Case 123!","geo":{"country":"Fr"}}`,
		`{"user":"straße","geo":{"country":"ÉIRE"}}`,
		`{"user":"a\u00e9b","geo":{"country":"X\"Y"}}`,
		`{"user":"","geo":{"country":""}}`,
		`{"user":7,"geo":{"country":"DE"}}`,
		`{"geo":{"country":"DE"}}`,
		`{"user":"bob","geo":"flat"}`,
		`{"user":"bob","user":"carol","geo":{"country":"DE"}}`,
	} {
		fo, frej, _ := run(t, fast, "s", rec)
		so, srej, _ := run(t, slow, "s", rec)
		if fo != so || (frej == nil) != (srej == nil) || frej != nil && frej.Rule != srej.Rule {
			t.Errorf("%s:\n fast path %q (%v)\n VM        %q (%v)", rec, fo, frej, so, srej)
		}
	}
}
