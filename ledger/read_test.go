package ledger_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-dev/sluice/ledger"
)

func TestReadCommitted_NoJournal(t *testing.T) {
	dir := t.TempDir()
	long := strings.Repeat("L", 600<<10) // longer than ReadCommitted's buffer
	files := map[string]string{
		"sluice-20250101T000000.000Z-000002.jsonl": "c\n" + long + "\nd\n",
		"sluice-20250101T000000.000Z-000001.jsonl": "a\nb\n",
		"sluice-20250101T000000.000Z-000003.jsonl": "e\ntorn", // a crash mid-write
		"notes.txt":          "ignored\n",
		"other.jsonl":        "ignored\n",
		".sluice-probe-123":  "ignored\n",
		"sluice-x.jsonl.tmp": "ignored\n",
		"sluice-20250101T000000.000Z-000000.jsonl": "",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	got := readAll(t, dir)
	want := []string{"a", "b", "c", long, "d", "e", "torn"}
	if len(got) != len(want) {
		t.Fatalf("%d lines, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("line %d: got %.20q, want %.20q", i, got[i], want[i])
		}
	}

	stop := errors.New("stop here")
	n := 0
	err := ledger.ReadCommitted(dir, func([]byte) error {
		if n++; n == 2 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 2 {
		t.Fatalf("ReadCommitted = %v after %d lines, want the callback's error after 2", err, n)
	}
	if err := ledger.ReadCommitted(filepath.Join(dir, "missing"), func([]byte) error { return nil }); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("ReadCommitted of a missing dir = %v", err)
	}
}
