package drain_test

import (
	"bytes"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/drain"
)

// benchLines returns n 200-byte lines (newline included).
func benchLines(n int) []byte {
	var b bytes.Buffer
	for i := range n {
		head := fmt.Sprintf("{\"n\":%d,\"pad\":\"", i)
		b.WriteString(head)
		b.WriteString(strings.Repeat("x", 200-len(head)-3))
		b.WriteString("\"}\n")
	}
	return b.Bytes()
}

// BenchmarkServer_Lines measures lines/s of 200 bytes through connections
// to rotated files in a temporary directory, written in 64 KiB writes as
// the sink does. One op is one line.
func BenchmarkServer_Lines(b *testing.B) {
	for _, conns := range []int{1, 4} {
		b.Run(fmt.Sprintf("conns=%d", conns), func(b *testing.B) {
			r := start(b, drain.Options{Out: filepath.Join(b.TempDir(), "out")})
			block := benchLines(64 << 10 / 200) // 327 lines, about 64 KiB
			perBlock := bytes.Count(block, []byte{'\n'})
			blocks := (b.N + perBlock - 1) / perBlock
			cs := make([]net.Conn, conns)
			for i := range cs {
				cs[i] = dial(b, r.Addr())
			}
			b.SetBytes(200)
			b.ResetTimer()
			errc := make(chan error, conns)
			for i, c := range cs {
				go func() {
					for k := i; k < blocks; k += conns {
						if _, err := c.Write(block); err != nil {
							errc <- err
							return
						}
					}
					errc <- nil
				}()
			}
			for range conns {
				if err := <-errc; err != nil {
					b.Fatal(err)
				}
			}
			want := uint64(blocks * perBlock)
			waitFor(b, 5*time.Minute, func() error {
				if got := r.Stats().Records; got != want {
					return fmt.Errorf("%d of %d lines drained", got, want)
				}
				return nil
			})
			b.StopTimer()
			b.ReportMetric(float64(want)/b.Elapsed().Seconds(), "lines/s")
			for _, c := range cs {
				c.Close()
			}
			r.stop()
		})
	}
}
