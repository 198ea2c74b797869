package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluice-dev/sluice/conformance"
)

func newConformanceCmd() *cobra.Command {
	var o conformance.Options
	var verbose bool
	cmd := &cobra.Command{
		Use:   "conformance --socket PATH [--exec 'COMMAND'] [--out PATH]",
		Short: "Check any drainer of the acked framing against the protocol, and print a pass/fail table",
		Long: `conformance connects to a drainer's Unix socket as sluice's sink would, and
as a broken peer would, and checks what docs/protocol.md asks of it: the
handshake variants and the rewind check, every malformed frame of the test
vectors (the drainer must close that connection with the documented code and
keep serving others), frame order and size limits, acknowledgement of a full
window, deduplication of re-sent records, several connections at once, and a
slow reader.

--out is where the drainer writes records, one per line: a file, or a
directory read whole. With it the suite checks that every acknowledged record
was written exactly once; without it those checks are skipped.

--exec starts the drainer itself (with /bin/sh -c), which adds the crash
checks: SIGKILL right after an ACK, in the middle of a frame and with frames
in flight, restart, re-send, and nothing acknowledged may be lost or written
twice. The suite stops the drainer at the end.

The records use a stream of their own ("conformance-<run id>"), so a run
leaves the drainer's other state alone (the rewind check leaves a refused
stream of that run behind, as a conforming drainer remembers it).

Exit status 1 when any check fails.`,
		Example: `  sluice conformance --socket ./d.sock --out ./d-out \
      --exec 'sluice drain --framing acked --socket ./d.sock --out ./d-out'
  sluice conformance --socket ./d.sock --out ./out.jsonl \
      --exec 'python3 clients/python/example_drainer.py ./d.sock ./out.jsonl'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if verbose {
				o.Log = cmd.ErrOrStderr()
			}
			rs, err := conformance.Run(cmd.Context(), o)
			if err != nil {
				return err
			}
			fmt.Fprint(cmd.OutOrStdout(), conformance.Table(rs))
			if conformance.Failed(rs) {
				return exitCodeError{exitError}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Socket, "socket", "", "the drainer's Unix socket (required)")
	f.StringVar(&o.Exec, "exec", "", "shell command that starts the drainer on --socket; enables the crash checks")
	f.StringVar(&o.Out, "out", "", "file or directory where the drainer writes records, one per line; enables the output checks")
	f.DurationVar(&o.Timeout, "timeout", 10*time.Second, "longest wait for any answer from the drainer")
	f.IntVar(&o.CrashRounds, "rounds", 3, "SIGKILL rounds of each crash check")
	f.BoolVarP(&verbose, "verbose", "v", false, "print progress and the drainer's output (with --exec) to stderr")
	_ = cmd.MarkFlagRequired("socket")
	return cmd
}
