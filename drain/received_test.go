package drain_test

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/drain"
)

// checkReceived checks that each line is "<ns>\t<want line>" with ns
// between from and to.
func checkReceived(t *testing.T, got, want []string, from, to time.Time) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d lines, want %d: %q", len(got), len(want), got)
	}
	for i, l := range got {
		ts, rest, ok := strings.Cut(l, "\t")
		ns, err := strconv.ParseInt(ts, 10, 64)
		if !ok || err != nil || rest != want[i] {
			t.Fatalf("line %d = %q, want <ns>\\t%q", i, l, want[i])
		}
		if at := time.Unix(0, ns); at.Before(from) || at.After(to) {
			t.Errorf("line %d stamped %v, outside the test's %v .. %v", i, at, from, to)
		}
	}
}

func TestWriteReceived(t *testing.T) {
	t.Run("lines", func(t *testing.T) {
		r := start(t, drain.Options{WriteReceived: true})
		from := time.Now()
		c := dial(t, r.Addr())
		if _, err := fmt.Fprint(c, "{\"a\":1}\n{\"b\":2}\n{\"c\""); err != nil {
			t.Fatal(err)
		}
		if _, err := fmt.Fprint(c, ":3}\n"); err != nil {
			t.Fatal(err)
		}
		c.Close()
		if err := r.stop(); err != nil {
			t.Fatal(err)
		}
		checkReceived(t, readAll(t, r.out), []string{`{"a":1}`, `{"b":2}`, `{"c":3}`}, from, time.Now())
	})
	t.Run("acked, with identity", func(t *testing.T) {
		r := startAcked(t, drain.Options{WriteReceived: true, WriteIdentity: true})
		from := time.Now()
		a := dialAcked(t, r.Addr(), "t-1")
		a.sendAcked(1, msgs("S", 1, 2, 1))
		if err := r.stop(); err != nil {
			t.Fatal(err)
		}
		checkReceived(t, readAll(t, r.out), []string{`S:1:0	{"s":"S","seq":1,"i":0}`, `S:2:0	{"s":"S","seq":2,"i":0}`}, from, time.Now())
	})
}
