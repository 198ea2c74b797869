package tap_test

import (
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-dev/sluice/record"
	"github.com/sluice-dev/sluice/tap"
)

func rec(seq uint64, idx uint32, data string) tap.Record {
	return tap.Record{ID: record.ID{Stream: "INGEST", Epoch: 9, Seq: seq, Index: idx}, Subject: "ingest.orders", Data: []byte(data)}
}

func TestHub_NobodyTapping(t *testing.T) {
	var nilHub *tap.Hub
	if nilHub.Tapping(tap.Out) || nilHub.Offer(tap.Out, rec(1, 0, "{}")) {
		t.Fatal("a nil hub reports a tap")
	}
	h := tap.NewHub(nil)
	if h.Tapping(tap.In) {
		t.Fatal("Tapping is true with no subscriber")
	}
	sub := h.Subscribe(tap.In, tap.SubOptions{Rate: math.Inf(1)})
	if !h.Tapping(tap.In) || h.Tapping(tap.Out) || h.Tapping(tap.Dead) {
		t.Fatal("Tapping must be true for the subscribed stage only")
	}
	sub.Close()
	sub.Close() // idempotent
	if h.Tapping(tap.In) {
		t.Fatal("Tapping is still true after the only subscriber closed")
	}
	if h.Offer(tap.In, rec(1, 0, "{}")) {
		t.Fatal("Offer took a record with nobody tapping")
	}
}

func TestHub_EventCarriesIdentity(t *testing.T) {
	h := tap.NewHub(nil)
	sub := h.Subscribe(tap.Dead, tap.SubOptions{Rate: math.Inf(1)})
	defer sub.Close()
	r := rec(12, 3, `{"id":1}`)
	r.Reason = "invalid JSON at offset 3"
	if !h.Offer(tap.Dead, r) {
		t.Fatal("Offer: not taken")
	}
	whole := rec(13, 0, strings.Repeat("x", tap.MaxData+10))
	whole.Whole = true
	h.Offer(tap.Dead, whole)
	e := <-sub.C()
	if e.Stage != "dead" || e.Stream != "INGEST" || e.Epoch != 9 || e.Seq != 12 || e.Index != 3 ||
		e.Subject != "ingest.orders" || e.Reason != r.Reason || e.Data != `{"id":1}` || e.Size != 8 || e.Truncated {
		t.Fatalf("event = %+v", e)
	}
	e = <-sub.C()
	if e.Index != -1 || !e.Truncated || e.Size != tap.MaxData+10 || len(e.Data) != tap.MaxData {
		t.Fatalf("whole-message event: index %d truncated %v size %d data %d bytes", e.Index, e.Truncated, e.Size, len(e.Data))
	}
}

// The hub copies what it keeps: the pipeline may reuse its buffers once
// Offer returns.
func TestHub_CopiesData(t *testing.T) {
	h := tap.NewHub(nil)
	sub := h.Subscribe(tap.Out, tap.SubOptions{Rate: math.Inf(1)})
	defer sub.Close()
	buf := []byte(`{"a":1}`)
	h.Offer(tap.Out, tap.Record{Data: buf})
	copy(buf, `XXXXXXX`)
	if e := <-sub.C(); e.Data != `{"a":1}` {
		t.Fatalf("data = %q after the caller reused its buffer", e.Data)
	}
}

// A reader that never reads never blocks Offer: what does not fit in its
// buffer is dropped and counted, and every event says how many were
// dropped before it.
func TestHub_SlowReaderDropsNeverBlocks(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := tap.NewHub(reg)
	sub := h.Subscribe(tap.In, tap.SubOptions{Rate: math.Inf(1), Buffer: 4})
	defer sub.Close()
	const n = 10000
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range n / 4 {
				h.Offer(tap.In, rec(uint64(w*n+i), 0, "{}"))
			}
		}()
	}
	wg.Wait() // returns: nothing blocked
	if got := sub.Dropped(); got != n-4 {
		t.Fatalf("dropped %d, want %d (offered %d, buffer 4)", got, n-4, n)
	}
	if got := counter(t, reg, "sluice_tap_dropped_total", "in"); got != n-4 {
		t.Fatalf("sluice_tap_dropped_total{stage=in} = %v, want %d", got, n-4)
	}
	for range 4 {
		<-sub.C()
	}
	h.Offer(tap.In, rec(1, 0, "{}"))
	if e := <-sub.C(); e.Dropped != n-4 {
		t.Fatalf("the next event says %d dropped, want %d", e.Dropped, n-4)
	}
}

// counter returns the value of counter name{stage=stage} in reg.
func counter(t *testing.T, reg *prometheus.Registry, name, stage string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			if f.GetName() == name && m.GetLabel()[0].GetValue() == stage {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no %s{stage=%q}", name, stage)
	return 0
}

// The rate cap holds however fast records come: with a cap of 1/s, a
// burst takes one event and Offer says nobody wants more.
func TestHub_RateCap(t *testing.T) {
	h := tap.NewHub(nil)
	sub := h.Subscribe(tap.Out, tap.SubOptions{Rate: 1, Buffer: 100})
	defer sub.Close()
	if !h.Offer(tap.Out, rec(1, 0, "{}")) {
		t.Fatal("the first record was not taken")
	}
	for i := range 1000 {
		if h.Offer(tap.Out, rec(uint64(i+2), 0, "{}")) {
			t.Fatalf("record %d taken within the same second at rate 1/s", i+2)
		}
	}
	if len(sub.C()) != 1 || sub.Dropped() != 0 {
		t.Fatalf("%d events queued, %d dropped; want 1 and 0 (skipped by the rate cap is not dropped)", len(sub.C()), sub.Dropped())
	}
}

// A burst of records takes up to one second's worth of events at once.
func TestHub_RateCapBurst(t *testing.T) {
	h := tap.NewHub(nil)
	sub := h.Subscribe(tap.Out, tap.SubOptions{Rate: 5, Buffer: 100})
	defer sub.Close()
	for i := range 100 {
		h.Offer(tap.Out, rec(uint64(i+1), 0, "{}"))
	}
	if len(sub.C()) != 5 {
		t.Fatalf("%d events from a burst of 100 at rate 5/s, want 5", len(sub.C()))
	}
}

func TestHub_Max(t *testing.T) {
	h := tap.NewHub(nil)
	sub := h.Subscribe(tap.In, tap.SubOptions{Rate: math.Inf(1), Max: 3, Buffer: 10})
	defer sub.Close()
	for i := range 10 {
		h.Offer(tap.In, rec(uint64(i+1), 0, "{}"))
	}
	if len(sub.C()) != 3 {
		t.Fatalf("%d events after max 3", len(sub.C()))
	}
}

func TestHub_SeveralSubscribers(t *testing.T) {
	h := tap.NewHub(nil)
	a := h.Subscribe(tap.In, tap.SubOptions{Rate: math.Inf(1)})
	b := h.Subscribe(tap.In, tap.SubOptions{Rate: math.Inf(1)})
	h.Offer(tap.In, rec(1, 0, "{}"))
	a.Close()
	h.Offer(tap.In, rec(2, 0, "{}"))
	if len(a.C()) != 1 || len(b.C()) != 2 {
		t.Fatalf("a got %d, b got %d; want 1 and 2", len(a.C()), len(b.C()))
	}
	b.Close()
	if h.Tapping(tap.In) {
		t.Fatal("still tapping after both closed")
	}
}

func TestParseStage(t *testing.T) {
	for _, s := range []tap.Stage{tap.In, tap.Out, tap.Dead} {
		got, err := tap.ParseStage(s.String())
		if err != nil || got != s {
			t.Fatalf("ParseStage(%q) = %v, %v", s, got, err)
		}
	}
	if _, err := tap.ParseStage("sink"); err == nil || !strings.Contains(err.Error(), "want in, out or dead") {
		t.Fatalf("ParseStage(sink) error = %v", err)
	}
}

func TestFormat(t *testing.T) {
	ts := time.Date(2026, 12, 2, 14, 7, 5, 123e6, time.UTC)
	for _, tc := range []struct {
		e    tap.Event
		want string
	}{
		{tap.Event{Time: ts, Stage: "out", Stream: "INGEST", Epoch: 9, Seq: 12, Index: 0, Subject: "ingest.orders", Data: `{"id":1}`, Size: 8},
			`14:07:05.123 out INGEST epoch=9 seq=12 index=0 subject=ingest.orders {"id":1}`},
		{tap.Event{Time: ts, Stage: "dead", Stream: "INGEST", Epoch: 9, Seq: 13, Index: -1, Subject: "ingest.x", Reason: "too \"large\"", Data: "abc", Size: 9000, Truncated: true},
			`14:07:05.123 dead INGEST epoch=9 seq=13 index=- subject=ingest.x reason="too \"large\"" abc… (9000 bytes)`},
		{tap.Event{Time: ts, Stage: "in", Stream: "S", Seq: 1, Subject: "s", Data: "a\x00\xffb"},
			`14:07:05.123 in S epoch=0 seq=1 index=0 subject=s "a\x00\xffb"`},
	} {
		if got := tap.Format(tc.e); got != tc.want {
			t.Errorf("Format =\n%s\nwant\n%s", got, tc.want)
		}
	}
}

// BenchmarkTapping_Off is the cost at each tap point of a pipeline nobody
// taps: one atomic load.
func BenchmarkTapping_Off(b *testing.B) {
	h := tap.NewHub(nil)
	n := 0
	for b.Loop() {
		if h.Tapping(tap.Out) {
			n++
		}
	}
	if n != 0 {
		b.Fatal("tapping")
	}
}

// BenchmarkOffer_SlowReader is the cost of offering a record to a tap whose
// reader never reads (every event dropped): bounded, never a wait.
func BenchmarkOffer_SlowReader(b *testing.B) {
	h := tap.NewHub(nil)
	sub := h.Subscribe(tap.Out, tap.SubOptions{Rate: math.Inf(1), Buffer: 1})
	defer sub.Close()
	r := rec(1, 0, `{"id":1,"item":"tea"}`)
	for b.Loop() {
		h.Offer(tap.Out, r)
	}
}

// BenchmarkOffer_RateCapped is the cost of offering a record that the rate
// cap skips (the common case while someone taps a busy stage).
func BenchmarkOffer_RateCapped(b *testing.B) {
	h := tap.NewHub(nil)
	sub := h.Subscribe(tap.Out, tap.SubOptions{Rate: 1, Buffer: 1})
	defer sub.Close()
	r := rec(1, 0, `{"id":1,"item":"tea"}`)
	for b.Loop() {
		h.Offer(tap.Out, r)
	}
}
