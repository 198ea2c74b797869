package load_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/sluice-dev/sluice/load"
)

func TestTail_Poll(t *testing.T) {
	dir := t.TempDir()
	var got []string
	collect := func(l []byte) { got = append(got, string(l)) }
	tail := load.NewTail(filepath.Join(dir, "not-yet"))
	if n, err := tail.Poll(collect); n != 0 || err != nil {
		t.Fatalf("missing dir: %d, %v", n, err)
	}
	tail = load.NewTail(dir)
	a := filepath.Join(dir, "sluice-1-000001.jsonl")
	if err := os.WriteFile(a, []byte("one\ntw"), 0o600); err != nil {
		t.Fatal(err)
	}
	if n, _ := tail.Poll(collect); n != 1 {
		t.Fatalf("first poll handed %d lines, want 1 (the second is incomplete)", n)
	}
	f, _ := os.OpenFile(a, os.O_APPEND|os.O_WRONLY, 0)
	_, _ = f.WriteString("o\nthree\r\n")
	f.Close()
	_ = os.WriteFile(filepath.Join(dir, "sluice-1-000002.jsonl"), []byte("four\n"), 0o600)
	_ = os.WriteFile(filepath.Join(dir, "other.txt"), []byte("ignored\n"), 0o600)
	if n, _ := tail.Poll(collect); n != 3 {
		t.Fatalf("second poll handed %d lines, want 3", n)
	}
	if n, _ := tail.Poll(collect); n != 0 {
		t.Fatalf("third poll handed %d lines, want 0", n)
	}
	want := []string{"one", "two", "three", "four"}
	if len(got) != len(want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
}
