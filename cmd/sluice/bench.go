package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime/pprof"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sluice-dev/sluice/perf"
)

func newBenchCmd(g *globals) *cobra.Command {
	var (
		o       perf.Options
		asJSON  bool
		saveDir string
		soak    perf.SoakOptions
		scale   bool
	)
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure sluice on this machine against the raw limits of its parts",
		Long: `bench measures, in one run on this machine, the raw limits sluice is built
on and sluice itself end to end, and prints a table with the median and the
range (min - max) over --reps repetitions:

  - a Unix stream socket between two processes (this binary re-executed as a
    reader), 64 KiB writes of 200-byte records: records/s and MB/s;
  - the embedded JetStream server as sluice configures it: async publish
    rate (4096 pending) and consume rate with sluice's ack policy
    (Fetch(500) and one Ack per message), one record per message;
  - sluice run and sluice drain as child processes, lines and acked framing,
    1 and 100 records per message, validate-only: the stream is preloaded
    first, then the time runs from the drainer's start until its files hold
    every record;
  - the RSS of the sluice run process: peak (VmHWM) and steady (median VmRSS
    while draining);

and the ratios of each sluice figure to the raw limits of the same
repetition, and where it stands against sluice's targets. A framing sluice
cannot start with is reported as n/a.

--records N sizes the runs: N records for the 100 rec/msg cases, N/5
messages for the 1 rec/msg cases and raw JetStream, 10N for the socket.
The defaults take about 2 minutes on 2 cores.

--scale measures 1, 2 and 3 sluice instances sharing one durable consumer
(each with its own drainer; the JetStream server in the bench process) and
prints each rate as a ratio to one instance and each instance's share of the
records.

--soak DURATION runs a soak test instead: a producer at --soak-rate, sluice
run and sluice drain for that long, sampling every second the RSS of both
processes, sluice's goroutines, the open descriptors of both, and the disk
used by the queue's data directory and the drainer's output. It prints one
line per sample and writes an HTML report with the plots (to --save, or
the current directory). It is not part of the normal test run.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			exe, err := selfExe()
			if err != nil {
				return fmt.Errorf("bench: find own executable: %w", err)
			}
			o.Exe = exe
			o.Progress = g.stderr
			ctx, stop := signalContext(slog.New(slog.NewTextHandler(g.stderr, nil)))
			defer stop()
			if scale {
				return runScale(ctx, g, exe, o)
			}
			if soak.Duration > 0 {
				soak.Exe, soak.Dir, soak.Progress = exe, o.Dir, g.stdout
				return runSoak(ctx, g, soak, saveDir)
			}
			rep, err := perf.Run(ctx, o)
			if err != nil {
				return err
			}
			rep.Command = "sluice " + strings.Join(os.Args[1:], " ")
			write := rep.WriteTable
			if asJSON {
				write = rep.WriteJSON
			}
			if err := write(g.stdout); err != nil {
				return err
			}
			if saveDir != "" {
				base, err := rep.Save(saveDir)
				if err != nil {
					return err
				}
				fmt.Fprintf(g.stderr, "saved %s.txt and .json\n", base)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.Records, "records", perf.DefaultRecords, "records for the 100 rec/msg runs (N/5 messages for 1 rec/msg and raw JetStream, 10N for the socket)")
	f.IntVar(&o.Reps, "reps", 3, "repetitions of every measurement")
	f.BoolVar(&asJSON, "json", false, "print the report as JSON instead of a table")
	f.StringVar(&saveDir, "save", "", "also write the table and the JSON to files named by date and machine in this directory (e.g. perf/results)")
	f.StringVar(&o.Dir, "dir", "", "directory for the runs' temporary files (default: the system's; keep it short for socket paths)")
	f.StringVar(&o.CPUProfileDir, "cpuprofile", "", "write a CPU profile of every sluice run and sluice drain child to this directory")
	f.BoolVar(&scale, "scale", false, "measure 1, 2 and 3 sluice instances sharing one consumer instead of the benchmark (acked, 10 rec/msg, --records/5 records)")
	f.DurationVar(&soak.Duration, "soak", 0, "run a soak test of this length instead of the benchmark (e.g. 60s)")
	f.Float64Var(&soak.Rate, "soak-rate", 20000, "soak: records per second")
	f.StringVar(&soak.Framing, "soak-framing", "acked", "soak: lines or acked")
	f.BoolVar(&soak.FreezeDrainer, "soak-freeze-drainer", false, "soak: SIGSTOP the drainer while the producer runs (SIGCONT at the end)")
	return cmd
}

// runScale measures 1, 2 and 3 instances on one consumer (perf.ScaleSeries).
func runScale(ctx context.Context, g *globals, exe string, o perf.Options) error {
	records := max(o.Records/5, 1000)
	if o.Records == 0 {
		records = perf.DefaultRecords / 5
	}
	return perf.ScaleSeries(ctx, g.stdout, exe, o.Dir, records)
}

// runSoak runs perf.Soak and writes its HTML report.
func runSoak(ctx context.Context, g *globals, o perf.SoakOptions, saveDir string) error {
	fmt.Fprintf(g.stdout, "soak: %s, %.0f records/s, %s framing\n", o.Duration, o.Rate, o.Framing)
	samples, err := perf.Soak(ctx, o)
	if err != nil {
		return err
	}
	path, err := perf.SaveSoakReport(saveDir, o, samples)
	if err != nil {
		return err
	}
	fmt.Fprintf(g.stderr, "wrote %s\n", path)
	return nil
}

// newBenchReaderCmd is the reader process of bench's raw socket measurement.
func newBenchReaderCmd(g *globals) *cobra.Command {
	var socket string
	cmd := &cobra.Command{
		Use:    "bench-reader --socket PATH",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			return perf.ServeSocketReader(socket, g.stdout)
		},
	}
	cmd.Flags().StringVar(&socket, "socket", "", "Unix socket to listen on")
	_ = cmd.MarkFlagRequired("socket")
	return cmd
}

// newBenchRunCmd is sluice run with a CPU profile, for bench --cpuprofile.
func newBenchRunCmd(g *globals) *cobra.Command {
	return withCPUProfile(newRunCmd(g), "bench-run --cpuprofile FILE [run flags]")
}

// newBenchDrainCmd is sluice drain with a CPU profile, for bench --cpuprofile.
func newBenchDrainCmd(g *globals) *cobra.Command {
	return withCPUProfile(newDrainCmd(g), "bench-drain --cpuprofile FILE [drain flags]")
}

// withCPUProfile makes cmd a hidden command named by use that writes a CPU
// profile of its run to --cpuprofile.
func withCPUProfile(cmd *cobra.Command, use string) *cobra.Command {
	cmd.Use, cmd.Hidden = use, true
	var profile string
	cmd.Flags().StringVar(&profile, "cpuprofile", "", "write a CPU profile here")
	run := cmd.RunE
	cmd.RunE = func(c *cobra.Command, args []string) error {
		f, err := os.Create(profile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
		return run(c, args)
	}
	return cmd
}
