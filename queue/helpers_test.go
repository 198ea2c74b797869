package queue_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/sluice-dev/sluice/pipeline"
	"github.com/sluice-dev/sluice/queue"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// stallGuard bounds every wait in these tests; none should come close.
const stallGuard = 10 * time.Second

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// testConfig returns embedded-server options on a free loopback port with
// data under a fresh temporary directory.
func testConfig(t testing.TB) queue.EmbeddedOptions {
	t.Helper()
	return queue.EmbeddedOptions{Listen: "127.0.0.1:0", DataDir: t.TempDir(), Logger: quietLogger()}
}

func startServer(t testing.TB, eo queue.EmbeddedOptions) *queue.Embedded {
	t.Helper()
	emb, err := queue.StartEmbedded(eo)
	if err != nil {
		t.Fatalf("StartEmbedded: %v", err)
	}
	t.Cleanup(emb.Shutdown)
	return emb
}

func connect(t testing.TB, emb *queue.Embedded) *nats.Conn {
	t.Helper()
	nc, err := queue.Connect(context.Background(), emb, queue.ConnectOptions{Logger: quietLogger()})
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// openSource opens a source with opts, logging nowhere and registering its
// metrics with reg.
func openSource(t testing.TB, nc *nats.Conn, opts queue.Options, reg prometheus.Registerer) *queue.Source {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), stallGuard)
	defer cancel()
	opts.Logger, opts.Registerer = quietLogger(), reg
	src, err := queue.Open(ctx, nc, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = src.Close() })
	return src
}

// env is one embedded server, a connection and a source on it.
type env struct {
	cfg queue.Options
	emb *queue.Embedded
	nc  *nats.Conn
	js  jetstream.JetStream
	src *queue.Source
	reg *prometheus.Registry
}

// newEnv starts a server from testConfig and opens a source with the
// options tweak makes (nil: the defaults).
func newEnv(t testing.TB, tweak func(*queue.Options)) *env {
	t.Helper()
	return newEnvAt(t, testConfig(t), tweak)
}

// newEnvAt is newEnv with a server started from eo.
func newEnvAt(t testing.TB, eo queue.EmbeddedOptions, tweak func(*queue.Options)) *env {
	t.Helper()
	var cfg queue.Options
	if tweak != nil {
		tweak(&cfg)
	}
	e := &env{cfg: cfg, reg: prometheus.NewRegistry()}
	e.emb = startServer(t, eo)
	e.nc = connect(t, e.emb)
	e.src = openSource(t, e.nc, cfg, e.reg)
	js, err := jetstream.New(e.nc)
	if err != nil {
		t.Fatal(err)
	}
	e.js = js
	return e
}

func payload(i int) []byte { return fmt.Appendf(nil, `{"i":%d}`, i) }

// publish stores n messages on ingest.test, numbered from first, and waits
// for every PubAck.
func publish(t testing.TB, js jetstream.JetStream, first, n int) {
	t.Helper()
	futs := make([]jetstream.PubAckFuture, 0, n)
	for i := first; i < first+n; i++ {
		f, err := js.PublishAsync("ingest.test", payload(i), jetstream.WithStallWait(stallGuard))
		if err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
		futs = append(futs, f)
	}
	checkPublished(t, js, futs)
}

// checkPublished waits for every future and fails on the first error.
func checkPublished(t testing.TB, js jetstream.JetStream, futs []jetstream.PubAckFuture) {
	t.Helper()
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(stallGuard):
		t.Fatalf("publishing %d messages stalled", len(futs))
	}
	for _, f := range futs {
		select {
		case err := <-f.Err():
			t.Fatalf("publish %q: %v", f.Msg().Data, err)
		default:
		}
	}
}

// fetchN fetches until it has n messages (or the guard passes), acking them
// when ack is set.
func fetchN(t testing.TB, src *queue.Source, n int, ack bool) []*queue.Message {
	t.Helper()
	var out []*queue.Message
	ctx, cancel := context.WithTimeout(context.Background(), stallGuard)
	defer cancel()
	for len(out) < n {
		msgs, err := src.Fetch(ctx, n-len(out), 200*time.Millisecond)
		if err != nil {
			t.Fatalf("Fetch after %d of %d messages: %v", len(out), n, err)
		}
		if ack {
			if err := src.Ack(msgs); err != nil {
				t.Fatalf("Ack: %v", err)
			}
		}
		for _, m := range msgs {
			out = append(out, m.(*queue.Message))
		}
	}
	return out
}

// expectEmpty checks that a fetch waiting wait returns nothing.
func expectEmpty(t testing.TB, src *queue.Source, wait time.Duration) {
	t.Helper()
	msgs, err := src.Fetch(context.Background(), 100, wait)
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	if len(msgs) != 0 {
		t.Fatalf("Fetch returned %d messages (first seq %d, delivered %d times), want none", len(msgs), msgs[0].ID().Seq, msgs[0].(*queue.Message).NumDelivered())
	}
}

func asPipeline(ms []*queue.Message) []pipeline.Message {
	out := make([]pipeline.Message, len(ms))
	for i, m := range ms {
		out[i] = m
	}
	return out
}

func newTextLogger(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }

func uitoa(n uint64) string { return strconv.FormatUint(n, 10) }
