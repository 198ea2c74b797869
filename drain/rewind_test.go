package drain_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-dev/sluice/drain"
	"github.com/sluice-dev/sluice/ledger"
	"github.com/sluice-dev/sluice/wire"
)

// A producer whose queue went back below what the drainer committed is
// refused with STREAM_REWOUND, durably: it stays refused after its queue
// passes the committed sequence again and across a drainer restart, and
// nothing it sends is written. A drainer started with AcceptRewind then
// lets it in and writes its new messages, whose sequences the lost ones
// had; the old records stay. A new incarnation of the stream, and another
// stream, are never refused.
func TestAcked_RewindRefusedUntilAccepted(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	opts := drain.Options{Out: out}
	r := startAcked(t, opts)
	sock := r.Addr()
	opts.Socket = sock
	at := func(stream string, epoch, last uint64) []wire.StreamPosition {
		return []wire.StreamPosition{{Stream: stream, Epoch: epoch, LastSeq: last}}
	}
	a := dialAcked(t, sock, "p-1")
	old := msgs("S", 1, 10, 2) // epoch 0, sequences 1..10
	a.sendAcked(1, old)
	a.nc.Close()

	refused := func(r *running, ps []wire.StreamPosition, want float64) {
		t.Helper()
		_, err := tryDialAckedAt(sock, "p-1", ps)
		if !isPeerClose(err, wire.CodeStreamRewound) {
			t.Fatalf("HELLO at %+v: %v, want a CLOSE STREAM_REWOUND", ps, err)
		}
		if !strings.Contains(err.Error(), "--accept-rewind") {
			t.Errorf("the CLOSE reason does not say how to recover: %v", err)
		}
		if got := counter(t, r.reg, "sluice_drain_rewinds_total", "refused"); got != want {
			t.Errorf("sluice_drain_rewinds_total{refused} = %v, want %v", got, want)
		}
	}
	refused(r, at("S", 0, 4), 1)
	refused(r, at("S", 0, 25), 2) // past the committed 10 again: still fenced
	if _, err := os.Stat(filepath.Join(out, ledger.RewindName)); err != nil {
		t.Fatalf("no fence recorded: %v", err)
	}
	// Other incarnations and streams pass; so does a HELLO without positions.
	for _, ps := range [][]wire.StreamPosition{at("S", 7, 0), at("T", 0, 3), nil} {
		c, err := tryDialAckedAt(sock, "p-2", ps)
		if err != nil {
			t.Fatalf("HELLO at %+v refused: %v", ps, err)
		}
		c.nc.Close()
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}

	r = startAcked(t, opts) // a restart remembers the refusal
	refused(r, at("S", 0, 25), 1)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	if got, want := readAll(t, out), lines(old); !slices.Equal(got, want) {
		t.Fatalf("output while refused = %q, want the first records only", got)
	}

	opts.AcceptRewind = true
	reg := prometheus.NewRegistry()
	opts.Registerer = reg
	r = startAcked(t, opts)
	b, err := tryDialAckedAt(sock, "p-1", at("S", 0, 25))
	if err != nil {
		t.Fatalf("HELLO refused with AcceptRewind: %v", err)
	}
	b.t = t
	fresh := msgs("S", 5, 25, 1) // the queue's new messages 5..25, after the lost 5..10
	for i := range fresh {
		fresh[i].Data = append([]byte(`{"new":true,`), fresh[i].Data[1:]...)
	}
	b.sendAcked(1, slices.Concat(msgs("S", 1, 4, 2), fresh)) // 1..4 again: duplicates
	b.nc.Close()
	if got := counter(t, reg, "sluice_drain_rewinds_total", "accepted"); got != 1 {
		t.Errorf("sluice_drain_rewinds_total{accepted} = %v, want 1", got)
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	if got, want := readAll(t, out), lines(old, fresh); !slices.Equal(got, want) {
		t.Fatalf("output after accepting = %q,\nwant %q", got, want)
	}
	if _, err := os.Stat(filepath.Join(out, ledger.RewindName)); !os.IsNotExist(err) {
		t.Fatalf("fence still there after the rewind was accepted: %v", err)
	}
}

// With AcceptRewind, a rewind detected at connect time is accepted at
// once, without a fence.
func TestAcked_RewindAcceptedAtOnce(t *testing.T) {
	r := startAcked(t, drain.Options{AcceptRewind: true})
	a := dialAcked(t, r.Addr(), "p-1")
	a.sendAcked(1, msgs("S", 1, 6, 1))
	a.nc.Close()
	b, err := tryDialAckedAt(r.Addr(), "p-1", []wire.StreamPosition{{Stream: "S", LastSeq: 2}})
	if err != nil {
		t.Fatalf("HELLO refused with AcceptRewind: %v", err)
	}
	b.t = t
	fresh := msg("S", 3, 1)
	fresh[0].Data = []byte(`{"new":3}`)
	b.sendAcked(1, fresh)
	b.nc.Close()
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	if got, want := readAll(t, r.out), lines(msgs("S", 1, 6, 1), fresh); !slices.Equal(got, want) {
		t.Fatalf("output = %q, want %q", got, want)
	}
	if got := counter(t, r.reg, "sluice_drain_rewinds_total", "accepted"); got != 1 {
		t.Errorf("sluice_drain_rewinds_total{accepted} = %v, want 1", got)
	}
}
