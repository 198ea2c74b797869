package main

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluice-dev/sluice/perf"
)

func newChaosCmd(g *globals) *cobra.Command {
	var (
		o      perf.ChaosOptions
		verify string
	)
	cmd := &cobra.Command{
		Use:   "chaos [--rounds N] [--seed S] [--targets LIST]",
		Short: "Kill -9 the drainer, sluice run, both and the NATS server under load; count every record",
		Long: `chaos starts a NATS JetStream server (its store on disk), sluice run and
sluice drain in acked framing, all as child processes of this binary on
loopback and Unix sockets in a temporary directory, and a producer that
publishes numbered records and waits for the queue's acknowledgements
(retrying a failed publish with the same Nats-Msg-Id).

For each target (drainer, run, both, nats) it starts a new producer run and,
--rounds times, waits a random moment (--min-gap to --max-gap after the last
restart, drawn from --seed), SIGKILLs the target and restarts it, printing one
line per round: the moment, the records acknowledged so far, the restart time.
Then it stops producing and waits (at most --settle) until the drainer's
committed output holds every acknowledged record.

At the end it stops every process with SIGTERM and verifies independently:
it reads the records the drainer committed (its files, as its journal cuts
them, not its counters) and counts each acknowledged id. A record whose
publish was never acknowledged is not expected, but may appear at most once.
It prints "lost N duplicated M" and exits 1 on any loss or duplicate. The
directory (logs, store, output, chaos.json) is kept when the run fails, or
with --keep; --verify DIR counts a kept directory again.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var res perf.ChaosResult
			var err error
			if verify != "" {
				res, err = perf.VerifyChaosDir(verify)
			} else {
				o.Exe, err = selfExe()
				if err != nil {
					return fmt.Errorf("chaos: find own executable to start the children: %w", err)
				}
				o.Log = g.stdout
				ctx, stop := signalContext(slog.New(slog.NewTextHandler(g.stderr, nil)))
				defer stop()
				res, err = perf.Chaos(ctx, o)
			}
			if errors.Is(err, perf.ErrBadOptions) {
				return usageError{err}
			}
			if len(res.Phases) > 0 {
				res.WriteSummary(g.stdout)
			}
			if err != nil {
				return err
			}
			if !res.OK() {
				return exitCodeError{exitError}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.Rounds, "rounds", 3, "kills of each target")
	f.Uint64Var(&o.Seed, "seed", 0, "seed of the kill moments (0: from the clock; the run prints it)")
	f.StringSliceVar(&o.Targets, "targets", perf.ChaosTargets, "targets, in order: drainer, run, both, nats")
	f.DurationVar(&o.MinGap, "min-gap", 200*time.Millisecond, "shortest wait from a restart to the next kill")
	f.DurationVar(&o.MaxGap, "max-gap", 1200*time.Millisecond, "longest wait from a restart to the next kill")
	f.Float64Var(&o.Rate, "rate", 2000, "records per second published")
	f.IntVar(&o.PerMessage, "per-message", 10, "records per queue message")
	f.DurationVar(&o.Settle, "settle", time.Minute, "per target, longest wait after producing stops for every acknowledged record")
	f.StringVar(&o.NATSSync, "nats-sync", "always", `the NATS server's store sync: "always" (fsync before acknowledging a publish) or an interval such as 1s`)
	f.StringVar(&o.Dir, "dir", "", "where to make the run's temporary directory (default: the system's temporary directory)")
	f.BoolVar(&o.Keep, "keep", false, "keep the run's directory even when it passed")
	f.StringVar(&verify, "verify", "", "count the kept chaos directory DIR again instead of running")
	return cmd
}

// newChaosNATSCmd is the NATS server process of sluice chaos, so that it
// can be killed apart from sluice run.
func newChaosNATSCmd(g *globals) *cobra.Command {
	var dataDir, listen, sync string
	cmd := &cobra.Command{
		Use:    "chaos-nats --data-dir DIR --listen HOST:PORT [--sync always|INTERVAL]",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			logger := slog.New(slog.NewJSONHandler(g.stderr, nil))
			ctx, stop := signalContext(logger)
			defer stop()
			return perf.ServeNATS(ctx, dataDir, listen, sync, logger)
		},
	}
	f := cmd.Flags()
	f.StringVar(&dataDir, "data-dir", "", "the server's store")
	f.StringVar(&listen, "listen", "", "client address, host:port")
	f.StringVar(&sync, "sync", "always", `"always" or a sync interval`)
	_ = cmd.MarkFlagRequired("data-dir")
	_ = cmd.MarkFlagRequired("listen")
	return cmd
}
