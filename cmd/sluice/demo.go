package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/sluice-dev/sluice/config"
	"github.com/sluice-dev/sluice/ledger"
	"github.com/sluice-dev/sluice/load"
	"github.com/sluice-dev/sluice/obs"
	"github.com/sluice-dev/sluice/wire"
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
	out := g.stdout
	dir := o.dir
	temp := dir == ""
	if temp {
		d, err := os.MkdirTemp("", "sluice-demo-")
		if err != nil {
			return fmt.Errorf("demo: create a temporary directory: %w", err)
		}
		dir = d
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("demo: create --dir: %w", err)
	}
	sock := filepath.Join(dir, "sluice.sock")
	if len(sock) > 100 {
		return fmt.Errorf("demo: socket path %q is too long for a Unix socket (max ~107 bytes); choose a shorter --dir", sock)
	}
	cfg.Queue.DataDir = filepath.Join(dir, "data")
	cfg.Queue.Listen = "127.0.0.1:0"
	cfg.Sink.Socket = sock
	cfg.Drain.Socket = sock
	cfg.Drain.Out = filepath.Join(dir, "out")
	cfg.Admin.Listen = "127.0.0.1:0"
	if err := cfg.Set("sink.framing", o.framing); err != nil {
		return usageError{fmt.Errorf("--framing: %w", err)}
	}
	if err := cfg.Validate(); err != nil {
		return err
	}

	logFile, err := os.Create(filepath.Join(dir, "sluice.log"))
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	defer logFile.Close()
	logger, err := obs.NewLogger(logFile, cfg.Log.Format, cfg.Log.Level)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "sluice demo: files under %s (logs: sluice.log, drain.log)\n", dir)

	ctx, stop := signalContext(logger)
	defer stop()

	drainLog := filepath.Join(dir, "drain.log")
	drainer, err := startDrainChild(ctx, cfg, drainLog)
	if err != nil {
		return err
	}
	defer func() { drainer.stop() }()

	svcCtx, stopSvc := context.WithCancel(context.WithoutCancel(ctx))
	defer stopSvc()
	svc, err := newService(svcCtx, cfg, logger)
	if err != nil {
		return err
	}
	svcErr := make(chan error, 1)
	go func() { svcErr <- svc.run(svcCtx) }()
	fmt.Fprintf(out, "queue %s  socket %s  metrics http://%s/metrics\n", svc.emb.ClientURL(), sock, svc.admin.Addr())

	nc, err := nats.Connect(svc.emb.ClientURL(), nats.Name("sluice-demo-producer"))
	if err != nil {
		return fmt.Errorf("demo: connect producer: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}

	// The verifier watches the drainer's output live, so latency is measured
	// from publish to the moment the line is read back (within ~50 ms).
	runID := fmt.Sprintf("demo-%d", time.Now().UnixNano())
	maxRecords := int64(o.rate*o.duration.Seconds()) + 1
	v := load.NewVerifier(runID, maxRecords)
	v.MarkInvalidFraction(o.invalid)
	tail := load.NewTail(cfg.Drain.Out)
	var drained atomic.Int64
	poll := func() {
		n, _ := tail.Poll(func(line []byte) { v.Observe(line, time.Now()) })
		drained.Add(int64(n))
	}

	var published atomic.Int64
	start := time.Now()
	progressDone := make(chan struct{})
	progressStopped := make(chan struct{})
	go func() {
		defer close(progressStopped)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		var lastDrained int64
		lastAt := start
		for {
			select {
			case <-progressDone:
				poll()
				return
			case now := <-tick.C:
				poll()
				if now.Sub(lastAt) < time.Second {
					continue
				}
				d := drained.Load()
				rate := float64(d-lastDrained) / now.Sub(lastAt).Seconds()
				lastDrained, lastAt = d, now
				fmt.Fprintf(out, "%5.0fs  published %8d  drained %8d  reconnects %3d  rate %7.0f rec/s\n",
					now.Sub(start).Seconds(), published.Load(), d, svc.snk.Stats().Reconnects, rate)
			}
		}
	}()

	// The drainer killer: SIGKILL mid-run, restart at once.
	killerDone := make(chan struct{})
	var killed atomic.Int64
	go func() {
		defer close(killerDone)
		for i := 1; i <= o.kills; i++ {
			at := start.Add(o.duration * time.Duration(i) / time.Duration(o.kills+1))
			select {
			case <-time.After(time.Until(at)):
			case <-ctx.Done():
				return
			}
			drainer.kill()
			killed.Add(1)
			fmt.Fprintf(out, "%5.0fs  drainer killed with SIGKILL; restarting it\n", time.Since(start).Seconds())
			d, err := startDrainChild(ctx, cfg, drainLog)
			if err != nil {
				fmt.Fprintf(out, "demo: restart the drainer: %v\n", err)
				return
			}
			drainer = d
		}
	}()

	res, genErr := load.Generate(ctx, js, load.GenOptions{
		Subject:    "ingest.demo",
		Count:      maxRecords,
		Duration:   o.duration,
		Rate:       o.rate,
		PerMessage: o.perMessage,
		Invalid:    o.invalid,
		SizeSpread: 100,
		RunID:      runID,
	}, func(p load.Progress) { published.Store(p.Published) })
	if genErr != nil && !errors.Is(genErr, context.Canceled) {
		close(progressDone)
		<-progressStopped
		return fmt.Errorf("demo: producer: %w", genErr)
	}
	v.Shrink(res.MaxSeq)
	if err := v.Expect(res); err != nil {
		return err
	}

	<-killerDone
	// Let the pipeline catch up: wait until every valid record is drained.
	deadline := time.Now().Add(30 * time.Second)
	for v.Report().Lost > 0 && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(100 * time.Millisecond)
	}
	close(progressDone)
	<-progressStopped
	elapsed := time.Since(start)

	stopSvc()
	if err := <-svcErr; err != nil {
		logger.Error("service shutdown", "err", err)
	}
	st := svc.snk.Stats()
	drainer.stop()
	live := v.Report()

	// The final count reads what the drainer committed (ledger.ReadCommitted), so
	// bytes a killed drainer wrote but never acknowledged, which its restart
	// cut off, are not counted.
	final := load.NewVerifier(res.RunID, res.MaxSeq)
	if err := final.Expect(res); err != nil {
		return err
	}
	if err := ledger.ReadCommitted(cfg.Drain.Out, func(line []byte) error {
		final.Observe(line, time.Now())
		return nil
	}); err != nil {
		return fmt.Errorf("demo: read the drainer's output: %w", err)
	}
	rep := final.Report()
	rep.Latency = live.Latency // measured live: publish to first seen in the output

	fmt.Fprintln(out)
	fmt.Fprintln(out, "summary")
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "  duration\t%s\n", elapsed.Round(time.Millisecond))
	fmt.Fprintf(tw, "  published (valid)\t%d\n", res.Published)
	fmt.Fprintf(tw, "  sent to dead-letter (invalid)\t%d\n", res.Invalid)
	fmt.Fprintf(tw, "  drained\t%d\n", rep.Received)
	fmt.Fprintf(tw, "  lost\t%d\n", rep.Lost)
	fmt.Fprintf(tw, "  duplicated\t%d\n", rep.Duplicates)
	fmt.Fprintf(tw, "  framing\t%s\n", cfg.Sink.Framing)
	fmt.Fprintf(tw, "  drainer kills (SIGKILL)\t%d\n", killed.Load())
	fmt.Fprintf(tw, "  reconnects\t%d\n", st.Reconnects)
	fmt.Fprintf(tw, "  throughput\t%.0f records/s\n", float64(rep.Received)/elapsed.Seconds())
	fmt.Fprintf(tw, "  latency p50 / p99 / max\t%s / %s / %s\n", rep.Latency.P50, rep.Latency.P99, rep.Latency.Max)
	_ = tw.Flush()

	exactlyOnce := cfg.Sink.Framing == wire.FramingAcked
	if !rep.OK(exactlyOnce) {
		fmt.Fprintf(out, "\nFAIL: %d published records were not drained (first: %s), %d duplicated (first: %s); files kept in %s\n",
			rep.Lost, strings.Join(rep.LostIDs, ", "), rep.Duplicates, strings.Join(rep.DuplicateIDs, ", "), dir)
		return exitCodeError{exitError}
	}
	if exactlyOnce {
		fmt.Fprintln(out, "\nOK: every published record was drained exactly once")
	} else {
		fmt.Fprintln(out, "\nOK: every published record was drained")
	}
	if temp && !o.keep {
		_ = os.RemoveAll(dir)
	}
	return nil
}

// drainChild is the reference drainer running as a child process.
type drainChild struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// selfExe returns the path to re-execute this binary: os.Args[0] resolved on
// PATH (so wrappers such as test harnesses dispatch correctly), else
// os.Executable.
func selfExe() (string, error) {
	if p, err := exec.LookPath(os.Args[0]); err == nil {
		return p, nil
	}
	return os.Executable()
}

func startDrainChild(ctx context.Context, cfg *config.Config, logPath string) (*drainChild, error) {
	exe, err := selfExe()
	if err != nil {
		return nil, fmt.Errorf("demo: find own executable to start the drainer: %w", err)
	}
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	socket := cfg.Drain.Socket
	cmd := exec.Command(exe, "drain", "--socket", socket, "--out", cfg.Drain.Out, "--framing", string(cfg.Sink.Framing))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), "SLUICE_FAULTS=")
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("demo: start the drainer %s: %w", exe, err)
	}
	c := &drainChild{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); logf.Close(); close(c.done) }()
	// Wait until it answers on its socket (a killed drainer leaves a stale
	// socket file behind, so the file's existence proves nothing).
	deadline := time.Now().Add(10 * time.Second)
	for {
		if conn, err := net.Dial("unix", socket); err == nil {
			conn.Close()
			return c, nil
		}
		select {
		case <-c.done:
			return nil, fmt.Errorf("demo: the drainer exited at start; see %s", logPath)
		case <-ctx.Done():
			c.stop()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			c.stop()
			return nil, fmt.Errorf("demo: the drainer did not listen on %s within 10s; see %s", socket, logPath)
		}
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (c *drainChild) kill() {
	_ = c.cmd.Process.Kill()
	<-c.done
}

// stop asks the drainer to finish (SIGTERM) and waits; after 10s it kills it.
func (c *drainChild) stop() {
	select {
	case <-c.done:
		return
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}
