package sink_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-dev/sluice/drain"
	"github.com/sluice-dev/sluice/internal/testkit"
	"github.com/sluice-dev/sluice/sink"
	"github.com/sluice-dev/sluice/wire"
)

// TestWriter_AckedGoodbyeRealDrainer: against the reference drainer, the
// sink's CLOSE NORMAL (requested reconnect) and GOING_AWAY (Close) end the
// sessions without an error on either side, and every record is written
// once.
func TestWriter_AckedGoodbyeRealDrainer(t *testing.T) {
	dir := testkit.ShortDir(t)
	path := filepath.Join(dir, "d.sock")
	dreg := prometheus.NewRegistry()
	var dlog logBuf // the drainer logs each session's end at debug level, with the peer's CLOSE code
	srv, err := drain.New(drain.Options{Socket: path, Out: filepath.Join(dir, "out"), Framing: "acked", Registerer: dreg, Logger: dlog.logger()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		srv.Close()
		<-served
	})

	w, reg := newWriter(t, sink.Options{Path: path, Framing: wire.FramingAcked, BackoffMin: time.Millisecond, BackoffMax: 20 * time.Millisecond})
	var dl doneLog
	const sends = 3
	for seq := uint64(1); seq <= sends; seq++ {
		if err := w.Send(bg, msg(seq, 2), dl.fn(fmt.Sprint(seq))); err != nil {
			t.Fatal(err)
		}
		testkit.WaitFor(t, 10*time.Second, func() error {
			if got := dl.n.Load(); got != int64(seq) {
				return fmt.Errorf("%d dones", got)
			}
			return nil
		})
		w.Reconnect(sink.ReasonRequested)
		testkit.WaitFor(t, 10*time.Second, func() error {
			if got := reconnects(t, reg, sink.ReasonRequested); got != float64(seq) {
				return fmt.Errorf("reconnects{requested} = %v", got)
			}
			return nil
		})
		// The replaced connection says goodbye once its last writer lets
		// go; a Close before that would end it as a shutdown (GOING_AWAY),
		// rightly, so wait for its CLOSE NORMAL.
		testkit.WaitFor(t, 10*time.Second, func() error {
			if got := strings.Count(dlog.String(), "code=NORMAL"); got != int(seq) {
				return fmt.Errorf("%d CLOSE NORMAL seen", got)
			}
			return nil
		})
	}
	w.Close()
	testkit.WaitFor(t, 10*time.Second, func() error {
		if got := counter(t, dreg, "sluice_drain_connections"); got != 0 {
			return fmt.Errorf("the drainer still has %v connections open", got)
		}
		return nil
	})
	if s := dlog.String(); strings.Count(s, "code=NORMAL") != sends || strings.Count(s, "code=GOING_AWAY") != 1 {
		t.Errorf("the drainer did not see %d CLOSE NORMAL and one GOING_AWAY:\n%s", sends, s)
	}
	if got := counter(t, dreg, "sluice_drain_records_total"); got != 2*sends {
		t.Errorf("sluice_drain_records_total = %v, want %d", got, 2*sends)
	}
	for _, name := range []string{"sluice_drain_conn_errors_total", "sluice_drain_protocol_errors_total", "sluice_drain_duplicates_total"} {
		if got := total(t, dreg, name); got != 0 {
			t.Errorf("%s = %v, want 0: the drainer took the sink's goodbye for an error", name, got)
		}
	}
	for _, r := range []string{sink.ReasonPeerClosed, sink.ReasonWriteError, sink.ReasonProtocolError} {
		if got := reconnects(t, reg, r); got != 0 {
			t.Errorf("reconnects{%s} = %v, want 0", r, got)
		}
	}
	if got := total(t, reg, "sluice_sink_records_total"); got != 2*sends {
		t.Errorf("sluice_sink_records_total = %v, want %d", got, 2*sends)
	}
	if errs := dl.list(); len(errs) != sends {
		t.Errorf("done calls %v", errs)
	}
}
