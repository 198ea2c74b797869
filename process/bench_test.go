package process_test

import (
	"fmt"
	"testing"

	"github.com/sluice-dev/sluice/pipeline"
	"github.com/sluice-dev/sluice/process"
)

// benchRecord is the 200-byte record of the pipeline's benchmarks.
var benchRecord = []byte(`{"id":"r1-42","run":"r1","seq":42,"key":"k3","ts":1732460000123456789,"user":{"name":"ada","age":42},"amount":12.5,"tags":["a","b"],"ok":true,"pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}`)

// eventRecords are 200-byte event records with distinct values, for the
// transform benchmark (so that nothing is cached across records).
var eventRecords = func() [][]byte {
	out := make([][]byte, 1024)
	for i := range out {
		out[i] = fmt.Appendf(nil, `{"id":"e-%06d","event":"click","user":"user%04d","password":"s3cr3t-%05d","amount":%d.25,"geo":{"country":"FR","city":"Paris"},"ts":17324600%011d,"tags":["a","b"],"ok":true}`,
			i, i%5000, i*7, i%977, i*1_000_003)
	}
	return out
}()

func benchmark(b *testing.B, w pipeline.Worker, recs [][]byte) {
	b.Helper()
	var n int64
	for _, r := range recs {
		n += int64(len(r))
	}
	b.SetBytes(n / int64(len(recs)))
	buf := make([]byte, 0, 64<<10)
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		if len(buf) > 60<<10 {
			buf = buf[:0] // the pipeline starts a new chunk
		}
		out, nbuf, err := w.Process(pipeline.Input{Subject: "ingest.bench", Data: recs[i]}, buf)
		if err != nil || out == nil {
			b.Fatalf("record %s: %q, %v", recs[i], out, err)
		}
		buf = nbuf
		if i++; i == len(recs) {
			i = 0
		}
	}
}

// BenchmarkValidateOnly is the gate alone, with no steps: what sluice does
// by default.
func BenchmarkValidateOnly(b *testing.B) {
	benchmark(b, process.Validator{}.NewWorker(), [][]byte{benchRecord})
}

// BenchmarkValidateOnlyEvents is the gate alone on the event records.
func BenchmarkValidateOnlyEvents(b *testing.B) {
	benchmark(b, process.Validator{}.NewWorker(), eventRecords)
}

// BenchmarkFilterSet2Delete1 is the gate, a filter, a set of two fields
// and a delete of one.
func BenchmarkFilterSet2Delete1(b *testing.B) {
	p, err := process.New(process.Options{Steps: []process.Step{
		{Filter: `event != "drop"`},
		{Set: []process.Assignment{{Path: "ingested_at", Expr: "now()"}, {Path: "user", Expr: "upper(user)"}}},
		{Delete: []string{"password"}},
	}})
	if err != nil {
		b.Fatal(err)
	}
	benchmark(b, p.NewWorker(), eventRecords)
}

// BenchmarkIssueExample runs the five steps of the issue's example.
func BenchmarkIssueExample(b *testing.B) {
	p, err := process.New(process.Options{Steps: issueSteps})
	if err != nil {
		b.Fatal(err)
	}
	benchmark(b, p.NewWorker(), eventRecords)
}
