package load_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-dev/sluice/internal/testkit"
	"github.com/sluice-dev/sluice/load"
)

// verifyStream feeds every record in the stream's messages on subject to a
// verifier prepared from res, and returns its report.
func verifyStream(t *testing.T, js jetstream.JetStream, stream, subject string, res load.Result) load.Report {
	t.Helper()
	v := load.NewVerifier(res.RunID, res.MaxSeq)
	if err := v.Expect(res); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for _, data := range consumeAll(t, js, stream, subject) {
		for line := range bytes.SplitSeq(data, []byte("\n")) {
			v.Observe(line, now)
		}
	}
	return v.Report()
}

func generate(t *testing.T, js jetstream.JetStream, o load.GenOptions) load.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := load.Generate(ctx, js, o, nil)
	if err != nil {
		t.Fatalf("Generate: %v (result %+v)", err, res)
	}
	return res
}

func TestGenerate_NoLossNoDuplicates(t *testing.T) {
	for _, per := range []int{1, 10} {
		t.Run(fmt.Sprintf("per-message=%d", per), func(t *testing.T) {
			js := startJS(t)
			res := generate(t, js, load.GenOptions{
				Subject: "ingest.load", Count: 5000, PerMessage: per, RecordSize: 200, SizeSpread: 50,
			})
			if res.MaxSeq != 5000 || res.Published != 5000 || res.Failed != 0 || res.Messages != int64(5000/per) ||
				res.Bytes < 5000*150 || res.Bytes > 5000*251 || !load.ValidRunID(res.RunID) {
				t.Fatalf("result = %+v", res)
			}
			r := verifyStream(t, js, "INGEST", "ingest.load", res)
			if r.Received != 5000 || r.Lost != 0 || r.Duplicates != 0 || r.Junk != 0 || r.Malformed != 0 || !r.OK(true) {
				t.Fatalf("report = %+v", r)
			}
			if r.Latency.Count != 5000 {
				t.Fatalf("latency count %d, want 5000", r.Latency.Count)
			}
		})
	}
}

func TestGenerate_SinglePublisherKeepsKeyOrder(t *testing.T) {
	js := startJS(t)
	res := generate(t, js, load.GenOptions{Count: 1000, PerMessage: 3, Publishers: 1, Keys: 7, RunID: "ordered"})
	if res.RunID != "ordered" || res.MaxSeq != 1000 || res.Messages != 334 {
		t.Fatalf("result = %+v", res)
	}
	r := verifyStream(t, js, "INGEST", "ingest.load", res)
	if r.OutOfOrder != 0 || r.Lost != 0 || r.Received != 1000 {
		t.Fatalf("report = %+v", r)
	}
}

func TestGenerate_InvalidRecords(t *testing.T) {
	js := startJS(t)
	res := generate(t, js, load.GenOptions{Count: 3000, PerMessage: 5, Invalid: 0.1})
	if res.Published+res.Invalid != 3000 || res.Invalid < 150 || res.Invalid > 450 {
		t.Fatalf("result = %+v, want about 10%% of 3000 invalid", res)
	}
	// The raw stream holds the invalid records too: the verifier, told which
	// seqs were invalid, finds exactly those leaked and nothing lost.
	r := verifyStream(t, js, "INGEST", "ingest.load", res)
	if r.Invalid != res.Invalid || r.Expected != res.Published || r.Received != res.Published ||
		r.InvalidLeaked != res.Invalid || r.Lost != 0 || r.Malformed != 0 {
		t.Fatalf("report = %+v\nresult = %+v", r, res)
	}
}

func TestGenerate_RateLimited(t *testing.T) {
	js := startJS(t)
	const rate, burst, dur = 2000.0, 100, 500 * time.Millisecond
	res := generate(t, js, load.GenOptions{Duration: dur, Rate: rate, Burst: burst, PerMessage: 5})
	// The token bucket allows the burst plus the rate over the duration,
	// give or take the message being admitted at the deadline (seen once
	// on a loaded 2-core CI machine: 1105 of 1100, one message of 5).
	const perMessage = 5
	limit := int64(rate*dur.Seconds()) + burst + perMessage
	if res.Published == 0 || res.MaxSeq > limit || res.Published > limit {
		t.Fatalf("published %d (max seq %d) in %v at %v/s burst %d: want 1..%d", res.Published, res.MaxSeq, dur, rate, burst, limit)
	}
	if r := verifyStream(t, js, "INGEST", "ingest.load", res); r.Lost != 0 || r.Received != res.Published {
		t.Fatalf("report = %+v", r)
	}
}

func TestGenerate_FailedPublishes(t *testing.T) {
	// A stream that refuses messages beyond 100: the rest fail after their
	// retries, are reported as failed, and the verifier expects only 100.
	js := startJS(t)
	createStream(t, js, jetstream.StreamConfig{
		Name: "SMALL", Subjects: []string{"small.>"}, MaxMsgs: 100, Discard: jetstream.DiscardNew,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := load.Generate(ctx, js, load.GenOptions{Subject: "small.x", Count: 300, Publishers: 2, Retries: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Published != 100 || res.Failed != 200 || res.MaxSeq != 300 || res.Retries != 200 || res.LastError == "" {
		t.Fatalf("result = %+v", res)
	}
	var inRanges int64
	for _, fr := range res.FailedRanges {
		inRanges += fr.Last - fr.First + 1
	}
	if inRanges != 200 {
		t.Fatalf("failed ranges %v cover %d seqs, want 200", res.FailedRanges, inRanges)
	}
	r := verifyStream(t, js, "SMALL", "small.x", res)
	if r.Expected != 100 || r.Received != 100 || r.Lost != 0 || r.FailedArrived != 0 || !r.OK(true) {
		t.Fatalf("report = %+v", r)
	}
}

func TestGenerate_UntilCancelled(t *testing.T) {
	js := startJS(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	var snaps []load.Progress
	res, err := load.Generate(ctx, js, load.GenOptions{Rate: 20000, PerMessage: 4}, func(p load.Progress) {
		mu.Lock()
		defer mu.Unlock()
		snaps = append(snaps, p)
		if len(snaps) == 2 {
			cancel()
		}
	})
	if err != nil {
		t.Fatalf("Generate until cancelled: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(snaps) < 2 || snaps[1].Published < snaps[0].Published || snaps[1].Elapsed <= snaps[0].Elapsed {
		t.Fatalf("progress snapshots %+v", snaps)
	}
	if res.Published == 0 || res.Published != res.MaxSeq {
		t.Fatalf("result = %+v", res)
	}
	if r := verifyStream(t, js, "INGEST", "ingest.load", res); r.Lost != 0 || r.Received != res.MaxSeq {
		t.Fatalf("report = %+v", r)
	}
}

func TestGenerate_CancelledBoundedRun(t *testing.T) {
	js := startJS(t)
	ctx, cancel := context.WithCancel(context.Background())
	res, err := load.Generate(ctx, js, load.GenOptions{Count: 1 << 40, Rate: 20000}, func(load.Progress) { cancel() })
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if res.MaxSeq == 0 || res.Published+res.Failed != res.MaxSeq {
		t.Fatalf("result = %+v", res)
	}
}

func TestGenerate_Errors(t *testing.T) {
	js := startJS(t)
	ctx := context.Background()
	if _, err := load.Generate(ctx, js, load.GenOptions{Subject: "nowhere.x", Count: 1}, nil); !errors.Is(err, load.ErrNoStream) {
		t.Errorf("no stream: err = %v, want ErrNoStream", err)
	}
	// A 1 MiB record exceeds the server's default 1 MB max payload: every
	// publish fails at once.
	res, err := load.Generate(ctx, js, load.GenOptions{Count: 3, RecordSize: load.MaxRecordSize}, nil)
	if !errors.Is(err, load.ErrPublishFailed) || res.Failed != 3 || res.Published != 0 {
		t.Errorf("oversized records: err = %v, result %+v; want ErrPublishFailed, 3 failed", err, res)
	}
	for name, o := range map[string]load.GenOptions{
		"negative count": {Count: -1},
		"bad run id":     {Count: 1, RunID: "a b"},
		"invalid > 1":    {Count: 1, Invalid: 1.5},
		"spread > size":  {Count: 1, RecordSize: 10, SizeSpread: 11},
		"burst < batch":  {Count: 1, Rate: 10, Burst: 1, PerMessage: 2},
		"huge record":    {Count: 1, RecordSize: load.MaxRecordSize + 1},
	} {
		if _, err := load.Generate(ctx, js, o, nil); !errors.Is(err, load.ErrBadOptions) {
			t.Errorf("%s: err = %v, want ErrBadOptions", name, err)
		}
	}
}

// TestGenerate_AckedIsLive checks that GenOptions.Acked follows the acks
// while the run goes on, not only when a publisher's window of
// unacknowledged publishes is full or at the end (which made the demo's
// progress show fewer records published than drained).
func TestGenerate_AckedIsLive(t *testing.T) {
	js := startJS(t)
	var acked atomic.Int64
	type result struct {
		res load.Result
		err error
	}
	done := make(chan result, 1)
	go func() {
		// 1 s at 200 records/s; the window (256) never fills.
		res, err := load.Generate(context.Background(), js, load.GenOptions{Subject: "ingest.load", Count: 200, Rate: 200, Publishers: 1, Acked: &acked}, nil)
		done <- result{res, err}
	}()
	testkit.WaitFor(t, 10*time.Second, func() error {
		if n := acked.Load(); n < 20 {
			return fmt.Errorf("%d records acknowledged so far", n)
		}
		return nil
	})
	select {
	case r := <-done:
		t.Fatalf("Generate ended (%d published, %v) before Acked reached 20: the counter is not live", r.res.Published, r.err)
	default:
	}
	r := <-done
	res := r.res
	if r.err != nil {
		t.Fatal(r.err)
	}
	if got := acked.Load(); got != res.Published+res.Invalid || got != 200 {
		t.Fatalf("Acked = %d at the end, result published %d + invalid %d", got, res.Published, res.Invalid)
	}
}
