package load_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/load"
)

func BenchmarkAppendRecord(b *testing.B) {
	buf := make([]byte, 0, 1024)
	r := load.Record{Run: "r0123456789ab", Key: 7, TS: time.Now().UnixNano(), Size: 200}
	b.SetBytes(200)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		r.Seq = int64(i + 1)
		buf = load.AppendRecord(buf[:0], r)
	}
}

func BenchmarkParse(b *testing.B) {
	line := load.AppendRecord(nil, load.Record{Run: "r0123456789ab", Seq: 123456, Key: 7, TS: time.Now().UnixNano(), Size: 200})
	b.Run("scanner", func(b *testing.B) {
		b.SetBytes(int64(len(line)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := load.ParseRecord(line); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding_json", func(b *testing.B) {
		b.SetBytes(int64(len(line)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := load.ParseStd(line); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkVerifierObserve(b *testing.B) {
	const n = 1 << 16
	lines := make([][]byte, n)
	ts := time.Now().UnixNano()
	for i := range lines {
		lines[i] = load.AppendRecord(nil, load.Record{Run: "r0123456789ab", Seq: int64(i + 1), Key: i % 16, TS: ts, Size: 200})
	}
	now := time.Now()
	b.ReportAllocs()
	b.Run("serial", func(b *testing.B) {
		v := load.NewVerifier("r0123456789ab", n)
		for i := 0; b.Loop(); i++ {
			v.Observe(lines[i%n], now) // after the first n: duplicates, same cost
		}
	})
	b.Run("parallel", func(b *testing.B) {
		v := load.NewVerifier("r0123456789ab", n)
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				v.Observe(lines[i%n], now)
				i++
			}
		})
	})
}

// BenchmarkGenerate publishes b.N records to an embedded JetStream server;
// rec/s is the acknowledged record rate.
func BenchmarkGenerate(b *testing.B) {
	for _, c := range []struct {
		per     int
		noMsgID bool
	}{{1, false}, {1, true}, {10, false}, {100, false}} {
		name := fmt.Sprintf("per-message=%d", c.per)
		if c.noMsgID {
			name += "/no-msg-id"
		}
		b.Run(name, func(b *testing.B) {
			js := startJS(b)
			b.SetBytes(200)
			b.ResetTimer()
			res, err := load.Generate(context.Background(), js, load.GenOptions{Count: int64(b.N), PerMessage: c.per, NoMsgID: c.noMsgID}, nil)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(res.RecordsPerSecond(), "rec/s")
		})
	}
}
