package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluice-dev/sluice/load"
	"github.com/sluice-dev/sluice/obs"
)

// loadOptions are sluice load's flags.
type loadOptions struct {
	load.RunOptions
	json bool
}

func newLoadCmd(g *globals) *cobra.Command {
	var o loadOptions
	cmd := &cobra.Command{
		Use:   "load [flags]",
		Short: "Publish realistic JSON records to the queue and verify that all of them came out",
		Long: `load publishes numbered JSON records (see the load package for the format) to
a NATS JetStream subject: by default to the embedded server of a 'sluice run'
on this machine. Several publishers publish asynchronously, each with a
bounded number of unacknowledged publishes, at --rate records per second or
as fast as the server acknowledges, for --count records or for --duration
(10s by default when --count is not given; --duration 0 without --count runs
until Ctrl-C).

Verification (--verify DIR) reads the reference drainer's output directory:
start the drainer with 'sluice drain --out DIR', and give load the same DIR.
load follows the files while it publishes, waits up to --wait after the last
publish for stragglers, reads them a last time, and reports what it
published, received, lost (with the first ids), duplicated and saw out of
order per key. It exits 1 if any valid record published in this run is
missing (or, with --fail-on-dup, duplicated). What DIR holds when load starts
is skipped, and records of other runs are ignored. Records made invalid with --invalid must not arrive: sluice sends
them to the dead-letter subject.

Latency is measured from publish to seen: from the moment a record's queue
message was published (the record's "ts") to the moment load read the
record's line back from DIR (DIR is read every 50 ms, so that is the
resolution). It includes the queue, sluice's processing and batching, the
socket, the drainer's write, and up to one read interval.

With --verify and no --count, the run stops at most at an upper bound of the
records the verifier was sized for (rate x duration, or 5M records/s x
duration with no --rate; at most 200M).

Output: a progress line while running (a progress bar when stdout is a
terminal; otherwise a plain line every 5 s), then a summary table. --json
prints one JSON object instead (the generator's result and the verifier's
report) and nothing else on stdout. --report FILE.html writes a
self-contained page with charts of throughput and latency per second, the
sink's reconnects marked (read from sluice's --metrics-url every second; if
it cannot be read there are no markers).`,
		Example: `  sluice drain --out /tmp/out &
  sluice run &
  sluice load --rate 20000 --duration 30s --verify /tmp/out --report load.html`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("duration") && o.Gen.Count > 0 {
				o.Gen.Duration = 0
			}
			logger, err := obs.NewLogger(g.stderr, cmp.Or(g.logFormat, "text"), cmp.Or(g.logLevel, "info"))
			if err != nil {
				return usageError{err}
			}
			// The embedded server of a sluice run here asks for its token
			// (queue.auth): read it as sluice run would find it.
			cfg, err := g.loadConfigOnly(cmd.Flags(), nil)
			if err != nil {
				return err
			}
			if o.Token, err = clientToken(cfg, o.URL); err != nil {
				return err
			}
			ctx, stop := signalContext(logger)
			defer stop()
			return authHint(runLoad(ctx, g.stdout, g.stderr, o), cfg, o.Token)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.URL, "url", "nats://127.0.0.1:4222", "NATS server URL(s), comma-separated; user:password@ or a token@ in the URL for authentication")
	f.StringVar(&o.Gen.Subject, "subject", load.DefaultSubject, "subject to publish to (a stream must capture it)")
	f.Float64Var(&o.Gen.Rate, "rate", 0, "records per second over all publishers; 0 = as fast as possible")
	f.Int64Var(&o.Gen.Count, "count", 0, "records to publish; 0 = until --duration")
	f.DurationVar(&o.Gen.Duration, "duration", 10*time.Second, "publish for this long (ignored when --count is given without it); 0 = until --count or Ctrl-C")
	f.IntVar(&o.Gen.Publishers, "publishers", load.DefaultPublishers, "publishing goroutines")
	f.IntVar(&o.Gen.MaxPending, "max-pending", load.DefaultMaxPending, "unacknowledged async publishes per publisher")
	f.IntVar(&o.Gen.PerMessage, "per-message", load.DefaultPerMessage, "records per queue message (newline-separated)")
	f.IntVar(&o.Gen.RecordSize, "size", load.DefaultRecordSize, "mean record size in bytes")
	f.IntVar(&o.Gen.SizeSpread, "size-spread", 0, "record sizes are uniform in size ± spread")
	f.IntVar(&o.Gen.Keys, "keys", load.DefaultKeys, "partition keys, for the per-key order check")
	f.Float64Var(&o.Gen.Invalid, "invalid", 0, "fraction of records made invalid JSON, in [0, 1] (bound for the dead-letter subject)")
	f.StringVar(&o.Gen.RunID, "run-id", "", "run id carried by every record ([A-Za-z0-9_.:-]); default random")
	f.StringVar(&o.Verify, "verify", "", "verify against the drainer's output directory DIR ('sluice drain --out DIR')")
	f.DurationVar(&o.Wait, "wait", 30*time.Second, "with --verify: how long after publishing ends to wait for missing records")
	f.BoolVar(&o.FailOnDup, "fail-on-dup", false, "with --verify: exit 1 on duplicates too")
	f.BoolVar(&o.json, "json", false, "print one JSON object (generator result and verifier report) and nothing else on stdout")
	f.StringVar(&o.Report, "report", "", "write an HTML report with throughput and latency charts to this file")
	f.StringVar(&o.MetricsURL, "metrics-url", "http://127.0.0.1:9464/metrics", "sluice's metrics endpoint, scraped every second for reconnects; \"\" = do not scrape")
	return cmd
}

// runLoad is sluice load: load.Run, then the summary or the JSON on stdout.
// It returns exitCodeError{1} when verification fails, after printing.
func runLoad(ctx context.Context, stdout, stderr io.Writer, o loadOptions) error {
	if err := o.Gen.WithDefaults().Validate(); err != nil {
		return usageError{err}
	}
	if o.Wait < 0 {
		return usageError{fmt.Errorf("--wait %v < 0", o.Wait)}
	}
	if fi, err := os.Stat(o.Verify); o.Verify != "" && (err != nil || !fi.IsDir()) {
		return usageError{fmt.Errorf("--verify %s: not a directory (start the drainer with 'sluice drain --out %s' first)", o.Verify, o.Verify)}
	}
	o.Progress, o.BarOnly = stdout, false
	if o.json {
		o.Progress, o.BarOnly = stderr, true
	}
	out, err := load.Run(ctx, o.RunOptions)
	switch {
	case errors.Is(err, load.ErrNoStream):
		return fmt.Errorf("%w: is 'sluice run' running with queue.subjects covering it?", err)
	case errors.Is(err, load.ErrBadOptions):
		return usageError{err}
	case err != nil:
		return err
	}
	if o.json {
		if err := out.WriteJSON(stdout); err != nil {
			return err
		}
	} else {
		out.WriteSummary(stdout)
	}
	if res := out.Generator; res.Failed > 0 {
		fmt.Fprintf(stderr, "sluice load: warning: %d records were never acknowledged by the queue (last error: %s)\n", res.Failed, res.LastError)
	}
	if !out.OK {
		return exitCodeError{exitError}
	}
	return nil
}
