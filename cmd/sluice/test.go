package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
	"github.com/spf13/cobra"

	"github.com/sluice-dev/sluice/config"
	"github.com/sluice-dev/sluice/process"
)

func newTestCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "test FILE...",
		Short: "Run unit tests of a processing config (exit 1 on any failure)",
		Long: `test runs the cases of each test FILE through the JSON gate and the
processing steps, without a queue or a drainer, and prints a diff for each
case that fails. It exits 0 when every case passes and 1 otherwise.

A test file holds either a process: section (the steps, as in a config
file, and optionally pipeline: order_by) or config: PATH (a config file, relative to the test file, whose
process section is tested), an optional now: time (RFC 3339) that now()
returns, and tests: a list of cases:

  tests:
    - name: a click is kept and shaped
      subject: ingest.web              # default ingest.test
      input: |                         # the message: one record a line
        {"event":"click","user":"ada","amount":3}
      expect:                          # one entry per record, in order
        - output: '{"event":"click","user":"ADA","amount":3}'   # exact bytes
    - name: the others
      input: |
        {"event":"drop"}
        {"event":"e","user":"bo","amount":-1}
        {"event":"e","user":"bo","password":"x"}
      expect:
        - drop: true
        - dead_letter: {reason: negative amount, step: 4}   # also rule:
        - where: ['user == "BO"', 'password == nil']        # expressions
          key: bo    # with pipeline.order_by: the record's ordering key

See sluice.example.test.yaml.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, files []string) error {
			failed := false
			for _, f := range files {
				ok, err := runTestFile(g.stdout, f)
				if err != nil {
					fmt.Fprintln(g.stderr, err)
					return exitCodeError{exitError}
				}
				failed = failed || !ok
			}
			if failed {
				return exitCodeError{exitError}
			}
			return nil
		},
	}
}

type testFile struct {
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

// runTestFile runs the cases of one test file, printing each failure with
// its file and line and a summary; ok is false when a case failed. An
// error is a file that cannot be read or holds no valid configuration.
func runTestFile(w io.Writer, path string) (ok bool, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return false, fmt.Errorf("read test file: %w", err)
	}
	f, err := parser.ParseBytes(data, 0)
	if err != nil {
		return false, fmt.Errorf("%s: %w", path, err)
	}
	var tf testFile
	if err := yaml.Unmarshal(data, &tf); err != nil {
		return false, fmt.Errorf("%s: %w", path, err)
	}
	var cfg *config.Config
	if tf.Config != "" {
		cfg, err = config.Load(filepath.Join(filepath.Dir(path), tf.Config))
	} else {
		cfg, err = config.LoadIgnoring(path, "tests", "config", "now")
	}
	if err != nil {
		return false, err
	}
	opts := processOptions(cfg)
	if tf.Now != "" {
		t, err := time.Parse(time.RFC3339Nano, tf.Now)
		if err != nil {
			return false, fmt.Errorf("%s: now: %w (want RFC 3339, like 2026-01-02T15:04:05Z)", path, err)
		}
		opts.Now = func() time.Time { return t }
	}
	if _, err := newProcessor(cfg); err != nil {
		return false, err
	}
	proc, err := process.New(opts)
	if err != nil {
		return false, err
	}
	cases, err := testCases(path, f)
	if err != nil {
		return false, err
	}
	failed := 0
	for _, tc := range cases {
		fails := proc.Run(tc.c)
		if len(fails) == 0 {
			continue
		}
		failed++
		fmt.Fprintf(w, "--- FAIL: %s:%d: %s\n", path, tc.line, tc.c.Name)
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
		return false, nil
	}
	fmt.Fprintf(w, "ok   %s: %d cases\n", path, len(cases))
	return true, nil
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

type lineCase struct {
	c    process.Case
	line int
}

// testCases decodes the tests: list, keeping each case's line.
func testCases(path string, f *ast.File) ([]lineCase, error) {
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
	var out []lineCase
	var errs []error
	for i, item := range seq.Values {
		line := item.GetToken().Position.Line
		var tc testCase
		if err := yaml.NodeToValue(item, &tc, yaml.Strict()); err != nil {
			errs = append(errs, fmt.Errorf("%s:%d: tests[%d]: %v", path, line, i, err))
			continue
		}
		c := process.Case{Name: tc.Name, Subject: tc.Subject, Input: []byte(tc.Input)}
		if c.Name == "" {
			c.Name = fmt.Sprintf("tests[%d]", i)
		}
		for j, e := range tc.Expect {
			x := process.Expect{Key: e.Key, Output: e.Output, Where: e.Where, Drop: e.Drop}
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
				x.DeadLetter = &process.DeadLetterExpect{Reason: d.Reason, Rule: d.Rule, Step: d.Step}
			}
			c.Expect = append(c.Expect, x)
		}
		out = append(out, lineCase{c: c, line: line})
	}
	return out, errors.Join(errs...)
}
