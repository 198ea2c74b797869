package drain_test

import (
	"bytes"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/internal/testkit"

	"github.com/sluice-dev/sluice/drain"
)

// FuzzLines feeds arbitrary bytes, in writes of arbitrary size, through a
// real connection and checks the output against a one-line-at-a-time model:
// every complete line before the first line longer than MaxLine comes out
// whole and in order, nothing else does, and the connection's end is
// accounted for as torn line, line too long, or clean.
func FuzzLines(f *testing.F) {
	const maxLine = 64
	f.Add([]byte("{\"a\":1}\n{\"b\":2}\n"), uint8(3))
	f.Add([]byte("one\ntwo\nthr"), uint8(1))
	f.Add([]byte("\n\n\n"), uint8(0))
	f.Add(append(bytes.Repeat([]byte("x"), maxLine), '\n'), uint8(7))
	f.Add(append([]byte("ok\n"), bytes.Repeat([]byte("y"), maxLine+1)...), uint8(200))
	f.Add(bytes.Repeat([]byte("z"), maxLine), uint8(5))

	var out testkit.SyncBuffer
	r := start(f, drain.Options{Out: "-", Stdout: &out, MaxLine: maxLine})
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		before := r.Stats()
		outBefore := len(out.String())

		// The model.
		var want []byte
		tooLong, torn := false, false
		for rest := data; len(rest) > 0; {
			i := bytes.IndexByte(rest, '\n')
			if i < 0 {
				tooLong, torn = len(rest) > maxLine, len(rest) <= maxLine
				break
			}
			if i > maxLine {
				tooLong = true
				break
			}
			want = append(want, rest[:i+1]...)
			rest = rest[i+1:]
		}

		c, err := net.Dial("unix", r.Addr())
		if err != nil {
			t.Fatal(err)
		}
		step := int(chunk) + 1
		for p := data; len(p) > 0; {
			n := min(step, len(p))
			if _, err := c.Write(p[:n]); err != nil {
				break // the drainer closed a connection with a line too long
			}
			p = p[n:]
		}
		c.Close()
		testkit.WaitFor(t, 10*time.Second, func() error {
			if st := r.Stats(); st.Connections != before.Connections+1 || st.Open != 0 {
				return fmt.Errorf("connection not finished: %+v", st)
			}
			return nil
		})
		after := r.Stats()
		if got := out.String()[outBefore:]; got != string(want) {
			t.Fatalf("output %q, want %q", got, want)
		}
		if got, w := after.ConnErrors-before.ConnErrors, b2u(tooLong); got != w {
			t.Fatalf("connection errors +%d, want +%d", got, w)
		}
		if got, w := after.TornLines-before.TornLines, b2u(torn); got != w {
			t.Fatalf("torn lines +%d, want +%d", got, w)
		}
		if got, w := after.Records-before.Records, uint64(bytes.Count(want, []byte{'\n'})); got != w {
			t.Fatalf("records +%d, want +%d", got, w)
		}
	})
}

func b2u(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}
