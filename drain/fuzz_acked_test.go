package drain_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/internal/testkit"

	"github.com/sluice-dev/sluice/drain"
	"github.com/sluice-dev/sluice/wire"
)

// FuzzAcked feeds arbitrary bytes to a drainer's acked connection handler
// through a real connection, in writes of arbitrary size, and checks it
// against a model built on package wire: the drainer never panics, the
// connection always ends, and the output is exactly the new records of the
// valid DATA frames before the first invalid one: nothing of an invalid
// frame is written. Seeds are in testdata/fuzz/FuzzAcked.
func FuzzAcked(f *testing.F) {
	hello, _ := wire.AppendHello(nil, wire.Hello{MinVersion: wire.Version, MaxVersion: wire.Version, Instance: "fz"})
	d1, _ := wire.AppendData(nil, 1, msgs("S", 1, 2, 2), wire.Limits{})
	d2, _ := wire.AppendData(nil, 2, append(msg("S", 2, 2), msg("T", 5, 1)...), wire.Limits{})
	f.Add(append(append(bytes.Clone(hello), d1...), d2...), uint8(0))
	f.Add(append(bytes.Clone(hello), d1[:len(d1)-3]...), uint8(4))
	bad := append(bytes.Clone(hello), d1...)
	bad[len(bad)-1] ^= 0xff
	f.Add(bad, uint8(1))

	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		// A drainer per input: its dedup memory starts empty, as the
		// model's does.
		var out testkit.SyncBuffer
		r := start(t, drain.Options{Framing: wire.FramingAcked, Out: "-", Stdout: &out, FrameTimeout: 200 * time.Millisecond})
		want, windowHit := modelAcked(data)
		before := r.Stats()
		outBefore := 0

		c, err := net.Dial("unix", r.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		done := make(chan struct{})
		go func() { // read whatever comes back until the drainer closes
			defer close(done)
			c.SetReadDeadline(time.Now().Add(30 * time.Second))
			io.Copy(io.Discard, c)
		}()
		step := int(chunk) + 1
		for p := data; len(p) > 0; {
			n := min(step, len(p))
			if _, err := c.Write(p[:n]); err != nil {
				break // the drainer closed the connection
			}
			p = p[n:]
		}
		c.(*net.UnixConn).CloseWrite()
		<-done
		testkit.WaitFor(t, 30*time.Second, func() error {
			if st := r.Stats(); st.Connections != before.Connections+1 || st.Open != 0 {
				return fmt.Errorf("connection not finished: %+v", st)
			}
			return nil
		})
		select {
		case err := <-r.served:
			t.Fatalf("the drainer stopped: %v", err)
		default:
		}
		got := out.String()[outBefore:]
		if windowHit { // the model cannot know when the drainer acked
			if !strings.HasPrefix(want, got) {
				t.Fatalf("output %q is not a prefix of %q", got, want)
			}
			return
		}
		if got != want {
			t.Fatalf("output %q, want %q", got, want)
		}
	})
}

// modelAcked returns the output a drainer (stdout, no identity, fresh dedup
// memory) must write for a connection that sends data and then ends, and
// whether the input overran the window, which the model cannot judge.
func modelAcked(data []byte) (string, bool) {
	rd := wire.NewReader(bytes.NewReader(data))
	rd.Limits.MaxFrameBytes = wire.MaxHandshakeBytes
	var st wire.ServerState
	f, err := rd.ReadFrame()
	if err != nil {
		return "", false
	}
	w, err := st.Hello(f, wire.Welcome{})
	if err != nil {
		return "", false
	}
	rd.Limits = w.Limits()
	seen := map[string]bool{}
	var out strings.Builder
	for {
		f, err := rd.ReadFrame()
		if err != nil {
			return out.String(), false
		}
		if err := st.Receive(f); err != nil {
			var pe *wire.ProtocolError
			return out.String(), errors.As(err, &pe) && pe.Code == wire.CodeWindowExceeded
		}
		fresh := map[string]bool{}
		for _, r := range f.Data.Records {
			k := fmt.Sprintf("%s\x00%d", r.ID.Stream, r.ID.Seq)
			if seen[k] && !fresh[k] {
				continue
			}
			fresh[k] = true
			out.WriteString(strings.NewReplacer("\n", " ", "\r", " ").Replace(string(r.Data)))
			out.WriteByte('\n')
		}
		for k := range fresh {
			seen[k] = true
		}
	}
}
