package main

import (
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
// is preloaded while no drainer listens, and the clock runs from the
// drainer's start until every message is acked. One op is one run of
// 300,000 records; run it with -benchtime 1x -count N.
func BenchmarkEndToEndProcessing(b *testing.B) {
	const msgs, perMsg = 3000, 100
	var sb strings.Builder
	for i := range perMsg {
		fmt.Fprintf(&sb, `{"id":"e-%06d","event":"click","user":"user%04d","password":"s3cr3t-%05d","amount":%d.25,"geo":{"country":"FR","city":"Paris"},"ts":17324600%011d,"tags":["a","b"],"ok":true}`+"\n",
			i, i, i*7, i%977, i*1_000_003)
	}
	payload := []byte(sb.String())
	for _, tc := range []struct {
		name  string
		steps []config.Step
	}{
		{"validate", nil},
		{"transform", []config.Step{
			{Filter: `event != "drop"`},
			{Set: []config.Pair{{Key: "ingested_at", Value: "now()"}, {Key: "user", Value: "upper(user)"}}},
			{Delete: []string{"password"}},
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			for range b.N {
				b.StopTimer()
				cfg, dir := testConfig(b)
				cfg.Process.Steps = tc.steps
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
				b.StartTimer()
				start := time.Now()
				startDrain(b, cfg.Sink.Socket, filepath.Join(dir, "out"))
				for metricSum(b, svc, "sluice_pipeline_messages_acked_total") < msgs {
					if time.Since(start) > 2*time.Minute {
						b.Fatal("not every message acked within 2 minutes")
					}
					time.Sleep(5 * time.Millisecond)
				}
				elapsed := time.Since(start)
				b.StopTimer()
				b.ReportMetric(float64(msgs*perMsg)/elapsed.Seconds(), "records/s")
				if err := stop(); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
		})
	}
}
