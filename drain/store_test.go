package drain_test

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/drain"
	"github.com/sluice-dev/sluice/fault"
	"github.com/sluice-dev/sluice/ledger"
	"github.com/sluice-dev/sluice/record"
	"github.com/sluice-dev/sluice/wire"
)

// memStore is a Store whose durable part is a slice: Commit moves what was
// appended into it, Recover cuts it back to a point's length.
type memStore struct {
	mu        sync.Mutex
	pending   []string
	durable   []string
	recovered []ledger.Point
}

func (m *memStore) Recover(p ledger.Point) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.recovered = append(m.recovered, p)
	if p.Length > int64(len(m.durable)) {
		return fmt.Errorf("point %d is past the %d records stored", p.Length, len(m.durable))
	}
	m.durable, m.pending = m.durable[:p.Length], nil
	return nil
}

func (m *memStore) Append(r record.Record) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	// Appending to rec.Data, as a Store that writes lines does, must not
	// touch the next record's payload.
	line := append(r.Data, '\n')
	m.pending = append(m.pending, fmt.Sprintf("%s/%d/%d/%d %s", r.ID.Stream, r.ID.Epoch, r.ID.Seq, r.ID.Index, line[:len(line)-1]))
	return nil
}

func (m *memStore) Commit() (ledger.Point, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.durable, m.pending = append(m.durable, m.pending...), nil
	return ledger.Point{File: "mem", Length: int64(len(m.durable))}, nil
}

func (m *memStore) records() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.durable)
}

func stored(recs ...[]record.Record) []string {
	var out []string
	for _, rs := range recs {
		for _, r := range rs {
			out = append(out, fmt.Sprintf("%s/%d/%d/%d %s", r.ID.Stream, r.ID.Epoch, r.ID.Seq, r.ID.Index, r.Data))
		}
	}
	return out
}

// A Store gets each new record once, with its identity and its payload as
// sent (no line rendering); duplicates, re-sent after a reconnect, are
// dropped by the Server before they reach it.
func TestStore_ReceivesEachRecordOnce(t *testing.T) {
	st := &memStore{}
	state := filepath.Join(t.TempDir(), "state")
	r := startAcked(t, drain.Options{Store: st, StateDir: state})
	a := dialAcked(t, r.Addr(), "t-1")
	f1 := msgs("S", 1, 4, 2)
	f1[0].Data = []byte("a payload\nwith a newline, kept as it is")
	f2 := msgs("T", 7, 9, 3)
	a.sendAcked(1, f1)
	a.sendAcked(2, f2)
	a.nc.Close()
	b := dialAcked(t, r.Addr(), "t-1")
	b.sendAcked(1, slices.Concat(f1[2:], f2)) // re-sent: all duplicates
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	if got, want := st.records(), stored(f1, f2); !slices.Equal(got, want) {
		t.Fatalf("store holds\n%q\nwant\n%q", got, want)
	}
	if !slices.Equal(st.recovered, []ledger.Point{{}}) {
		t.Fatalf("Recover calls %v, want one with the zero point", st.recovered)
	}
}

// A crash between the Store's commit and the journal's: the restarted
// Server hands the Store the last point the journal recorded, the Store
// drops what came after, and the producer's re-send stores every record
// exactly once.
func TestStore_CrashBetweenStoreAndJournal(t *testing.T) {
	st := &memStore{}
	state := filepath.Join(t.TempDir(), "state")
	r1 := startAcked(t, drain.Options{Store: st, StateDir: state})
	a := dialAcked(t, r1.Addr(), "t-1")
	f1, f2 := msgs("S", 1, 3, 2), msgs("S", 4, 6, 2)
	a.sendAcked(1, f1)
	restore := setFault(t, "drain.commit.after_write", &fault.Action{Kind: fault.Error, Count: 1})
	defer restore()
	if err := a.send(2, f2); err != nil {
		t.Fatal(err)
	}
	if _, err := a.readAck(30 * time.Second); !isPeerClose(err, wire.CodeInternal) {
		t.Fatalf("after the injected crash: %v, want CLOSE INTERNAL", err)
	}
	if err := r1.stop(); !errors.Is(err, fault.ErrInjected) {
		t.Fatalf("Serve = %v, want the injected failure", err)
	}
	restore()
	if got := st.records(); len(got) != 12 {
		t.Fatalf("test setup: the store should hold the unacknowledged frame too: %d records", len(got))
	}

	r2 := startAcked(t, drain.Options{Store: st, StateDir: state})
	if got := st.recovered[len(st.recovered)-1]; got != (ledger.Point{File: "mem", Length: 6}) {
		t.Fatalf("Recover got %+v, want the point of the first frame's commit (mem, 6)", got)
	}
	b := dialAcked(t, r2.Addr(), "t-1")
	b.sendAcked(1, f1)
	b.sendAcked(2, f2)
	if err := r2.stop(); err != nil {
		t.Fatal(err)
	}
	if got, want := st.records(), stored(f1, f2); !slices.Equal(got, want) {
		t.Fatalf("store holds\n%q\nwant\n%q", got, want)
	}
}

func TestStore_Options(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts drain.Options
	}{
		{"lines framing", drain.Options{Socket: "/tmp/x.sock", Store: &memStore{}, StateDir: "-"}},
		{"no state dir", drain.Options{Socket: "/tmp/x.sock", Store: &memStore{}, Framing: wire.FramingAcked}},
	} {
		if _, err := tc.opts.WithDefaults(); !errors.Is(err, drain.ErrInvalidOptions) {
			t.Errorf("%s: %v, want ErrInvalidOptions", tc.name, err)
		}
	}
	if _, err := (drain.Options{Socket: "/tmp/x.sock", Store: &memStore{}, StateDir: "-", Framing: wire.FramingAcked}).WithDefaults(); err != nil {
		t.Errorf("a Store with a memory state: %v", err)
	}
}
