package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

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

// runTestFile runs the cases of one test file, printing each failure with
// its file and line and a summary; ok is false when a case failed. An
// error is a file that cannot be read or holds no valid configuration.
func runTestFile(w io.Writer, path string) (ok bool, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return false, fmt.Errorf("read test file: %w", err)
	}
	tf, cases, err := process.ParseTestFile(path, data)
	if err != nil {
		return false, err
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
	return proc.RunFile(w, path, cases), nil
}
