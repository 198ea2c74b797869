package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-dev/sluice/internal/testkit"
	"github.com/sluice-dev/sluice/ledger"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	xtrace "golang.org/x/exp/trace"
	"golang.org/x/sys/unix"

	"github.com/sluice-dev/sluice/config"
	"github.com/sluice-dev/sluice/drain"
	"github.com/sluice-dev/sluice/fault"
	"github.com/sluice-dev/sluice/obs"
)

func testConfig(t testing.TB) (*config.Config, string) {
	t.Helper()
	dir := testkit.ShortDir(t)
	cfg := config.Default()
	cfg.Queue.DataDir = filepath.Join(dir, "data")
	cfg.Queue.Listen = "127.0.0.1:0"
	cfg.Sink.Socket = filepath.Join(dir, "s.sock")
	cfg.Sink.BackoffMin = 5 * time.Millisecond
	cfg.Sink.BackoffMax = 100 * time.Millisecond
	cfg.Drain.Socket = cfg.Sink.Socket
	cfg.Admin.Listen = "off"
	cfg.Admin.TokenFile = filepath.Join(dir, "admin.token")
	cfg.Pipeline.Workers = 2
	cfg.Pipeline.FetchWait = 50 * time.Millisecond
	cfg.Pipeline.ShutdownTimeout = 2 * time.Second
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return &cfg, dir
}

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// startService builds and runs the service; the returned stop waits for a
// graceful shutdown and returns Run's error.
func startService(t testing.TB, cfg *config.Config) (*service, func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	svc, err := newService(ctx, cfg, quietLogger())
	if err != nil {
		cancel()
		t.Fatalf("newService: %v", err)
	}
	errc := make(chan error, 1)
	go func() { errc <- svc.run(ctx) }()
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() { cancel(); runErr = <-errc })
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	return svc, stop
}

// startDrain runs an in-process reference drainer writing to out.
func startDrain(t testing.TB, socket, out string) (*drain.Server, func()) {
	t.Helper()
	return startDrainOpts(t, drain.Options{Socket: socket, Out: out})
}

// startDrainOpts runs an in-process reference drainer with opts.
func startDrainOpts(t testing.TB, opts drain.Options) (*drain.Server, func()) {
	t.Helper()
	opts.Logger = quietLogger()
	srv, err := drain.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ctx) }()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-done; _ = srv.Close() }) }
	t.Cleanup(stop)
	return srv, stop
}

func publisher(t testing.TB, svc *service) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(svc.emb.ClientURL(), svc.emb.ClientOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// publish sends records n in [from, to) as {"n":N}, perMsg records a
// message, and waits for every PubAck.
func publish(t testing.TB, js jetstream.JetStream, from, to, perMsg int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var futures []jetstream.PubAckFuture
	for n := from; n < to; n += perMsg {
		var b strings.Builder
		for i := n; i < min(n+perMsg, to); i++ {
			fmt.Fprintf(&b, "{\"n\":%d,\"pad\":\"%s\"}\n", i, strings.Repeat("x", 150))
		}
		f, err := js.PublishAsync("ingest.test", []byte(b.String()))
		if err != nil {
			t.Fatal(err)
		}
		futures = append(futures, f)
		if len(futures) >= 512 {
			waitAcks(ctx, t, futures)
			futures = futures[:0]
		}
	}
	waitAcks(ctx, t, futures)
}

func waitAcks(ctx context.Context, t testing.TB, fs []jetstream.PubAckFuture) {
	t.Helper()
	for _, f := range fs {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			t.Fatalf("publish: %v", err)
		case <-ctx.Done():
			t.Fatal("publish acks timed out")
		}
	}
}

// outputCounts reads every drainer output dir under root and returns how
// often each record n appeared; torn lines fail the test.
func outputCounts(t *testing.T, dirs ...string) map[int]int {
	t.Helper()
	got := map[int]int{}
	for _, d := range dirs {
		if _, err := os.Stat(d); os.IsNotExist(err) {
			continue
		}
		err := ledger.ReadCommitted(d, func(line []byte) error {
			var r struct {
				N   *int   `json:"n"`
				Pad string `json:"pad"`
			}
			if err := json.Unmarshal(line, &r); err != nil || r.N == nil || len(r.Pad) != 150 {
				return fmt.Errorf("torn or interleaved line in %s: %q", d, line)
			}
			got[*r.N]++
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return got
}

// exactlyOnce fails unless out holds each record in [0, total) once.
func exactlyOnce(t *testing.T, total int, out string) {
	t.Helper()
	got := outputCounts(t, out)
	for n := range total {
		if got[n] != 1 {
			t.Fatalf("record %d drained %d times, want exactly once", n, got[n])
		}
	}
	if len(got) != total {
		t.Fatalf("drained %d distinct records, want %d", len(got), total)
	}
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s: %v", timeout, what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func distinct(t *testing.T, total int, dirs ...string) func() error {
	return func() error {
		got := outputCounts(t, dirs...)
		if len(got) < total {
			return fmt.Errorf("%d of %d records drained", len(got), total)
		}
		return nil
	}
}

// consumerSettled waits until the durable consumer has nothing pending and
// nothing unacknowledged: every message was acked.
func consumerSettled(t *testing.T, js jetstream.JetStream, cfg *config.Config) func() error {
	return func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := js.Consumer(ctx, cfg.Queue.Stream, cfg.Queue.Consumer)
		if err != nil {
			return err
		}
		info, err := c.Info(ctx)
		if err != nil {
			return err
		}
		if info.NumPending != 0 || info.NumAckPending != 0 {
			return fmt.Errorf("consumer: %d pending, %d awaiting ack", info.NumPending, info.NumAckPending)
		}
		return nil
	}
}

func TestService_EndToEnd(t *testing.T) {
	cfg, dir := testConfig(t)
	out := filepath.Join(dir, "out")
	_, stopDrain := startDrain(t, cfg.Sink.Socket, out)
	svc, stop := startService(t, cfg)
	js := publisher(t, svc)

	const total = 6000
	publish(t, js, 0, 3000, 1)     // one record per message
	publish(t, js, 3000, total, 7) // several records per message
	waitFor(t, 60*time.Second, "all records drained", distinct(t, total, out))
	waitFor(t, 30*time.Second, "every message acked", consumerSettled(t, js, cfg))
	if err := stop(); err != nil {
		t.Fatalf("service shutdown: %v", err)
	}
	stopDrain()
	exactlyOnce(t, total, out)
}

// socketBufferRecords bounds how many records can sit in a Unix socket's
// kernel buffers (send + receive) when a drainer goes away.
func socketBufferRecords(t *testing.T, recordSize int) int {
	t.Helper()
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	snd, _ := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF)
	rcv, _ := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF)
	return (snd + rcv) / recordSize
}

func TestService_DrainerRestartsDuringLoad(t *testing.T) {
	cfg, dir := testConfig(t)
	var outs []string
	out := func(i int) string {
		d := filepath.Join(dir, fmt.Sprintf("out%d", i))
		outs = append(outs, d)
		return d
	}
	_, stopDrain := startDrain(t, cfg.Sink.Socket, out(0))
	svc, stop := startService(t, cfg)
	js := publisher(t, svc)

	const total, restarts = 20000, 4
	pubDone := make(chan struct{})
	go func() { defer close(pubDone); publish(t, js, 0, total, 5) }()
	for i := 1; i <= restarts; i++ {
		// Let some records through, then restart the drainer.
		waitFor(t, 30*time.Second, "progress before restart", func() error {
			if n := len(outputCounts(t, outs...)); n < i*total/(restarts+2) {
				return fmt.Errorf("%d drained", n)
			}
			return nil
		})
		stopDrain()
		_, stopDrain = startDrain(t, cfg.Sink.Socket, out(i))
		want := float64(i)
		waitFor(t, 30*time.Second, "the sink to reconnect", func() error {
			if n := metricSum(t, svc, "sluice_sink_reconnects_total"); n < want {
				return fmt.Errorf("%v reconnects", n)
			}
			return nil
		})
	}
	<-pubDone
	waitFor(t, 60*time.Second, "the consumer to settle", consumerSettled(t, js, cfg))
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	stopDrain()
	got := outputCounts(t, outs...) // fails on any torn or interleaved line
	if n := metricSum(t, svc, "sluice_sink_reconnects_total"); n != restarts {
		t.Fatalf("sluice_sink_reconnects_total = %v, want %d (one per drainer restart)", n, restarts)
	}
	lost := total - len(got)
	bound := restarts * socketBufferRecords(t, 170)
	t.Logf("lost %d records over %d restarts (lines framing; bound %d)", lost, restarts, bound)
	if lost > bound {
		t.Fatalf("lost %d records, more than the socket buffers can hold (%d)", lost, bound)
	}
}

// metricSum adds up every series of the named metric in the service's
// registry (what /metrics shows).
func metricSum(t testing.TB, svc *service, name string) float64 {
	t.Helper()
	return gatherSum(t, svc.reg, name)
}

// gatherSum is the sum of every series of the counter or gauge name in g.
func gatherSum(t testing.TB, g prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				n += m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
	}
	return n
}

func TestService_SlowDrainerLosesNothing(t *testing.T) {
	cfg, dir := testConfig(t)
	out := filepath.Join(dir, "out")
	p, ok := fault.Lookup("drain.write.before")
	if !ok {
		t.Fatal("fault point drain.write.before not registered")
	}
	p.Set(&fault.Action{Kind: fault.Delay, Min: 2 * time.Millisecond})
	defer p.Set(nil)
	startDrain(t, cfg.Sink.Socket, out)
	svc, stop := startService(t, cfg)
	js := publisher(t, svc)
	const total = 5000
	publish(t, js, 0, total, 10)
	waitFor(t, 60*time.Second, "all records drained", distinct(t, total, out))
	waitFor(t, 30*time.Second, "every message acked", consumerSettled(t, js, cfg))
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if p.Hits() == 0 {
		t.Fatal("the slow-drainer fault never fired")
	}
}

func TestService_InvalidRecordsGoToDeadLetter(t *testing.T) {
	cfg, dir := testConfig(t)
	out := filepath.Join(dir, "out")
	startDrain(t, cfg.Sink.Socket, out)
	svc, stop := startService(t, cfg)
	js := publisher(t, svc)
	ctx := context.Background()
	valid := fmt.Sprintf(`{"n":%%d,"pad":"%s"}`, strings.Repeat("x", 150))
	msgs := []string{
		fmt.Sprintf(valid, 0),
		"{broken",
		fmt.Sprintf(valid, 1) + "\n[1,2\n" + fmt.Sprintf(valid, 2),
		fmt.Sprintf(valid, 3),
	}
	for _, m := range msgs {
		if _, err := js.Publish(ctx, "ingest.test", []byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 30*time.Second, "valid records drained", distinct(t, 4, out))
	waitFor(t, 30*time.Second, "every message acked", consumerSettled(t, js, cfg))
	// Both bad records are in the dead-letter stream, with reasons.
	dls, err := js.Stream(ctx, cfg.Queue.DeadLetterStream)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for seq := uint64(1); seq <= 3; seq++ {
		m, err := dls.GetMsg(ctx, seq)
		if err != nil {
			break
		}
		got = append(got, fmt.Sprintf("%s [%s]", m.Data, m.Header.Get("Sluice-Reason")))
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || !strings.HasPrefix(got[0], "{broken [invalid_json: ") || !strings.HasPrefix(got[1], "[1,2 [invalid_json: ") {
		t.Fatalf("dead letters = %q; want the two bad records with an invalid-JSON reason", got)
	}
}

func TestService_ShutdownWithoutDrainerAcksNothing(t *testing.T) {
	cfg, dir := testConfig(t)
	cfg.Pipeline.ShutdownTimeout = 300 * time.Millisecond
	svc, stop := startService(t, cfg) // no drainer listening
	js := publisher(t, svc)
	publish(t, js, 0, 100, 1)
	waitFor(t, 10*time.Second, "records in flight", func() error {
		if r, _ := svc.pipe.Inflight(); r == 0 {
			return fmt.Errorf("nothing in flight yet")
		}
		return nil
	})
	if err := stop(); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	// Restart with a drainer: everything arrives, so nothing was acked
	// before.
	cfg2 := *cfg
	out := filepath.Join(dir, "out")
	startDrain(t, cfg2.Sink.Socket, out)
	svc2, stop2 := startService(t, &cfg2)
	js2 := publisher(t, svc2)
	waitFor(t, 30*time.Second, "all records after restart", distinct(t, 100, out))
	waitFor(t, 30*time.Second, "every message acked", consumerSettled(t, js2, &cfg2))
	if err := stop2(); err != nil {
		t.Fatal(err)
	}
}

// TestService_AckedNoQueueAckBeforeDrainerAck: with a drainer that commits
// records but never acknowledges them, the queue sees no ack at all; once the
// drainer acknowledges, everything is acked and drained exactly once.
func TestService_AckedNoQueueAckBeforeDrainerAck(t *testing.T) {
	cfg, dir := testConfig(t)
	cfg.Sink.Framing = "acked"
	cfg.Sink.AckTimeout = 500 * time.Millisecond
	out := filepath.Join(dir, "out")
	p, ok := fault.Lookup("drain.ack.before")
	if !ok {
		t.Fatal("fault point drain.ack.before not registered")
	}
	p.Set(&fault.Action{Kind: fault.Error}) // never acknowledge: drop the connection instead
	defer p.Set(nil)
	dreg := prometheus.NewRegistry()
	startDrainOpts(t, drain.Options{Socket: cfg.Sink.Socket, Out: out, Framing: "acked", Registerer: dreg})
	svc, stop := startService(t, cfg)
	js := publisher(t, svc)
	const total = 2000
	publish(t, js, 0, total, 10)

	waitFor(t, 30*time.Second, "the drainer to commit records it will not acknowledge", func() error {
		if n := gatherSum(t, dreg, "sluice_drain_frames_total"); n < 3 || p.Hits() < 3 {
			return fmt.Errorf("%v frames committed, %d acks withheld", n, p.Hits())
		}
		return nil
	})
	if n := metricSum(t, svc, "sluice_queue_acks_total"); n != 0 {
		t.Fatalf("the queue saw %v acks although the drainer acknowledged nothing", n)
	}
	if n := metricSum(t, svc, "sluice_pipeline_messages_acked_total"); n != 0 {
		t.Fatalf("the pipeline acked %v messages although the drainer acknowledged nothing", n)
	}

	p.Set(nil) // the drainer acknowledges again
	waitFor(t, 60*time.Second, "all records drained", distinct(t, total, out))
	waitFor(t, 30*time.Second, "every message acked", consumerSettled(t, js, cfg))
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	for n, c := range outputCounts(t, out) {
		if c != 1 {
			t.Fatalf("record %d drained %d times; acked framing must drop duplicates", n, c)
		}
	}
}

// TestService_FlightDumpOnForcedReconnect: with the flight recorder on, a
// reconnect forced through the admin API writes a trace dump that parses as
// a Go execution trace (what go tool trace opens).
func TestService_FlightDumpOnForcedReconnect(t *testing.T) {
	cfg, dir := testConfig(t)
	cfg.Admin.Listen = "127.0.0.1:0"
	cfg.Flight.Enabled = true
	cfg.Flight.Dir = filepath.Join(dir, "traces")
	cfg.Flight.StallAfter = 0
	startDrain(t, cfg.Sink.Socket, filepath.Join(dir, "out"))
	svc, stop := startService(t, cfg)
	js := publisher(t, svc)
	publish(t, js, 0, 500, 5)
	waitFor(t, 10*time.Second, "the sink to connect", func() error {
		if !svc.snk.Connected() {
			return fmt.Errorf("not connected")
		}
		return nil
	})
	tok, err := obs.ReadToken("", cfg.Admin.TokenFile)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, "http://"+svc.admin.Addr()+"/sink/reconnect", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("POST /sink/reconnect: %s", resp.Status)
	}
	var dump string
	waitFor(t, 20*time.Second, "a flight-recorder dump named for the reconnect", func() error {
		m, _ := filepath.Glob(filepath.Join(cfg.Flight.Dir, "sluice-trace-*reconnect*requested*.trace"))
		if len(m) == 0 {
			return fmt.Errorf("no dump in %s", cfg.Flight.Dir)
		}
		dump = m[0]
		return nil
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(dump)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := xtrace.NewReader(f)
	if err != nil {
		t.Fatalf("%s is not an execution trace: %v", dump, err)
	}
	var events int
	for {
		_, err := r.ReadEvent()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s: event %d: %v", dump, events, err)
		}
		events++
	}
	if events < 100 {
		t.Fatalf("%s holds only %d events", dump, events)
	}
	t.Logf("%s: %d events", filepath.Base(dump), events)
}
