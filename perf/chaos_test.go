package perf_test

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/ledger"
	"github.com/sluice-dev/sluice/load"
	"github.com/sluice-dev/sluice/perf"
)

// writeOutput writes a drainer output directory in lines framing (no
// journal: every line counts) holding the records of run with the given
// seqs, in order, repeats included.
func writeOutput(t *testing.T, dir, run string, seqs []int64) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	var b []byte
	for _, s := range seqs {
		b = load.AppendRecord(b, load.Record{Run: run, Seq: s, Key: int(s % 4), TS: time.Now().UnixNano(), Size: 120})
		b = append(b, '\n')
	}
	name := filepath.Join(dir, ledger.FileName(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), 1))
	if err := os.WriteFile(name, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func seqRange(lo, hi int64) []int64 {
	var s []int64
	for i := lo; i <= hi; i++ {
		s = append(s, i)
	}
	return s
}

func TestVerifyOutput(t *testing.T) {
	const run = "chaos-test"
	// 100 records produced; the publishes of 90..95 were never acknowledged.
	gen := load.Result{RunID: run, MaxSeq: 100, Published: 94, Failed: 6, FailedRanges: []load.SeqRange{{First: 90, Last: 95}}}

	t.Run("exactly once", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "out")
		// Every acknowledged record once; of the unacknowledged ones, 91 arrived.
		seqs := slices.Concat(seqRange(1, 89), []int64{91}, seqRange(96, 100))
		writeOutput(t, out, run, seqs)
		rep, err := perf.VerifyOutput(out, gen)
		if err != nil {
			t.Fatal(err)
		}
		if !rep.OK(true) || rep.Received != 94 || rep.Lost != 0 || rep.Duplicates != 0 || rep.FailedArrived != 1 {
			t.Fatalf("report %+v: want 94 received, 0 lost, 0 duplicated, 1 unacknowledged arrived", rep)
		}
	})
	t.Run("planted loss and duplicates", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "out")
		// 7 missing; 42 twice; 92 (not acknowledged) twice: at most once holds for it too.
		seqs := slices.Concat(seqRange(1, 6), seqRange(8, 89), []int64{42, 92, 92}, seqRange(96, 100))
		writeOutput(t, out, run, seqs)
		rep, err := perf.VerifyOutput(out, gen)
		if err != nil {
			t.Fatal(err)
		}
		if rep.OK(true) || rep.Lost != 1 || !slices.Equal(rep.LostIDs, []string{run + "-7"}) || rep.Duplicates != 2 {
			t.Fatalf("report %+v: want 1 lost (%s-7) and 2 duplicated", rep, run)
		}
	})
	t.Run("no output yet", func(t *testing.T) {
		rep, err := perf.VerifyOutput(filepath.Join(t.TempDir(), "missing"), gen)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Lost != 94 {
			t.Fatalf("lost %d, want all 94", rep.Lost)
		}
	})
}

func TestChaosResult_WriteSummary(t *testing.T) {
	res := perf.ChaosResult{Seed: 7, Phases: []perf.ChaosPhase{
		{Target: perf.TargetDrainer, Report: load.Report{Received: 10}},
		{Target: perf.TargetNATS, Report: load.Report{Received: 9, Lost: 1, LostIDs: []string{"r-3"}, Duplicates: 2}},
	}}
	var b bytes.Buffer
	res.WriteSummary(&b)
	if res.OK() || res.Lost() != 1 || res.Duplicated() != 2 || !bytes.Contains(b.Bytes(), []byte("lost 1 duplicated 2  (seed 7")) ||
		!bytes.Contains(b.Bytes(), []byte("lost ids: [r-3]")) || !bytes.HasSuffix(b.Bytes(), []byte("FAIL\n")) {
		t.Fatalf("summary of a failed run:\n%s", b.String())
	}
}
