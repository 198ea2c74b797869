package ledger_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/ledger"
	"github.com/sluice-dev/sluice/record"
)

// ids returns the message identities of seqs in one stream incarnation.
func ids(stream string, epoch uint64, seqs ...uint64) []record.MsgID {
	out := make([]record.MsgID, len(seqs))
	for i, s := range seqs {
		out[i] = record.MsgID{Stream: stream, Epoch: epoch, Seq: s}
	}
	return out
}

func open(t testing.TB, dir string, opts ledger.Options) *ledger.Ledger {
	t.Helper()
	l, err := ledger.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// writer appends lines to output files the way a drainer does and returns
// the commit point after each write.
type writer struct {
	t    testing.TB
	dir  string
	ts   time.Time // of the file names; zero: 2025-01-01
	name string
	size int64
	seq  int
}

// next starts a new output file.
func (w *writer) next() {
	w.seq++
	if w.ts.IsZero() {
		w.ts = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	w.name, w.size = ledger.FileName(w.ts, w.seq), 0
}

func (w *writer) write(lines ...string) ledger.Point {
	w.t.Helper()
	if w.name == "" {
		w.next()
	}
	f, err := os.OpenFile(filepath.Join(w.dir, w.name), os.O_WRONLY|os.O_CREATE|os.O_APPEND, ledger.FilePerm)
	if err != nil {
		w.t.Fatal(err)
	}
	for _, l := range lines {
		n, err := f.WriteString(l + "\n")
		if err != nil {
			w.t.Fatal(err)
		}
		w.size += int64(n)
	}
	if err := f.Close(); err != nil {
		w.t.Fatal(err)
	}
	return ledger.Point{File: w.name, Length: w.size}
}

func checkHas(t testing.TB, l *ledger.Ledger, want bool, ids []record.MsgID) {
	t.Helper()
	for _, id := range ids {
		if got := l.Has(id); got != want {
			t.Errorf("Has(%+v) = %v, want %v", id, got, want)
		}
	}
}

func checkCommitted(t testing.TB, l *ledger.Ledger, stream string, epoch, want uint64) {
	t.Helper()
	got, ok := l.Committed(stream, epoch)
	if want == 0 && ok || want != 0 && (!ok || got != want) {
		t.Errorf("Committed(%q, %d) = %d, %v; want %d", stream, epoch, got, ok, want)
	}
}

func commit(t testing.TB, l *ledger.Ledger, p ledger.Point, ids []record.MsgID) int {
	t.Helper()
	evicted, err := l.Commit(p, slices.Clone(ids))
	if err != nil {
		t.Fatal(err)
	}
	return evicted
}

// Two incarnations of a stream are two dedup spaces: the second one's
// sequences 1, 2, 3 are not duplicates of the first one's, both are
// committed, and a reopened ledger still tells them apart.
func TestLedger_Incarnations(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, ledger.Options{})
	w := &writer{t: t, dir: dir}
	old, fresh := ids("INGEST", 1, 1, 2, 3), ids("INGEST", 2, 1, 2, 3)
	commit(t, l, w.write("old 1", "old 2", "old 3"), old)
	checkHas(t, l, true, old)
	checkHas(t, l, false, fresh)
	checkHas(t, l, false, ids("INGEST", 0, 1)) // epoch 0 (unknown) is one more space
	commit(t, l, w.write("new 1", "new 2", "new 3"), fresh)
	checkHas(t, l, true, fresh)
	checkCommitted(t, l, "INGEST", 1, 3)
	checkCommitted(t, l, "INGEST", 2, 3)
	checkCommitted(t, l, "INGEST", 0, 0)
	checkCommitted(t, l, "OTHER", 1, 0)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	l2 := open(t, dir, ledger.Options{})
	checkHas(t, l2, true, append(slices.Clone(old), fresh...))
	checkHas(t, l2, false, ids("INGEST", 1, 4))
	checkHas(t, l2, false, ids("INGEST", 3, 1))
	checkCommitted(t, l2, "INGEST", 1, 3)
	checkCommitted(t, l2, "INGEST", 2, 3)
	if got, want := readAll(t, dir), []string{"old 1", "old 2", "old 3", "new 1", "new 2", "new 3"}; !slices.Equal(got, want) {
		t.Fatalf("committed %q, want %q", got, want)
	}
}

// testdata/v1 is an output directory written by the drainer of journal
// version 1 (before epochs): a snapshot with INGEST low 3, ranges [7,7]
// [9,10] and OTHER [5,5], then a commit of OTHER 6.
func TestLedger_OpenVersion1(t *testing.T) {
	dir := copyDir(t, "testdata/v1")
	names, _ := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	slices.Sort(names)
	want := readAll(t, dir)
	if len(want) != 12 {
		t.Fatalf("fixture holds %d committed lines, want 12", len(want))
	}
	// A crash after the write and before the commit, under version 1.
	appendFile(t, names[len(names)-1], "{\"never\":\"committed\"}\n")
	later := filepath.Join(dir, "sluice-29990101T000000.000Z-000009.jsonl")
	if err := os.WriteFile(later, []byte("{\"never\":1}\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	l := open(t, dir, ledger.Options{})
	checkHas(t, l, true, ids("INGEST", 0, 1, 2, 3, 7, 9, 10))
	checkHas(t, l, false, ids("INGEST", 0, 4, 5, 6, 8, 11))
	checkHas(t, l, true, ids("OTHER", 0, 5, 6))
	checkHas(t, l, false, ids("OTHER", 0, 1, 4, 7))
	checkHas(t, l, false, ids("INGEST", 1, 1))
	checkCommitted(t, l, "INGEST", 0, 10)
	checkCommitted(t, l, "OTHER", 0, 6)
	if got := readAll(t, dir); !slices.Equal(got, want) {
		t.Fatalf("after recovery %q, want %q", got, want)
	}
	if _, err := os.Stat(later); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("uncommitted later file still there: %v", err)
	}
	b, err := os.ReadFile(filepath.Join(dir, ledger.JournalName))
	if err != nil {
		t.Fatal(err)
	}
	if v := binary.BigEndian.Uint16(b[8+1+8:]); v != 2 {
		t.Fatalf("journal version %d after Open, want it rewritten as 2", v)
	}

	// Commits append to the rewritten journal, and it reopens.
	w := &writer{t: t, dir: dir, ts: time.Now().Add(time.Hour)} // after the fixture's files
	commit(t, l, w.write("x"), ids("INGEST", 0, 4))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l2 := open(t, dir, ledger.Options{})
	checkHas(t, l2, true, ids("INGEST", 0, 1, 2, 3, 4, 7, 9, 10))
	checkHas(t, l2, true, ids("OTHER", 0, 5, 6))
	checkCommitted(t, l2, "INGEST", 0, 10)
	if got := readAll(t, dir); !slices.Equal(got, append(want, "x")) {
		t.Fatalf("after reopen %q", got)
	}
}

// Records written after the last commit are not committed: ReadCommitted
// leaves them out without changing anything, and Open removes them, as it
// drops a torn last journal record.
func TestLedger_Recovery(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, ledger.Options{})
	w := &writer{t: t, dir: dir}
	commit(t, l, w.write("a", "b"), ids("S", 0, 1, 2))
	first := w.name
	w.write("c") // written, never committed
	w.next()
	w.write("d") // a new file, never committed
	second := w.name
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	journal := filepath.Join(dir, ledger.JournalName)
	st, err := os.Stat(journal)
	if err != nil {
		t.Fatal(err)
	}
	appendFile(t, journal, "\x00\x00\x00\x40torn") // a commit cut short

	for range 2 { // reading changes nothing
		if got := readAll(t, dir); !slices.Equal(got, []string{"a", "b"}) {
			t.Fatalf("ReadCommitted %q, want a, b", got)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(dir, first)); string(b) != "a\nb\nc\n" {
		t.Fatalf("ReadCommitted changed %s: %q", first, b)
	}

	l2 := open(t, dir, ledger.Options{})
	checkHas(t, l2, true, ids("S", 0, 1, 2))
	checkHas(t, l2, false, ids("S", 0, 3))
	if b, _ := os.ReadFile(filepath.Join(dir, first)); string(b) != "a\nb\n" {
		t.Fatalf("%s after Open: %q, want the committed a, b", first, b)
	}
	if _, err := os.Stat(filepath.Join(dir, second)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("uncommitted %s still there: %v", second, err)
	}
	if st2, err := os.Stat(journal); err != nil || st2.Size() != st.Size() {
		t.Fatalf("journal after Open: %v, %v; want the torn record cut (%d bytes)", st2.Size(), err, st.Size())
	}
}

// A new journal takes the output files already in the directory as
// committed (they predate it); without a journal every line is read.
func TestLedger_NewJournalTakesExistingFiles(t *testing.T) {
	dir := t.TempDir()
	w := &writer{t: t, dir: dir}
	w.write("x", "y")
	appendFile(t, filepath.Join(dir, w.name), "torn")
	if got := readAll(t, dir); !slices.Equal(got, []string{"x", "y", "torn"}) {
		t.Fatalf("without a journal %q", got)
	}
	l := open(t, dir, ledger.Options{})
	checkCommitted(t, l, "S", 0, 0)
	if got := readAll(t, dir); !slices.Equal(got, []string{"x", "y", "torn"}) {
		t.Fatalf("with a new journal %q", got)
	}
	appendFile(t, filepath.Join(dir, w.name), "\nlater\n")
	if got := readAll(t, dir); !slices.Equal(got, []string{"x", "y", "torn"}) {
		t.Fatalf("after an uncommitted write %q", got)
	}
}

func TestLedger_InUse(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, ledger.Options{})
	if _, err := ledger.Open(dir, ledger.Options{}); !errors.Is(err, ledger.ErrInUse) {
		t.Fatalf("second Open = %v, want ErrInUse", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	open(t, dir, ledger.Options{})
}

// journalRecord frames body as a journal record.
func journalRecord(body []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(body)))
	b = binary.BigEndian.AppendUint32(b, crc32.Checksum(body, crc32.MakeTable(crc32.Castagnoli)))
	return append(b, body...)
}

// emptySnapshot is a snapshot body of version v, point "" 0, no streams.
func emptySnapshot(v uint16) []byte {
	b := append([]byte{'S'}, "SLUICEDJ"...)
	b = binary.BigEndian.AppendUint16(b, v)
	b = append(b, 0, 0)                        // file ""
	b = binary.BigEndian.AppendUint64(b, 0)    // length
	return binary.BigEndian.AppendUint32(b, 0) // streams
}

func TestLedger_Refuses(t *testing.T) {
	for _, tc := range []struct {
		name    string
		journal []byte
		file    string // an output file's content, if any
		want    error
	}{
		{"not a journal", []byte("hello, I am a text file\n"), "", ledger.ErrDamaged},
		{"version 3", journalRecord(emptySnapshot(3)), "", ledger.ErrUnknownVersion},
		{"version 0", journalRecord(emptySnapshot(0)), "", ledger.ErrUnknownVersion},
		{"commit first", journalRecord(append([]byte{'C'}, make([]byte, 14)...)), "", ledger.ErrDamaged},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, ledger.JournalName)
			if err := os.WriteFile(path, tc.journal, 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := ledger.Open(dir, ledger.Options{}); !errors.Is(err, tc.want) {
				t.Fatalf("Open = %v, want %v", err, tc.want)
			}
			if b, _ := os.ReadFile(path); string(b) != string(tc.journal) {
				t.Fatal("Open changed a journal it refused")
			}
		})
	}
	t.Run("committed file shorter than its point", func(t *testing.T) {
		dir := t.TempDir()
		l := open(t, dir, ledger.Options{})
		w := &writer{t: t, dir: dir}
		commit(t, l, w.write("a", "b"), ids("S", 0, 1))
		l.Close()
		if err := os.Truncate(filepath.Join(dir, w.name), 2); err != nil {
			t.Fatal(err)
		}
		if _, err := ledger.Open(dir, ledger.Options{}); !errors.Is(err, ledger.ErrDamaged) {
			t.Fatalf("Open = %v, want ErrDamaged", err)
		}
	})
}

// Past the bound the lowest range is forgotten (its messages would be
// written again), and the low-water mark never jumps a gap.
func TestLedger_DedupBound(t *testing.T) {
	l := ledger.NewMemory(ledger.Options{DedupSpans: 2})
	defer l.Close()
	p := ledger.Point{}
	if n := commit(t, l, p, ids("S", 0, 2, 4)); n != 0 {
		t.Fatalf("evicted %d with 2 ranges", n)
	}
	if n := commit(t, l, p, ids("S", 0, 6)); n != 1 {
		t.Fatalf("evicted %d with 3 ranges and a bound of 2, want 1", n)
	}
	checkHas(t, l, false, ids("S", 0, 1, 2, 3, 5))
	checkHas(t, l, true, ids("S", 0, 4, 6))
	checkCommitted(t, l, "S", 0, 6)
	commit(t, l, p, ids("S", 0, 1, 3))
	checkHas(t, l, true, ids("S", 0, 1, 3, 4))
	checkHas(t, l, false, ids("S", 0, 2)) // still forgotten
	if got := l.Entries(); got != 1+2 {
		t.Fatalf("Entries = %d, want 3 (one stream, ranges [1,1] [3,4] and [6,6] minus the evicted)", got)
	}
}

// The largest sequences do not wrap: a range ending at MaxUint64 merges
// with the one below it.
func TestLedger_LargestSequences(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, ledger.Options{})
	top := uint64(math.MaxUint64)
	commit(t, l, ledger.Point{}, ids("S", 0, top, top-2, top-1))
	checkHas(t, l, true, ids("S", 0, top, top-1, top-2))
	checkHas(t, l, false, ids("S", 0, top-3, 1))
	checkCommitted(t, l, "S", 0, top)
	if got := l.Entries(); got != 2 {
		t.Fatalf("Entries = %d, want 2: one stream, one range", got)
	}
	l.Close()
	l2 := open(t, dir, ledger.Options{JournalBytes: 1}) // compacts on the next commit
	checkHas(t, l2, true, ids("S", 0, top, top-1, top-2))
	commit(t, l2, ledger.Point{}, ids("S", 0, top-3))
	l2.Close()
	l3 := open(t, dir, ledger.Options{})
	checkHas(t, l3, true, ids("S", 0, top, top-1, top-2, top-3))
}

// Past JournalBytes the journal is compacted into a snapshot; a reopened
// ledger knows every message committed before and after.
func TestLedger_Compaction(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, ledger.Options{JournalBytes: 512})
	w := &writer{t: t, dir: dir}
	const n = 60
	for i := uint64(1); i <= n; i++ {
		// Odd sequences of epoch 1 (many ranges), all of epoch 2.
		commit(t, l, w.write(fmt.Sprint(i)), []record.MsgID{{Stream: "S", Epoch: 1, Seq: 2*i - 1}, {Stream: "S", Epoch: 2, Seq: i}})
	}
	st, err := os.Stat(filepath.Join(dir, ledger.JournalName))
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() > 2048 {
		t.Fatalf("journal is %d bytes after %d commits with JournalBytes 512: not compacted", st.Size(), n)
	}
	l.Close()
	l2 := open(t, dir, ledger.Options{})
	for i := uint64(1); i <= n; i++ {
		checkHas(t, l2, true, ids("S", 1, 2*i-1))
		checkHas(t, l2, false, ids("S", 1, 2*i))
		checkHas(t, l2, true, ids("S", 2, i))
	}
	checkCommitted(t, l2, "S", 1, 2*n-1)
	checkCommitted(t, l2, "S", 2, n)
	if got := len(readAll(t, dir)); got != n {
		t.Fatalf("%d committed lines, want %d", got, n)
	}
}

// Committed may be called from any goroutine while the committer commits
// (run with -race).
func TestLedger_CommittedWhileCommitting(t *testing.T) {
	l := ledger.NewMemory(ledger.Options{})
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		var last uint64
		for {
			select {
			case <-stop:
				return
			default:
			}
			if h, _ := l.Committed("S", 7); h < last {
				t.Errorf("Committed went back from %d to %d", last, h)
				return
			} else {
				last = h
			}
		}
	}()
	for i := uint64(1); i <= 2000; i++ {
		commit(t, l, ledger.Point{}, ids("S", 7, i))
	}
	close(stop)
	wg.Wait()
	checkCommitted(t, l, "S", 7, 2000)
}

func TestFileName(t *testing.T) {
	ts := time.Date(2025, 3, 4, 5, 6, 7, 891_234_567, time.FixedZone("X", 3600))
	name := ledger.FileName(ts, 42)
	if want := "sluice-20250304T040607.891Z-000042.jsonl"; name != want {
		t.Fatalf("FileName = %q, want %q", name, want)
	}
	got, seq, ok := ledger.ParseFileName(name)
	if !ok || seq != 42 || !got.Equal(ts.Truncate(time.Millisecond)) {
		t.Fatalf("ParseFileName(%q) = %v, %d, %v", name, got, seq, ok)
	}
	if ledger.FileName(ts, 10) <= ledger.FileName(ts, 9) {
		t.Fatal("names of one millisecond do not sort by sequence")
	}
	if ledger.FileName(ts.Add(time.Millisecond), 1) <= ledger.FileName(ts, 999_998) {
		t.Fatal("a later time does not sort after an earlier one")
	}
	for _, bad := range []string{"sluice-x.jsonl", "other.jsonl", "sluice-20250304T040607.891Z-000042.jsonl.tmp",
		"sluice-20250304T040607.891Z--1.jsonl", ledger.JournalName} {
		if _, _, ok := ledger.ParseFileName(bad); ok {
			t.Errorf("ParseFileName(%q) accepted it", bad)
		}
	}
}
