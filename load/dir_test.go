package load_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/load"
)

func TestVerifyDir(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, mtime time.Time, lines ...[]byte) {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, bytes.Join(lines, []byte("\n")), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	var first, second [][]byte
	for s := int64(1); s <= 51; s++ {
		first = append(first, rec("run1", s))
	}
	first = append(first, bytes.Repeat([]byte("j"), 300<<10), []byte("")) // a long junk line; ends with "\n"
	for s := int64(52); s <= 100; s++ {
		second = append(second, append(rec("run1", s), '\r')) // CRLF line ends
	}
	second = append(second, rec("run1", 101)) // last line without newline
	// Written second-name first: the reader must go by name, not by creation.
	write("sluice-20250101T000001Z-000002.jsonl", t0.Add(2*time.Second), second...)
	write("sluice-20250101T000000Z-000001.jsonl", t0.Add(time.Second), first...)
	write("notes.txt", t0, []byte("not output"))
	if err := os.Mkdir(filepath.Join(dir, "sub.jsonl"), 0o700); err != nil {
		t.Fatal(err)
	}

	v := load.NewVerifier("run1", 101)
	if err := load.VerifyDir(dir, v); err != nil {
		t.Fatal(err)
	}
	r := v.Report()
	if r.Received != 101 || r.Lost != 0 || r.Junk != 1 || r.OutOfOrder != 0 || r.Lines != 102 {
		t.Fatalf("report = %+v", r)
	}
	// Latency is the file's mtime minus ts: 1 s for the first file, 2 s
	// for the second (51 and 50 lines), to 3 significant digits.
	if l := r.Latency; !near(l.P50, time.Second) || !near(l.Max, 2*time.Second) {
		t.Fatalf("latency p50 %v max %v, want 1s 2s", l.P50, l.Max)
	}
}

func TestVerifyDir_Errors(t *testing.T) {
	v := load.NewVerifier("run1", 1)
	if err := load.VerifyDir(t.TempDir(), v); !errors.Is(err, load.ErrNoFiles) {
		t.Fatalf("empty dir: err = %v, want ErrNoFiles", err)
	}
	if err := load.VerifyDir(filepath.Join(t.TempDir(), "missing"), v); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing dir: err = %v, want ErrNotExist", err)
	}
}

// near reports whether got is want to 3 significant digits (HdrHistogram's
// precision here).
func near(got, want time.Duration) bool {
	d := got - want
	return d >= -want/1000 && d <= want/1000
}
