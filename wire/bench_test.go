package wire_test

import (
	"bytes"
	"testing"

	"github.com/sluice-dev/sluice/record"
	"github.com/sluice-dev/sluice/wire"
)

func benchRecords(n, size int) []record.Record {
	recs := make([]record.Record, n)
	for i := range recs {
		recs[i] = record.Record{ID: record.ID{Stream: "INGEST", Seq: uint64(1000 + i/10), Index: uint32(i % 10)}, Data: bytes.Repeat([]byte{'x'}, size)}
	}
	return recs
}

// BenchmarkAppendData encodes a DATA frame of 100 records of 200 bytes.
func BenchmarkAppendData(b *testing.B) {
	recs := benchRecords(100, 200)
	buf := make([]byte, 0, 64<<10)
	b.SetBytes(int64(wire.HeaderLen + wire.DataBodySize(recs)))
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = wire.AppendData(buf[:0], 1, recs, wire.Limits{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(recs)), "ns/record")
}

// BenchmarkReadFrame decodes the same frame, read through the Reader's
// buffer from an in-memory stream.
func BenchmarkReadFrame(b *testing.B) {
	recs := benchRecords(100, 200)
	frame, err := wire.AppendData(nil, 1, recs, wire.Limits{})
	if err != nil {
		b.Fatal(err)
	}
	rd := wire.NewReader(&repeatReader{data: frame})
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	for b.Loop() {
		f, err := rd.ReadFrame()
		if err != nil || len(f.Data.Records) != len(recs) {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(recs)), "ns/record")
}
