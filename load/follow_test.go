package load_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-dev/sluice/drain"
	"github.com/sluice-dev/sluice/internal/testkit"
	"github.com/sluice-dev/sluice/load"
	"github.com/sluice-dev/sluice/record"
	"github.com/sluice-dev/sluice/sink"
)

// ackedDrainer runs a real drainer in acked framing on dir and returns a
// function that sends records of run with seqs lo..hi through a real sink
// and waits until the drainer acknowledged (committed) them, and a function
// that stops both.
func ackedDrainer(t *testing.T, dir string) (send func(run string, lo, hi int64), stop func()) {
	t.Helper()
	sock := filepath.Join(testkit.ShortDir(t), "d.sock")
	srv, err := drain.New(drain.Options{Socket: sock, Out: dir, Framing: "acked", Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx) }()
	w := sink.New(sink.Options{Path: sock, Framing: "acked", Registerer: prometheus.NewRegistry()})
	w.Start(ctx)
	var stream uint64
	send = func(run string, lo, hi int64) {
		t.Helper()
		stream++
		var recs []record.Record
		for seq := lo; seq <= hi; seq++ {
			data := load.AppendRecord(nil, load.Record{Run: run, Seq: seq, Key: int(seq % 4), TS: time.Now().UnixNano(), Size: 200})
			recs = append(recs, record.Record{ID: record.ID{Stream: run, Epoch: 1, Seq: uint64(seq)}, Data: data})
		}
		acked := make(chan error, 1)
		if err := w.Send(ctx, recs, func(err error) { acked <- err }); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-acked:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the drainer did not acknowledge the records")
		}
	}
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		_ = w.Close()
		cancel()
		if err := <-served; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("Serve: %v", err)
		}
	}
	t.Cleanup(stop)
	return send, stop
}

// TestFollower_CountsWhatWasCommitted writes records through a real acked
// drainer (committed), then appends records to its last output file as a
// drainer killed between writing and committing leaves them. The live read
// sees them; the final count must not: a restarted drainer cuts them off,
// so they were never delivered.
func TestFollower_CountsWhatWasCommitted(t *testing.T) {
	dir := t.TempDir()
	send, stop := ackedDrainer(t, dir)
	send("old", 1, 5) // an earlier run: skipped

	live := load.NewVerifier("c", 10)
	f, err := load.NewFollower(dir, live)
	if err != nil {
		t.Fatal(err)
	}
	send("c", 1, 8)
	stop()

	names, err := filepath.Glob(filepath.Join(dir, "sluice-*.jsonl"))
	if err != nil || len(names) == 0 {
		t.Fatalf("no output files in %s (%v)", dir, err)
	}
	sort.Strings(names)
	out, err := os.OpenFile(names[len(names)-1], os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	for seq := int64(9); seq <= 10; seq++ {
		line := load.AppendRecord(nil, load.Record{Run: "c", Seq: seq, TS: time.Now().UnixNano(), Size: 200})
		if _, err := out.Write(append(line, '\n')); err != nil {
			t.Fatal(err)
		}
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}

	var seen []int64
	if _, err := f.Poll(time.Now(), func(h load.Header, _ time.Time) { seen = append(seen, h.Seq) }); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 10 || live.Received() != 10 {
		t.Fatalf("live read saw %v (received %d), want seqs 1..10 including the uncommitted ones", seen, live.Received())
	}

	res := load.Result{RunID: "c", MaxSeq: 10, Published: 10}
	rep, err := f.Committed(res)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Received != 8 || rep.Lost != 2 || rep.Duplicates != 0 || rep.OtherRuns != 0 || rep.Lines != 8 ||
		len(rep.LostIDs) != 2 || rep.LostIDs[0] != "c-9" || rep.LostIDs[1] != "c-10" {
		t.Fatalf("committed count %+v; want 8 received, c-9 and c-10 lost, the old run skipped", rep)
	}
	if rep.Latency.Count != 10 {
		t.Errorf("latency count %d: want the live read's 10", rep.Latency.Count)
	}

	// Wait gives up at its deadline with the committed count, although the
	// live read saw everything.
	live.Shrink(res.MaxSeq)
	start := time.Now()
	rep, err = f.Wait(context.Background(), res, 300*time.Millisecond)
	if err != nil || rep.Lost != 2 {
		t.Fatalf("Wait = %+v, %v; want 2 lost", rep, err)
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("Wait returned after %v, before its deadline, with records lost", d)
	}
}
