package load_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/load"
)

var t0 = time.Unix(1_732_460_000, 0)

// rec encodes record seq of run with 4 keys, sent at t0.
func rec(run string, seq int64) []byte {
	return load.AppendRecord(nil, load.Record{Run: run, Seq: seq, Key: int(seq % 4), TS: t0.UnixNano(), Size: 120})
}

func observeAll(v *load.Verifier, run string, seqs ...int64) {
	for _, s := range seqs {
		v.Observe(rec(run, s), t0.Add(time.Millisecond))
	}
}

func seqRange(lo, hi int64) []int64 {
	var s []int64
	for i := lo; i <= hi; i++ {
		s = append(s, i)
	}
	return s
}

func TestVerifier_Complete(t *testing.T) {
	v := load.NewVerifier("run1", 1000)
	observeAll(v, "run1", seqRange(1, 1000)...)
	r := v.Report()
	if r.Published != 1000 || r.Expected != 1000 || r.Received != 1000 || r.Lost != 0 ||
		r.Duplicates != 0 || r.OutOfOrder != 0 || r.Lines != 1000 || len(r.LostIDs) != 0 {
		t.Fatalf("report = %+v", r)
	}
	if !r.OK(true) {
		t.Fatal("complete run not OK")
	}
	if r.Latency.Count != 1000 || r.Latency.Max != time.Millisecond {
		t.Fatalf("latency = %+v, want 1000 × 1ms", r.Latency)
	}
}

func TestVerifier_Lost(t *testing.T) {
	t.Run("one", func(t *testing.T) {
		v := load.NewVerifier("run1", 100)
		observeAll(v, "run1", append(seqRange(1, 6), seqRange(8, 100)...)...)
		r := v.Report()
		if r.Lost != 1 || len(r.LostIDs) != 1 || r.LostIDs[0] != "run1-7" || r.Received != 99 {
			t.Fatalf("lost %d %v received %d, want 1 [run1-7] 99", r.Lost, r.LostIDs, r.Received)
		}
		if r.OK(false) {
			t.Fatal("a run with a lost record is OK")
		}
	})
	t.Run("first ten listed", func(t *testing.T) {
		// 130 expected, only odd seqs arrive: 65 lost, the first ten listed
		// in seq order, across bitset words.
		v := load.NewVerifier("run1", 130)
		for s := int64(1); s <= 130; s += 2 {
			observeAll(v, "run1", s)
		}
		r := v.Report()
		want := []string{"run1-2", "run1-4", "run1-6", "run1-8", "run1-10", "run1-12", "run1-14", "run1-16", "run1-18", "run1-20"}
		if r.Lost != 65 || fmt.Sprint(r.LostIDs) != fmt.Sprint(want) {
			t.Fatalf("lost %d %v, want 65 %v", r.Lost, r.LostIDs, want)
		}
	})
	t.Run("tail of last word", func(t *testing.T) {
		v := load.NewVerifier("run1", 70)
		observeAll(v, "run1", seqRange(1, 69)...)
		if r := v.Report(); r.Lost != 1 || r.LostIDs[0] != "run1-70" {
			t.Fatalf("lost %d %v, want 1 [run1-70]", r.Lost, r.LostIDs)
		}
	})
}

func TestVerifier_Duplicate(t *testing.T) {
	v := load.NewVerifier("run1", 10)
	observeAll(v, "run1", 1, 2, 3, 3, 4, 5, 6, 7, 8, 9, 10)
	r := v.Report()
	if r.Duplicates != 1 || fmt.Sprint(r.DuplicateIDs) != "[run1-3]" || r.Received != 10 || r.Lost != 0 {
		t.Fatalf("report = %+v", r)
	}
	if r.OutOfOrder != 0 {
		t.Fatalf("a duplicate counted as out of order: %d", r.OutOfOrder)
	}
	if !r.OK(false) || r.OK(true) {
		t.Fatalf("OK(false)=%v OK(true)=%v, want true false", r.OK(false), r.OK(true))
	}
}

func TestVerifier_OutOfOrder(t *testing.T) {
	// 4 keys: seqs 1 and 5 share key k1; 2 and 3 do not share a key.
	v := load.NewVerifier("run1", 8)
	observeAll(v, "run1", 5, 1, 3, 2, 4, 6, 7, 8)
	r := v.Report()
	if r.OutOfOrder != 1 {
		t.Fatalf("out of order = %d, want 1", r.OutOfOrder)
	}
	if !r.OK(true) {
		t.Fatal("reordering alone must not fail a run")
	}
}

func TestVerifier_Latency(t *testing.T) {
	// Record i (1..1000) drained i ms after it was sent.
	v := load.NewVerifier("run1", 1000)
	for i := int64(1); i <= 1000; i++ {
		v.Observe(rec("run1", i), t0.Add(time.Duration(i)*time.Millisecond))
	}
	l := v.Report().Latency
	for _, c := range []struct {
		name     string
		got, wan time.Duration
	}{
		{"p50", l.P50, 500 * time.Millisecond},
		{"p90", l.P90, 900 * time.Millisecond},
		{"p99", l.P99, 990 * time.Millisecond},
		{"p99.9", l.P999, 999 * time.Millisecond},
		{"max", l.Max, 1000 * time.Millisecond},
		{"mean", l.Mean, 500500 * time.Microsecond},
	} {
		// 3 significant digits: within 0.1%.
		if d := c.got - c.wan; d < -c.wan/1000 || d > c.wan/1000 {
			t.Errorf("%s = %v, want %v ± 0.1%%", c.name, c.got, c.wan)
		}
	}
	if l.Count != 1000 {
		t.Errorf("count = %d, want 1000", l.Count)
	}
}

func TestVerifier_Ignored(t *testing.T) {
	v := load.NewVerifier("run1", 3)
	v.MarkInvalid(2)
	observeAll(v, "run1", 1, 3)
	observeAll(v, "other", 1, 2, 3, 4)
	truncated := rec("run1", 3)
	truncated = truncated[:len(truncated)-5]
	invalid := load.AppendRecord(nil, load.Record{Run: "run1", Seq: 2, TS: t0.UnixNano(), Invalid: true})
	for _, line := range [][]byte{
		[]byte(""),
		[]byte("hello"),
		[]byte(`{"a":1}`),
		[]byte(`{"id":"run1-1","run":"run1","seq":3,"key":"k1","ts":1}`), // id does not match seq: damaged
		append([]byte("stream:7:0 "), rec("run1", 1)...),                 // identity-prefixed line
		truncated, // damaged record of run1
		invalid,   // invalid record that should have been dead-lettered
		rec("run1", 4),
		rec("run1", 0),
	} {
		v.Observe(line, t0)
	}
	r := v.Report()
	want := load.Report{
		RunID: "run1", Published: 3, Expected: 2, Invalid: 1, Received: 2,
		OtherRuns: 4, Junk: 4, Malformed: 2, InvalidLeaked: 1, OutOfRange: 2, Lines: 15,
	}
	got := r
	got.Latency, got.LostIDs, got.DuplicateIDs = load.Latency{}, nil, nil
	if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", want) {
		t.Fatalf("report\n got %+v\nwant %+v", got, want)
	}
	if r.OK(false) {
		t.Fatal("a run with malformed, leaked and out-of-range records is OK")
	}
}

func TestVerifier_Marks(t *testing.T) {
	v := load.NewVerifier("run1", 100)
	v.MarkInvalid(10)
	v.MarkInvalid(10) // idempotent
	v.MarkFailed(20, 29)
	v.MarkFailed(25, 200) // clamped to 100, overlaps
	v.MarkFailed(0, 0)    // out of range: ignored
	// Failed 20..100 but 21 arrives anyway; 10 (invalid) does not.
	observeAll(v, "run1", append(seqRange(1, 9), seqRange(11, 21)...)...)
	r := v.Report()
	if r.Invalid != 1 || r.Failed != 81 || r.Expected != 18 || r.Received != 18 || r.Lost != 0 ||
		r.FailedArrived != 2 || !r.OK(true) {
		t.Fatalf("report = %+v", r)
	}
}

func TestVerifier_Expect(t *testing.T) {
	v := load.NewVerifier("run1", 10)
	if err := v.Expect(load.Result{RunID: "run2", MaxSeq: 10}); err == nil {
		t.Fatal("Expect accepted another run's result")
	}
	if err := v.Expect(load.Result{RunID: "run1", MaxSeq: 11}); err == nil {
		t.Fatal("Expect accepted a result larger than the verifier")
	}
	err := v.Expect(load.Result{RunID: "run1", MaxSeq: 10, InvalidFraction: 1,
		FailedRanges: []load.SeqRange{{First: 9, Last: 10}}})
	if err != nil {
		t.Fatal(err)
	}
	if r := v.Report(); r.Invalid != 10 || r.Failed != 2 || r.Expected != 0 || !r.OK(true) {
		t.Fatalf("report = %+v", r)
	}
}

func TestVerifier_Concurrent(t *testing.T) {
	const n, workers = 20000, 4
	v := load.NewVerifier("run1", n)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			// Each worker observes its share, and seqs 1..100 as duplicates.
			for s := int64(w + 1); s <= n; s += workers {
				v.Observe(rec("run1", s), t0)
			}
			for s := int64(1); s <= 100; s++ {
				if s%workers != int64(w+1)%workers {
					v.Observe(rec("run1", s), t0)
				}
			}
		})
	}
	wg.Wait()
	r := v.Report()
	if r.Received != n || r.Lost != 0 || r.Duplicates != 300 || r.Lines != n+300 {
		t.Fatalf("received %d lost %d duplicates %d lines %d", r.Received, r.Lost, r.Duplicates, r.Lines)
	}
}

func TestReport_JSON(t *testing.T) {
	v := load.NewVerifier("run1", 2)
	v.Observe(rec("run1", 1), t0.Add(1500*time.Microsecond))
	r := v.Report()
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"p50_ms":1.5`, `"max_ms":1.5`, `"lost":1`, `"lost_ids":["run1-2"]`, `"run_id":"run1"`} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("JSON %s lacks %s", b, want)
		}
	}
	var back load.Report
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprintf("%+v", back) != fmt.Sprintf("%+v", r) {
		t.Fatalf("round trip\n got %+v\nwant %+v", back, r)
	}
}

func TestReport_WriteTable(t *testing.T) {
	v := load.NewVerifier("run1", 13)
	observeAll(v, "run1", 1, 1, 2)
	var buf bytes.Buffer
	if err := v.Report().WriteTable(&buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if !strings.Contains(out, "run1-3, run1-4, ") || !strings.Contains(out, ", ...)") || !strings.Contains(out, "(run1-1)") {
		t.Fatalf("table lacks lost or duplicate ids:\n%s", out)
	}
	// Aligned: every value starts in the same column.
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	col := strings.Index(lines[0], "run1")
	for _, l := range lines {
		if len(l) <= col || l[col-1] != ' ' || l[col] == ' ' {
			t.Fatalf("value not at column %d in %q:\n%s", col, l, out)
		}
	}
}

func TestVerifier_ObserveNoAllocs(t *testing.T) {
	v := load.NewVerifier("run1", 10)
	line := rec("run1", 1)
	for range 11 { // first sight of key k1 and the listed duplicate ids allocate
		v.Observe(line, t0)
	}
	if n := testing.AllocsPerRun(100, func() { v.Observe(line, t0) }); n != 0 {
		t.Fatalf("Observe allocates %v times per line", n)
	}
}

func TestVerifier_Shrink(t *testing.T) {
	v := load.NewVerifier("run", 1000)
	v.MarkInvalid(2)
	v.MarkInvalid(200)
	for seq := int64(1); seq <= 100; seq++ {
		if seq == 2 || seq == 50 {
			continue
		}
		v.Observe(load.AppendRecord(nil, load.Record{Run: "run", Seq: seq, TS: 1}), time.Unix(0, 2))
	}
	v.Shrink(100) // the run ended after 100 records
	r := v.Report()
	if r.Published != 100 || r.Expected != 99 || r.Received != 98 || r.Lost != 1 || r.Invalid != 1 {
		t.Fatalf("after Shrink(100): %+v; want published 100, expected 99, received 98, lost 1 (seq 50), invalid 1", r)
	}
	if len(r.LostIDs) != 1 || r.LostIDs[0] != "run-50" {
		t.Fatalf("lost ids %v, want [run-50]", r.LostIDs)
	}
	v.Shrink(5000) // growing is ignored
	if got := v.Report().Published; got != 100 {
		t.Fatalf("Shrink grew the range to %d", got)
	}
}
