package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/sluice-dev/sluice/config"
	"github.com/sluice-dev/sluice/demo"
)

type demoOptions struct {
	dir        string
	duration   time.Duration
	rate       float64
	perMessage int
	invalid    float64
	keep       bool
	framing    string
	kills      int
}

func newDemoCmd(g *globals) *cobra.Command {
	var o demoOptions
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run everything at once: embedded queue, service, drainer, producer; then verify",
		Long: `demo runs the whole pipeline on this machine in one command: the embedded
JetStream queue, the sluice service, the reference drainer as a separate
child process (this binary re-executed as 'sluice drain'), and a producer
publishing realistic JSON records (a few of them deliberately invalid, which
go to the dead-letter subject). It prints live progress, then a summary, and
verifies the drainer's output: it exits 1 if any published valid record was
not drained, or was drained twice in acked framing.

By default it uses the acked framing and kills the drainer with SIGKILL
twice mid-run (--kills), restarting it each time: the summary shows the
reconnects, and that nothing was lost or duplicated.

Everything goes under one directory (--dir, or a new temporary one): the
queue's data, the socket, the drainer's output files and both logs.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.loadConfig(cmd.Flags(), flagKeys{"workers": "pipeline.workers"})
			if err != nil {
				return err
			}
			return runDemo(g, cfg, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.dir, "dir", "", "directory for all the demo's files (default: a new temporary directory, removed on success)")
	f.DurationVar(&o.duration, "duration", 20*time.Second, "how long the producer publishes")
	f.Float64Var(&o.rate, "rate", 5000, "records per second the producer publishes")
	f.IntVar(&o.perMessage, "per-message", 1, "records per queue message")
	f.Float64Var(&o.invalid, "invalid", 0.001, "fraction of records made invalid JSON (they go to the dead-letter subject)")
	f.BoolVar(&o.keep, "keep", false, "keep the temporary directory even on success")
	f.StringVar(&o.framing, "framing", "acked", "socket framing: acked (the drainer acknowledges durable records) or lines")
	f.IntVar(&o.kills, "kills", 2, "SIGKILL the drainer this many times during the run and restart it (acked framing loses nothing; lines framing may)")
	f.Int("workers", 0, "processing workers (default: number of CPUs)")
	return cmd
}

func runDemo(g *globals, cfg *config.Config, o demoOptions) error {
	opts, err := demoRunOptions(g, cfg, o)
	if err != nil {
		return err
	}
	opts.Signals = signalContext
	err = demo.Run(context.Background(), opts)
	if errors.Is(err, demo.ErrNotDelivered) {
		return exitCodeError{exitError}
	}
	return err
}

// demoRunOptions maps the flags and config onto the demo's options.
func demoRunOptions(g *globals, cfg *config.Config, o demoOptions) (demo.Options, error) {
	if err := cfg.Set("sink.framing", o.framing); err != nil {
		return demo.Options{}, usageError{fmt.Errorf("--framing: %w", err)}
	}
	if err := cfg.Validate(); err != nil { // again with the demo's paths, in StartService
		return demo.Options{}, err
	}
	exe, err := selfExe()
	if err != nil {
		return demo.Options{}, fmt.Errorf("demo: find own executable to start the drainer: %w", err)
	}
	return demo.Options{
		Dir: o.dir, Keep: o.keep, Duration: o.duration, Rate: o.rate, PerMessage: o.perMessage,
		Invalid: o.invalid, Framing: cfg.Sink.Framing, Kills: o.kills,
		Exe: exe, LogFormat: cfg.Log.Format, LogLevel: cfg.Log.Level, Stdout: g.stdout,
		StartService: func(ctx context.Context, p demo.Paths, logger *slog.Logger) (demo.Service, error) {
			cfg.Queue.DataDir, cfg.Queue.Listen = p.DataDir, "127.0.0.1:0"
			cfg.Sink.Socket, cfg.Drain.Socket, cfg.Drain.Out = p.Socket, p.Socket, p.Out
			cfg.Admin.Listen = "127.0.0.1:0"
			cfg.Admin.TokenFile = filepath.Join(filepath.Dir(p.DataDir), "admin.token") // in the demo's directory
			if err := cfg.Validate(); err != nil {
				return nil, err
			}
			svc, err := newService(ctx, cfg, logger)
			if err != nil {
				return nil, err
			}
			return demoService{svc}, nil
		},
	}, nil
}

// demoService is the service as package demo uses it.
type demoService struct{ *service }

func (s demoService) Run(ctx context.Context) error { return s.run(ctx) }
func (s demoService) QueueURL() string              { return s.emb.ClientURL() }
func (s demoService) QueueOptions() []nats.Option   { return s.emb.ClientOptions() }
func (s demoService) MetricsAddr() string           { return s.admin.Addr() }
func (s demoService) Metrics() prometheus.Gatherer  { return s.reg }

// selfExe returns the path to re-execute this binary: os.Args[0] resolved on
// PATH (so wrappers such as test harnesses dispatch correctly), else
// os.Executable.
func selfExe() (string, error) {
	if p, err := exec.LookPath(os.Args[0]); err == nil {
		return p, nil
	}
	return os.Executable()
}
