package obs_test

import (
	"encoding/json"
	"log/slog"
	"testing"

	"github.com/sluice-dev/sluice/obs"
)

type benchRecord struct {
	ID     string            `json:"id"`
	Seq    uint64            `json:"seq"`
	Values []float64         `json:"values"`
	Tags   map[string]string `json:"tags"`
}

// jsonWork is a CPU-bound unit: encode and decode one record (few
// scheduler events, so little for the tracer to record).
func jsonWork(b *testing.B) {
	r := benchRecord{ID: "abc-123", Seq: 42, Values: []float64{1.5, 2.5, 3.5, 4.5}, Tags: map[string]string{"source": "bench", "kind": "x"}}
	var out benchRecord
	for b.Loop() {
		buf, err := json.Marshal(&r)
		if err != nil {
			b.Fatal(err)
		}
		if err := json.Unmarshal(buf, &out); err != nil {
			b.Fatal(err)
		}
		r.Seq++
	}
}

// pingPong is the tracer's worst case: every op is two goroutine switches,
// each of which the trace records.
func pingPong(b *testing.B) {
	ping, pong := make(chan int), make(chan int)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for v := range ping {
			pong <- v + 1
		}
	}()
	v := 0
	for b.Loop() {
		ping <- v
		v = <-pong
	}
	close(ping)
	<-done
}

// BenchmarkFlightRecorderOverhead runs each workload with the flight
// recorder off and on; compare ns/op of the pairs for the overhead ratio.
func BenchmarkFlightRecorderOverhead(b *testing.B) {
	for _, w := range []struct {
		name string
		fn   func(*testing.B)
	}{{"json", jsonWork}, {"pingpong", pingPong}} {
		b.Run(w.name+"/off", w.fn)
		b.Run(w.name+"/on", func(b *testing.B) {
			f, err := obs.StartFlightRecorder(obs.FlightOptions{Dir: b.TempDir(), Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			w.fn(b)
		})
	}
}

// BenchmarkFlightRecorder_Trigger is the hot-path cost of Trigger while a
// dump is pending or the rate limit holds (the common case in a storm).
func BenchmarkFlightRecorder_Trigger(b *testing.B) {
	f, err := obs.StartFlightRecorder(obs.FlightOptions{Dir: b.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			f.Trigger("bench")
		}
	})
}

// BenchmarkFlightRecorder_DumpNow is the cost of one dump of a small window.
func BenchmarkFlightRecorder_DumpNow(b *testing.B) {
	f, err := obs.StartFlightRecorder(obs.FlightOptions{Dir: b.TempDir(), Logger: slog.New(slog.DiscardHandler), MaxFiles: 2})
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	for b.Loop() {
		if _, err := f.DumpNow("bench"); err != nil {
			b.Fatal(err)
		}
	}
}
