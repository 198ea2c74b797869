package ledger_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/ledger"
)

// A fence survives a reopen; Forget forgets the sequences above the
// queue's last one, durably, keeps everything up to it and removes the
// fence; the output keeps the records of the lost messages.
func TestLedger_FenceAndForget(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, ledger.Options{})
	w := &writer{t: t, dir: dir}
	commit(t, l, w.write("a1", "a2", "a3", "a5"), ids("INGEST", 7, 1, 2, 3, 5))
	commit(t, l, w.write("a7", "a8"), ids("INGEST", 7, 7, 8))
	commit(t, l, w.write("b1"), ids("OTHER", 7, 1))
	r := ledger.Rewind{Stream: "INGEST", Epoch: 7, LastSeq: 2, Committed: 8, Detected: time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)}
	if err := l.Fence(r); err != nil {
		t.Fatal(err)
	}
	if err := l.Fence(r); err != nil { // the same incarnation again: one fence
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, ledger.RewindName)); err != nil {
		t.Fatalf("no fence file after Fence: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	l = open(t, dir, ledger.Options{})
	if got := l.Fences(); !slices.Equal(got, []ledger.Rewind{r}) {
		t.Fatalf("fences after reopen = %+v, want %+v", got, r)
	}
	if got, ok := l.Fenced("INGEST", 7); !ok || got != r {
		t.Fatalf("Fenced(INGEST, 7) = %+v, %v", got, ok)
	}
	if _, ok := l.Fenced("INGEST", 8); ok {
		t.Fatal("another epoch of the stream is fenced")
	}
	checkCommitted(t, l, "INGEST", 7, 8) // a fence forgets nothing

	if err := l.Forget("INGEST", 7, 2); err != nil {
		t.Fatal(err)
	}
	check := func(l *ledger.Ledger) {
		t.Helper()
		checkHas(t, l, true, ids("INGEST", 7, 1, 2))
		checkHas(t, l, false, ids("INGEST", 7, 3, 4, 5, 7, 8))
		checkHas(t, l, true, ids("OTHER", 7, 1))
		checkCommitted(t, l, "INGEST", 7, 2)
		if f := l.Fences(); len(f) != 0 {
			t.Fatalf("fences after Forget = %+v", f)
		}
	}
	check(l)
	if _, err := os.Stat(filepath.Join(dir, ledger.RewindName)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("fence file after the last fence was forgotten: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = open(t, dir, ledger.Options{})
	check(l)
	if got, want := readAll(t, dir), []string{"a1", "a2", "a3", "a5", "a7", "a8", "b1"}; !slices.Equal(got, want) {
		t.Fatalf("committed output %q, want %q", got, want)
	}
	// New messages with the forgotten sequences commit as usual.
	commit(t, l, w.write("new3"), ids("INGEST", 7, 3))
	checkCommitted(t, l, "INGEST", 7, 3)
}

// Forget at or below the low-water mark, inside a range, of an
// incarnation with nothing committed, and in a memory-only ledger.
func TestLedger_ForgetEdges(t *testing.T) {
	l := ledger.NewMemory(ledger.Options{})
	for _, s := range []uint64{1, 2, 3, 4, 6, 7, 8, 10} {
		if _, err := l.Commit(ledger.Point{}, ids("S", 1, s)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Forget("S", 1, 7); err != nil { // inside the range [6, 8]
		t.Fatal(err)
	}
	checkHas(t, l, true, ids("S", 1, 1, 2, 3, 4, 6, 7))
	checkHas(t, l, false, ids("S", 1, 5, 8, 9, 10))
	checkCommitted(t, l, "S", 1, 7)
	if err := l.Forget("S", 1, 2); err != nil { // below the low-water mark
		t.Fatal(err)
	}
	checkHas(t, l, true, ids("S", 1, 1, 2))
	checkHas(t, l, false, ids("S", 1, 3, 4, 6, 7))
	if err := l.Forget("S", 1, 0); err != nil { // everything
		t.Fatal(err)
	}
	checkCommitted(t, l, "S", 1, 0)
	if err := l.Forget("NONE", 1, 0); err != nil {
		t.Fatal(err)
	}
	if err := l.Fence(ledger.Rewind{Stream: "S", Epoch: 1, LastSeq: 0, Committed: 10}); err != nil {
		t.Fatal(err)
	}
	if _, ok := l.Fenced("S", 1); !ok {
		t.Fatal("a memory-only ledger lost its fence")
	}
}

// A damaged fence file is refused, with a message that names it, and
// changes nothing.
func TestLedger_DamagedFences(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, ledger.RewindName)
	for _, body := range []string{"{", `{"version": 9, "fences": []}`, `{"version": 1, "fences": [{"epoch": 1}]}`} {
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		l, err := ledger.Open(dir, ledger.Options{})
		if err == nil {
			l.Close()
			t.Fatalf("Open accepted the fence file %q", body)
		}
		if !errors.Is(err, ledger.ErrDamaged) {
			t.Fatalf("Open(%q) = %v, want ErrDamaged", body, err)
		}
		if b, _ := os.ReadFile(path); string(b) != body {
			t.Fatalf("Open changed the fence file to %q", b)
		}
	}
}

// Sequence 0 is reserved: it is never remembered, so a record of it is
// never dropped as a duplicate.
func TestLedger_SequenceZeroNeverDuplicate(t *testing.T) {
	l := ledger.NewMemory(ledger.Options{})
	if _, err := l.Commit(ledger.Point{}, ids("S", 1, 0, 1)); err != nil {
		t.Fatal(err)
	}
	checkHas(t, l, false, ids("S", 1, 0))
	checkHas(t, l, true, ids("S", 1, 1))
	checkCommitted(t, l, "S", 1, 1)
}
