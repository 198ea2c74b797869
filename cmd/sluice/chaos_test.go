package main

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/internal/testkit"
	"github.com/sluice-dev/sluice/ledger"
	"github.com/sluice-dev/sluice/load"
	"github.com/sluice-dev/sluice/perf"
)

// TestChaos_ThreeRoundsOfEach is the CI version of the chaos suite: three
// SIGKILLs each of the drainer, sluice run, both and the NATS server, real
// child processes, and the verifier finds every acknowledged record once.
func TestChaos_ThreeRoundsOfEach(t *testing.T) {
	if testing.Short() {
		t.Skip("the chaos suite starts real processes")
	}
	t.Setenv("SLUICE_TEST_MAIN", "1") // the children are this test binary
	dir := testkit.ShortDir(t)
	stdout, stderr, err := runCLI("chaos", "--rounds", "3", "--seed", "14", "--dir", dir, "--keep")
	if err != nil {
		t.Fatalf("sluice chaos: %v\nstdout:\n%s\nstderr:\n%s", err, stdout, stderr)
	}
	t.Log(stdout)
	rounds := regexp.MustCompile(`(?m)^(\w+)\s+round\s+(\d)/3\s+kill at \+\s*[0-9.]+s\s+records\s+\d+\s+restart \S+$`).FindAllStringSubmatch(stdout, -1)
	if len(rounds) != 12 {
		t.Errorf("%d round lines, want 12 (3 for each of 4 targets):\n%s", len(rounds), stdout)
	}
	summary := regexp.MustCompile(`(?m)^(\w+)\s+3 rounds\s+(\d+) records acked .*\s(\d+) committed\s+lost 0\s+duplicated 0\s`).FindAllStringSubmatch(stdout, -1)
	var targets []string
	for _, m := range summary {
		acked, _ := strconv.Atoi(m[2])
		committed, _ := strconv.Atoi(m[3])
		if acked == 0 || committed < acked {
			t.Errorf("%s: %d acked, %d committed: the verifier must find every acknowledged record", m[1], acked, committed)
		}
		targets = append(targets, m[1])
	}
	if strings.Join(targets, ",") != "drainer,run,both,nats" {
		t.Errorf("phase summaries for %v, want drainer,run,both,nats:\n%s", targets, stdout)
	}
	if !strings.Contains(stdout, "\nlost 0 duplicated 0  (seed 14,") || !strings.Contains(stdout, "PASS\n") {
		t.Errorf("no passing total line:\n%s", stdout)
	}

	// The kept directory counts the same again.
	kept, err := filepath.Glob(filepath.Join(dir, "chaos-*"))
	if err != nil || len(kept) != 1 {
		t.Fatalf("kept directories %v (%v), want one", kept, err)
	}
	again, _, err := runCLI("chaos", "--verify", kept[0])
	if err != nil {
		t.Fatalf("sluice chaos --verify %s: %v\n%s", kept[0], err, again)
	}
	if got := regexp.MustCompile(`(?m)^(\w+)\s+3 rounds.*$`).FindAllString(again, -1); len(got) != 4 ||
		strings.Join(got, "\n") != strings.Join(regexp.MustCompile(`(?m)^(\w+)\s+3 rounds.*$`).FindAllString(stdout, -1), "\n") {
		t.Errorf("--verify of the kept directory:\n%s\nwant the run's phase lines:\n%s", again, stdout)
	}
}

// chaosDir writes a chaos run's directory as sluice chaos keeps it: one
// drainer phase whose producer had records 1..50 acknowledged, and an
// output (lines framing: every line counts) with the given seqs.
func chaosDir(t *testing.T, seqs []int64) string {
	t.Helper()
	dir := t.TempDir()
	const run = "chaos-drainer-1"
	res := perf.ChaosResult{Seed: 1, Phases: []perf.ChaosPhase{{
		Target: perf.TargetDrainer,
		Gen:    load.Result{RunID: run, MaxSeq: 50, Published: 50},
	}}}
	b, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "chaos.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	var lines []byte
	for _, s := range seqs {
		lines = append(load.AppendRecord(lines, load.Record{Run: run, Seq: s, TS: time.Now().UnixNano()}), '\n')
	}
	out := filepath.Join(dir, "out")
	if err := os.Mkdir(out, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(out, ledger.FileName(time.Now(), 1)), lines, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// The verifier can fail: a planted loss and a planted duplicate in a kept
// directory make sluice chaos --verify say so and exit 1.
func TestChaos_VerifyPlantedLossAndDuplicate(t *testing.T) {
	var all []int64
	for s := int64(1); s <= 50; s++ {
		all = append(all, s)
	}
	t.Run("clean", func(t *testing.T) {
		stdout, _, err := runCLI("chaos", "--verify", chaosDir(t, all))
		if err != nil || !strings.Contains(stdout, "lost 0 duplicated 0") {
			t.Fatalf("err %v, want nil and lost 0 duplicated 0:\n%s", err, stdout)
		}
	})
	t.Run("planted", func(t *testing.T) {
		seqs := append(append(all[:20:20], all[21:]...), 33) // 21 lost, 33 twice
		stdout, _, err := runCLI("chaos", "--verify", chaosDir(t, seqs))
		var ec exitCodeError
		if !errors.As(err, &ec) || ec.code != exitError {
			t.Fatalf("err %v, want exit status 1:\n%s", err, stdout)
		}
		for _, want := range []string{"lost 1 duplicated 1", "lost ids: [chaos-drainer-1-21]", "duplicated ids: [chaos-drainer-1-33]", "FAIL"} {
			if !strings.Contains(stdout, want) {
				t.Errorf("output lacks %q:\n%s", want, stdout)
			}
		}
	})
}
