// Package demo runs the whole sluice pipeline on one machine in one call:
// the embedded JetStream queue and the sluice service (started through
// Options.StartService, in process), the reference drainer as a child
// process (the sluice binary re-executed as 'sluice drain'), and a producer
// (load.Generate) publishing realistic JSON records, a few of them invalid.
// It kills the drainer with SIGKILL mid-run and restarts it, prints live
// progress and a summary, and verifies what the drainer committed.
//
// The package knows nothing of the command line: cmd/sluice maps its flags
// and config onto Options and provides the service.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-dev/sluice/load"
	"github.com/sluice-dev/sluice/obs"
	"github.com/sluice-dev/sluice/wire"
)

// Service is the sluice service as the demo uses it.
type Service interface {
	// Run runs the service until ctx ends, then shuts it down, and returns
	// when the shutdown is complete.
	Run(ctx context.Context) error
	// QueueURL is the embedded queue's client URL.
	QueueURL() string
	// QueueOptions are the connect options its clients need (its
	// credentials).
	QueueOptions() []nats.Option
	// MetricsAddr is the admin server's address, host:port.
	MetricsAddr() string
	// Metrics gathers the service's Prometheus metrics, during Run and
	// after it returned.
	Metrics() prometheus.Gatherer
}

// Paths are where the demo's files go, all under Dir.
type Paths struct {
	Dir     string
	Socket  string // the drainer's socket, which the service writes to
	DataDir string // the embedded queue's data
	Out     string // the drainer's output directory
}

// Options configures Run.
type Options struct {
	Dir        string        // directory for every file; "" = a new temporary one, removed on success
	Keep       bool          // keep the temporary directory even on success
	Duration   time.Duration // how long the producer publishes
	Rate       float64       // records per second the producer publishes
	PerMessage int           // records per queue message; 0 = 1
	Invalid    float64       // fraction of records made invalid JSON
	Framing    wire.Framing  // the socket framing of the service and the drainer
	Kills      int           // SIGKILL the drainer this many times during the run, restarting it each time

	Exe       string    // the sluice binary, re-executed as "Exe drain ..." for the drainer child
	LogFormat string    // the service's log format (obs.NewLogger); the log goes to Dir/sluice.log
	LogLevel  string    // the service's log level
	Stdout    io.Writer // progress and summary; nil = os.Stdout

	// StartService builds the sluice service, not yet running, writing to
	// p.Socket with its embedded queue's data in p.DataDir, its queue and
	// admin server listening on free loopback ports. ctx is the service's
	// context. Required.
	StartService func(ctx context.Context, p Paths, logger *slog.Logger) (Service, error)
	// Signals, if not nil, returns a context that ends the demo early (on
	// SIGINT, say), given the demo's logger, and a func that releases it.
	Signals func(logger *slog.Logger) (context.Context, func())
}

// Run runs the demo. It returns ErrNotDelivered, after printing the summary,
// when the drainer's committed output misses a published valid record or,
// in acked framing, holds one twice. Every drainer child it started is
// stopped and waited for before it returns, whatever the outcome.
func Run(ctx context.Context, o Options) (err error) {
	if o.StartService == nil || o.Exe == "" {
		return fmt.Errorf("%w: StartService and Exe are required", ErrBadOptions)
	}
	if o.Stdout == nil {
		o.Stdout = os.Stdout
	}
	out := &syncWriter{w: o.Stdout}
	p, temp, err := makePaths(o.Dir)
	if err != nil {
		return err
	}

	logFile, err := os.Create(filepath.Join(p.Dir, "sluice.log"))
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	defer logFile.Close()
	logger, err := obs.NewLogger(logFile, o.LogFormat, o.LogLevel)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "sluice demo: files under %s (logs: sluice.log, drain.log)\n", p.Dir)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if o.Signals != nil {
		sctx, release := o.Signals(logger)
		defer release()
		defer context.AfterFunc(sctx, cancel)()
	}

	// The drainer children live no longer than Run: their life ends when Run
	// returns, after the deferred stops (the service first, then the
	// drainer, in flow order) have run. It does not end with ctx, so that
	// after an interrupt the service can still finish in-flight work.
	life, endLife := context.WithCancel(context.WithoutCancel(ctx))
	defer endLife()
	d := &drainer{life: life, exe: o.Exe, socket: p.Socket, out: p.Out, framing: o.Framing, logPath: filepath.Join(p.Dir, "drain.log")}
	defer d.stop()
	if err := d.start(ctx); err != nil {
		return err
	}

	// The service outlives ctx: on an interrupt it still finishes in-flight
	// work before the final count.
	svcCtx, stopSvc := context.WithCancel(context.WithoutCancel(ctx))
	defer stopSvc()
	svc, err := o.StartService(svcCtx, p, logger)
	if err != nil {
		return err
	}
	svcErr := make(chan error, 1)
	go func() { svcErr <- svc.Run(svcCtx) }()
	stopService := sync.OnceFunc(func() {
		stopSvc()
		if err := <-svcErr; err != nil {
			logger.Error("service shutdown", obs.KeyErr, err)
		}
	})
	defer stopService()
	fmt.Fprintf(out, "queue %s  socket %s  metrics http://%s/metrics\n", svc.QueueURL(), p.Socket, svc.MetricsAddr())

	nc, err := nats.Connect(svc.QueueURL(), append(svc.QueueOptions(), nats.Name("sluice-demo-producer"))...)
	if err != nil {
		return fmt.Errorf("demo: connect producer: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}

	// The follower watches the drainer's output live, so latency is measured
	// from publish to the moment the line is read back (within ~50 ms).
	runID := fmt.Sprintf("demo-%d", time.Now().UnixNano())
	maxRecords := int64(o.Rate*o.Duration.Seconds()) + 1
	live := load.NewVerifier(runID, maxRecords)
	live.MarkInvalidFraction(o.Invalid)
	follow, err := load.NewFollower(p.Out, live)
	if err != nil {
		return err
	}

	var published atomic.Int64
	start := time.Now()
	prog := &progress{
		drained:    live.Received,
		published:  published.Load,
		reconnects: func() int64 { return reconnects(svc.Metrics()) },
		start:      start, lastAt: start,
	}
	progressDone, progressStopped := make(chan struct{}), make(chan struct{})
	stopProgress := sync.OnceFunc(func() { close(progressDone); <-progressStopped })
	defer stopProgress()
	go func() { defer close(progressStopped); runProgress(out, follow, prog, progressDone) }()

	// The drainer killer: SIGKILL mid-run, restart at once. On an early
	// return it is cancelled and waited for before the drainer is stopped.
	var killed atomic.Int64
	killerDone := make(chan struct{})
	go func() { defer close(killerDone); killDrainer(ctx, out, d, start, o.Duration, o.Kills, &killed) }()
	defer func() { cancel(); <-killerDone }()

	res, genErr := load.Generate(ctx, js, load.GenOptions{
		Subject:    "ingest.demo",
		Count:      maxRecords,
		Duration:   o.Duration,
		Rate:       o.Rate,
		PerMessage: o.PerMessage,
		Invalid:    o.Invalid,
		SizeSpread: 100,
		RunID:      runID,
		Acked:      &published,
	}, nil)
	if genErr != nil && !errors.Is(genErr, context.Canceled) {
		return fmt.Errorf("demo: producer: %w", genErr)
	}
	live.Shrink(res.MaxSeq)
	if err := live.Expect(res); err != nil {
		return err
	}

	// Let the pipeline catch up: wait until every valid record is drained
	// (after the last kill), then stop everything in flow order.
	<-killerDone
	if _, err := follow.Wait(ctx, res, 30*time.Second); err != nil {
		return err
	}
	stopProgress()
	elapsed := time.Since(start)
	stopService()
	d.stop()

	// The final count reads what the drainer committed, so bytes a killed
	// drainer wrote but never acknowledged, which its restart cut off, are
	// not counted.
	rep, err := follow.Committed(res)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	s := summary{elapsed: elapsed, res: res, rep: rep, framing: o.Framing, kills: killed.Load(), reconnects: reconnects(svc.Metrics())}
	s.write(out)

	exactlyOnce := o.Framing == wire.FramingAcked
	if !rep.OK(exactlyOnce) {
		fmt.Fprintf(out, "\nFAIL: %d published records were not drained (first: %s), %d duplicated (first: %s); files kept in %s\n",
			rep.Lost, strings.Join(rep.LostIDs, ", "), rep.Duplicates, strings.Join(rep.DuplicateIDs, ", "), p.Dir)
		return ErrNotDelivered
	}
	if exactlyOnce {
		fmt.Fprintln(out, "\nOK: every published record was drained exactly once")
	} else {
		fmt.Fprintln(out, "\nOK: every published record was drained")
	}
	if temp && !o.Keep {
		logFile.Close()
		_ = os.RemoveAll(p.Dir)
	}
	return nil
}

// makePaths creates the demo's directory (a temporary one when dir is "")
// and returns its paths, and whether the directory is temporary.
func makePaths(dir string) (Paths, bool, error) {
	temp := dir == ""
	if temp {
		d, err := os.MkdirTemp("", "sluice-demo-")
		if err != nil {
			return Paths{}, false, fmt.Errorf("demo: create a temporary directory: %w", err)
		}
		dir = d
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		return Paths{}, false, fmt.Errorf("demo: create --dir: %w", err)
	}
	p := Paths{Dir: dir, Socket: filepath.Join(dir, "sluice.sock"), DataDir: filepath.Join(dir, "data"), Out: filepath.Join(dir, "out")}
	if len(p.Socket) > 100 {
		return Paths{}, false, fmt.Errorf("demo: socket path %q is too long for a Unix socket (max ~107 bytes); choose a shorter --dir", p.Socket)
	}
	return p, temp, nil
}

// killAt returns when the i-th of kills drainer kills is due.
func killAt(start time.Time, duration time.Duration, i, kills int) time.Time {
	return start.Add(duration * time.Duration(i) / time.Duration(kills+1))
}

// killDrainer kills the drainer with SIGKILL kills times, evenly spread
// over duration, and restarts it each time at once; no kill starts after
// ctx ended.
func killDrainer(ctx context.Context, out io.Writer, d *drainer, start time.Time, duration time.Duration, kills int, killed *atomic.Int64) {
	for i := 1; i <= kills; i++ {
		t := time.NewTimer(time.Until(killAt(start, duration, i, kills)))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
		if !d.kill() {
			return // stopped meanwhile
		}
		killed.Add(1)
		fmt.Fprintf(out, "%5.0fs  drainer killed with SIGKILL; restarting it\n", time.Since(start).Seconds())
		// The restart completes even when ctx ended meanwhile: the service
		// needs a drainer to finish its in-flight work.
		if err := d.start(d.life); err != nil {
			if !errors.Is(err, ErrStopped) && d.life.Err() == nil {
				fmt.Fprintf(out, "demo: restart the drainer: %v\n", err)
			}
			return
		}
	}
}

// reconnects sums the sink's reconnect counter over its reasons.
func reconnects(g prometheus.Gatherer) int64 {
	mfs, _ := g.Gather() // what could be gathered, even with an error
	var n float64
	for _, v := range load.Reconnects(mfs) {
		n += v
	}
	return int64(n)
}

// summary is the demo's final table.
type summary struct {
	elapsed    time.Duration
	res        load.Result
	rep        load.Report
	framing    wire.Framing
	kills      int64
	reconnects int64
}

func (s summary) write(w io.Writer) {
	fmt.Fprintln(w)
	fmt.Fprintln(w, "summary")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "  duration\t%s\n", s.elapsed.Round(time.Millisecond))
	fmt.Fprintf(tw, "  published (valid)\t%d\n", s.res.Published)
	fmt.Fprintf(tw, "  sent to dead-letter (invalid)\t%d\n", s.res.Invalid)
	fmt.Fprintf(tw, "  drained\t%d\n", s.rep.Received)
	fmt.Fprintf(tw, "  lost\t%d\n", s.rep.Lost)
	fmt.Fprintf(tw, "  duplicated\t%d\n", s.rep.Duplicates)
	fmt.Fprintf(tw, "  framing\t%s\n", s.framing)
	fmt.Fprintf(tw, "  drainer kills (SIGKILL)\t%d\n", s.kills)
	fmt.Fprintf(tw, "  reconnects\t%d\n", s.reconnects)
	fmt.Fprintf(tw, "  throughput\t%.0f records/s\n", float64(s.rep.Received)/s.elapsed.Seconds())
	l := s.rep.Latency
	fmt.Fprintf(tw, "  latency p50 / p99 / max\t%s / %s / %s\n", l.P50, l.P99, l.Max)
	_ = tw.Flush()
}

// syncWriter serialises the writes of the progress, killer and main
// goroutines to one writer.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer // guarded by mu
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
