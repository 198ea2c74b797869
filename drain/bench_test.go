package drain_test

import (
	"bytes"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/internal/testkit"
	"github.com/sluice-dev/sluice/record"

	"github.com/sluice-dev/sluice/drain"
	"github.com/sluice-dev/sluice/wire"
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
			testkit.WaitFor(b, 5*time.Minute, func() error {
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

// BenchmarkServer_Acked measures acked records/s of 200 bytes into files
// with fsync (group commit), frames of about 64 KiB (327 records, one
// message each), each connection keeping up to its window in flight. One op
// is one record.
func BenchmarkServer_Acked(b *testing.B) {
	for _, conns := range []int{1, 4} {
		b.Run(fmt.Sprintf("conns=%d", conns), func(b *testing.B) {
			r := start(b, drain.Options{Framing: wire.FramingAcked, Out: filepath.Join(b.TempDir(), "out")})
			const perFrame = 64 << 10 / 200
			frames := (b.N + perFrame - 1) / perFrame
			cs := make([]*ackedClient, conns)
			for i := range cs {
				cs[i] = dialAcked(b, r.Addr(), fmt.Sprintf("bench-%d", i))
			}
			pad := strings.Repeat("x", 200-40)
			b.SetBytes(200)
			b.ResetTimer()
			errc := make(chan error, conns)
			for i, c := range cs {
				go func() {
					stream := fmt.Sprintf("B%d", i)
					recs := make([]record.Record, perFrame)
					var sent, id uint64
					for k := i; k < frames; k += conns {
						for j := range recs {
							seq := uint64(k*perFrame + j + 1)
							recs[j] = record.Record{ID: record.ID{Stream: stream, Seq: seq}, Data: fmt.Appendf(recs[j].Data[:0], `{"n":%d,"pad":"%s"}`, seq, pad)}
						}
						for !c.st.CanSend() {
							if _, err := c.readAck(time.Minute); err != nil {
								errc <- err
								return
							}
						}
						id++
						if err := c.send(id, recs); err != nil {
							errc <- err
							return
						}
						sent = id
					}
					for c.st.Unacked() > 0 {
						if _, err := c.readAck(time.Minute); err != nil {
							errc <- err
							return
						}
					}
					_ = sent
					errc <- nil
				}()
			}
			for range conns {
				if err := <-errc; err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			recs := r.Stats().Records
			b.ReportMetric(float64(recs)/b.Elapsed().Seconds(), "records/s")
			commits, fr := histCount(b, r.reg, "sluice_drain_commit_frames")
			b.ReportMetric(fr/float64(max(commits, 1)), "frames/commit")
			r.stop()
		})
	}
}
