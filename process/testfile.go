package process

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
)

// The format of sluice test files (sluice test; sluice.example.test.yaml).

// TestFile is what a test file says besides its cases: Config, a config
// file relative to it (else its own process: section is tested), and Now,
// the time now() returns (RFC 3339; empty: the clock).
type TestFile struct {
	Config string `yaml:"config"`
	Now    string `yaml:"now"`
}

type testCase struct {
	Name    string       `yaml:"name"`
	Subject string       `yaml:"subject"`
	Input   string       `yaml:"input"`
	Expect  []testExpect `yaml:"expect"`
}

type testExpect struct {
	Key        *string  `yaml:"key"`
	Output     *string  `yaml:"output"`
	Where      []string `yaml:"where"`
	Drop       bool     `yaml:"drop"`
	DeadLetter *struct {
		Reason string `yaml:"reason"`
		Rule   string `yaml:"rule"`
		Step   *int   `yaml:"step"`
	} `yaml:"dead_letter"`
}

// ParseTestFile reads a test file's header and its cases, each with its
// line; errors name the file and line.
func ParseTestFile(path string, data []byte) (TestFile, []LineCase, error) {
	var tf TestFile
	f, err := parser.ParseBytes(data, 0)
	if err != nil {
		return tf, nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := yaml.Unmarshal(data, &tf); err != nil {
		return tf, nil, fmt.Errorf("%s: %w", path, err)
	}
	cases, err := testCases(path, f)
	return tf, cases, err
}

// RunFile runs cases through p and prints each failure, with the file and
// line of its case and where the output first differs, and a summary line.
// It reports whether every case passed.
func (p *Processor) RunFile(w io.Writer, path string, cases []LineCase) bool {
	failed := 0
	for _, tc := range cases {
		fails := p.Run(tc.Case)
		if len(fails) == 0 {
			continue
		}
		failed++
		fmt.Fprintf(w, "--- FAIL: %s:%d: %s\n", path, tc.Line, tc.Name)
		for _, fl := range fails {
			what := fmt.Sprintf("record %d", fl.Record)
			if fl.Record < 0 {
				what = "the message"
			}
			fmt.Fprintf(w, "    %s:\n      want %s\n      got  %s\n", what, fl.Want, fl.Got)
			if i := firstDiff(fl.Want, fl.Got); i >= 0 && strings.HasPrefix(fl.Want, "output ") && !strings.HasPrefix(fl.Want, "output where ") && strings.HasPrefix(fl.Got, "output ") {
				fmt.Fprintf(w, "           %s^ differs from byte %d\n", strings.Repeat(" ", i), i-len("output "))
			}
		}
	}
	if failed > 0 {
		fmt.Fprintf(w, "FAIL %s: %d of %d cases failed\n", path, failed, len(cases))
		return false
	}
	fmt.Fprintf(w, "ok   %s: %d cases\n", path, len(cases))
	return true
}

func firstDiff(a, b string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	if len(a) != len(b) {
		return min(len(a), len(b))
	}
	return -1
}

// LineCase is one case of a test file with the line it starts on.
type LineCase struct {
	Case
	Line int
}

// testCases decodes the tests: list, keeping each case's line.
func testCases(path string, f *ast.File) ([]LineCase, error) {
	var seq *ast.SequenceNode
	for _, doc := range f.Docs {
		m, ok := doc.Body.(*ast.MappingNode)
		if !ok {
			continue
		}
		for _, mv := range m.Values {
			if mv.Key.String() == "tests" {
				if s, ok := mv.Value.(*ast.SequenceNode); ok {
					seq = s
				}
			}
		}
	}
	if seq == nil || len(seq.Values) == 0 {
		return nil, fmt.Errorf("%s: no tests: list of cases", path)
	}
	var out []LineCase
	var errs []error
	for i, item := range seq.Values {
		line := item.GetToken().Position.Line
		var tc testCase
		if err := yaml.NodeToValue(item, &tc, yaml.Strict()); err != nil {
			errs = append(errs, fmt.Errorf("%s:%d: tests[%d]: %v", path, line, i, err))
			continue
		}
		c := Case{Name: tc.Name, Subject: tc.Subject, Input: []byte(tc.Input)}
		if c.Name == "" {
			c.Name = fmt.Sprintf("tests[%d]", i)
		}
		for j, e := range tc.Expect {
			x := Expect{Key: e.Key, Output: e.Output, Where: e.Where, Drop: e.Drop}
			n := 0
			for _, set := range []bool{e.Output != nil, len(e.Where) > 0, e.Drop, e.DeadLetter != nil} {
				if set {
					n++
				}
			}
			if n != 1 {
				errs = append(errs, fmt.Errorf("%s:%d: tests[%d].expect[%d]: want exactly one of output, where, drop, dead_letter", path, line, i, j))
			}
			if d := e.DeadLetter; d != nil {
				x.DeadLetter = &DeadLetterExpect{Reason: d.Reason, Rule: d.Rule, Step: d.Step}
			}
			c.Expect = append(c.Expect, x)
		}
		out = append(out, LineCase{Case: c, Line: line})
	}
	return out, errors.Join(errs...)
}
