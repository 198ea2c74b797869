package process_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/sluice-dev/sluice/process"
)

func TestValidator_Process(t *testing.T) {
	for _, tc := range []struct {
		in      string
		wantErr string // "" means valid
	}{
		{in: `{"a":1}`},
		{in: `[1,2,3]`},
		{in: `"str"`},
		{in: `{"a":1`, wantErr: "unexpected end of JSON input"},
		{in: `{"a":1}{"b":2}`, wantErr: "invalid character '{' after top-level value"},
		{in: `not json`, wantErr: "invalid character 'o' in literal null"},
		{in: `{"a":tru}`, wantErr: "invalid character '}'"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			out, err := process.Validator{}.Process([]byte(tc.in))
			if tc.wantErr == "" {
				if err != nil || string(out) != tc.in {
					t.Fatalf("Process(%q) = %q, %v; want it unchanged", tc.in, out, err)
				}
				return
			}
			if !errors.Is(err, process.ErrInvalidJSON) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Process(%q) err = %v; want ErrInvalidJSON mentioning %q", tc.in, err, tc.wantErr)
			}
			if out != nil {
				t.Fatalf("Process(%q) out = %q, want nil on error", tc.in, out)
			}
		})
	}
}

type dropper struct{}

func (dropper) Process([]byte) ([]byte, error) { return nil, nil }

type upper struct{}

func (upper) Process(b []byte) ([]byte, error) { return []byte(strings.ToUpper(string(b))), nil }

func TestChain_Process(t *testing.T) {
	out, err := process.Chain{process.Validator{}, upper{}}.Process([]byte(`"ab"`))
	if err != nil || string(out) != `"AB"` {
		t.Fatalf("chain = %q, %v", out, err)
	}
	out, err = process.Chain{dropper{}, upper{}}.Process([]byte(`"ab"`))
	if err != nil || out != nil {
		t.Fatalf("dropping chain = %q, %v; want nil, nil", out, err)
	}
	if _, err := (process.Chain{process.Validator{}, upper{}}).Process([]byte(`{`)); !errors.Is(err, process.ErrInvalidJSON) {
		t.Fatalf("chain err = %v", err)
	}
}

func BenchmarkValidator(b *testing.B) {
	rec := []byte(`{"id":"r1-42","run":"r1","seq":42,"key":"k3","ts":1732460000123456789,"user":{"name":"ada","age":42},"amount":12.5,"tags":["a","b"],"ok":true,"pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}`)
	b.SetBytes(int64(len(rec)))
	for b.Loop() {
		if _, err := (process.Validator{}).Process(rec); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzValidator checks that the fast validator agrees with encoding/json on
// every input: a record it accepts must be one valid JSON value, and one it
// rejects must be invalid.
func FuzzValidator(f *testing.F) {
	for _, s := range []string{`{"a":1}`, `[1,2,3]`, `"str"`, `{"a":1`, `{"a":1}{"b":2}`, `not json`,
		`{"a":tru}`, ` {"a" : [1, 2.5e-3, null, true, false, "x\u00e9\n"]} `, `"\ud800"`, "\"\xff\"", `1e`, `-0`, `01`,
		`{"a":"b",}`, `[1,]`, `{"a" "b"}`, "\"a\tb\"", `{"\u0000":1}`, `1.`, `.5`, `[[[[[]]]]]`, ``, ` `} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		_, err := process.Validator{}.Process(b)
		if got, want := err == nil, json.Valid(b); got != want {
			t.Fatalf("Validator accepts %q = %v, encoding/json.Valid = %v", b, got, want)
		}
	})
}
