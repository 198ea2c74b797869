package main

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/config"
)

// BenchmarkEndToEndProcessing measures the records/s of the whole path
// (embedded queue, 2 workers, lines framing, in-process drainer writing
// files) with the JSON gate alone and with the three-step transform
// (filter, set two fields, delete one), 100 records a message: the queue
// is preloaded while no drainer listens (the pipeline fetches and
// processes up to its in-flight bound, 50,000 records, before the drainer
// comes, for both), and the clock runs from the drainer's start until
// every message is acked. Each op runs the gate alone, the transform, and
// the transform with pipeline.order_by, back to back so that they see the
// same load, and reports the ratios transform/validate and
// ordered/transform. One op is one run of 300,000 records of each;
// run it with -benchtime 1x -count N.
func BenchmarkEndToEndProcessing(b *testing.B) {
	const msgs, perMsg = 3000, 100
	var sb strings.Builder
	for i := range perMsg {
		fmt.Fprintf(&sb, `{"id":"e-%06d","event":"click","user":"user%04d","password":"s3cr3t-%05d","amount":%d.25,"geo":{"country":"FR","city":"Paris"},"ts":17324600%011d,"tags":["a","b"],"ok":true}`+"\n",
			i, i, i*7, i%977, i*1_000_003)
	}
	payload := []byte(sb.String())
	transform := []config.Step{
		{Filter: `event != "drop"`},
		{Set: []config.Pair{{Key: "ingested_at", Value: "now()"}, {Key: "user", Value: "upper(user)"}}},
		{Delete: []string{"password"}},
	}
	for range b.N {
		v := endToEnd(b, nil, "", payload, msgs*perMsg)
		x := endToEnd(b, transform, "", payload, msgs*perMsg)
		o := endToEnd(b, transform, "user", payload, msgs*perMsg)
		b.ReportMetric(v, "validate-records/s")
		b.ReportMetric(x, "transform-records/s")
		b.ReportMetric(o, "ordered-records/s")
		b.ReportMetric(x/v, "ratio")
		b.ReportMetric(o/x, "ordered-ratio")
	}
}

// endToEnd runs one measurement and returns its records/s.
func endToEnd(b *testing.B, steps []config.Step, orderBy string, payload []byte, records int) float64 {
	b.Helper()
	b.StopTimer()
	defer b.StartTimer()
	perMsg := bytes.Count(payload, []byte("\n"))
	msgs := records / perMsg
	cfg, dir := testConfig(b)
	cfg.Process.Steps = steps
	cfg.Pipeline.OrderBy = orderBy
	cfg.Pipeline.ShutdownTimeout = 10 * time.Second
	svc, stop := startService(b, cfg)
	js := publisher(b, svc)
	for range msgs {
		if _, err := js.PublishAsync("ingest.bench", payload); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		b.Fatal("publish did not complete")
	}
	start := time.Now()
	startDrain(b, cfg.Sink.Socket, filepath.Join(dir, "out"))
	for metricSum(b, svc, "sluice_pipeline_messages_acked_total") < float64(msgs) {
		if time.Since(start) > 2*time.Minute {
			b.Fatal("not every message acked within 2 minutes")
		}
		time.Sleep(5 * time.Millisecond)
	}
	elapsed := time.Since(start)
	if err := stop(); err != nil {
		b.Fatal(err)
	}
	return float64(records) / elapsed.Seconds()
}
