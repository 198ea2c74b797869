package perf_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/perf"
)

// threeReps is a bench where lines framing meets two targets of three
// and acked framing is not available.
func threeReps() *perf.Report {
	rep := func(sock, cons, l1, l100, peak float64) map[string]float64 {
		return map[string]float64{
			perf.KeySocketRecords: sock, perf.KeySocketMB: sock * 200 / 1e6,
			perf.KeyJSPublish: 60000, perf.KeyJSConsume: cons,
			perf.KeyLines1: l1, perf.KeyLines100: l100,
			perf.KeyLines1 + "_rss_peak": peak, perf.KeyLines1 + "_rss_steady": peak - 10,
			perf.KeyLines100 + "_rss_peak": peak + 1, perf.KeyLines100 + "_rss_steady": peak - 5,
		}
	}
	na := map[string]string{perf.KeyAcked1: "n/a (acked framing not available)", perf.KeyAcked100: "n/a (acked framing not available)"}
	return perf.BuildReport(1000, 3, []map[string]float64{
		rep(20e6, 100000, 95000, 1.5e6, 40),
		rep(10e6, 200000, 100000, 1.2e6, 50),
		rep(30e6, 150000, 150000, 0.9e6, 60),
	}, na)
}

func TestReport_Summaries(t *testing.T) {
	r := threeReps()
	check := func(key string, med, lo, hi float64) {
		t.Helper()
		s := r.Row(key).Summary
		if s == nil || s.N != 3 || abs(s.Median-med) > 1e-9 || abs(s.Min-lo) > 1e-9 || abs(s.Max-hi) > 1e-9 {
			t.Errorf("%s: summary %+v; want median %v, %v - %v", key, s, med, lo, hi)
		}
	}
	check(perf.KeyJSConsume, 150000, 100000, 200000)
	check(perf.KeyLines100, 1.2e6, 0.9e6, 1.5e6)
	// Ratios are taken within each repetition, then summarized:
	// 95000/100000, 100000/200000, 150000/150000.
	check(perf.KeyRatioLines1, 0.95, 0.5, 1)
	// 1.5e6/20e6, 1.2e6/10e6, 0.9e6/30e6.
	check(perf.KeyRatioLines100S, 0.075, 0.03, 0.12)
	// 1.5e6/1e7, 1.2e6/2e7, 0.9e6/1.5e7.
	check(perf.KeyRatioLines100C, 0.06, 0.06, 0.15)
	if row := r.Row(perf.KeyAcked1); row.Summary != nil || !strings.Contains(row.NA, "not available") {
		t.Errorf("acked row %+v; want n/a", row)
	}
	if row := r.Row(perf.KeyRatioAcked1); row.Summary != nil || row.NA == "" {
		t.Errorf("acked ratio row %+v; want n/a", row)
	}
	// lines 1 rec/msg at 0.95 of raw consume; acked not measured; 1.2 M
	// records/s; no flight recorder or latency measured; peak 61 MiB <= 128.
	want := []string{"met", "n/a", "met", "n/a", "n/a", "n/a", "met", "n/a"}
	if len(r.Targets) != len(want) {
		t.Fatalf("%d targets, want %d", len(r.Targets), len(want))
	}
	for i, tg := range r.Targets {
		if tg.Status != want[i] {
			t.Errorf("target %q: %s (value %v); want %s", tg.Name, tg.Status, tg.Value, want[i])
		}
	}
	if v := *r.Targets[6].Value; v != 61 {
		t.Errorf("peak RSS target value %v; want the max over cases and reps, 61", v)
	}
}

func TestReport_TargetsMissed(t *testing.T) {
	r := perf.BuildReport(1000, 1, []map[string]float64{{
		perf.KeySocketRecords: 1e7, perf.KeyJSConsume: 100000,
		perf.KeyLines1: 94999, perf.KeyLines100: 999999, perf.KeyAcked100: 0.849 * 999999,
		perf.KeyLines1 + "_rss_peak": 128.5,
		perf.KeyLatLines + "_p99":    10.5, perf.KeyLatAcked + "_p99": 25.5, perf.KeyLines100Flight: 0.949 * 999999,
		perf.KeyLines100Transform: 0.599 * 999999,
	}}, nil)
	for _, tg := range r.Targets {
		if tg.Status != "missed" {
			t.Errorf("target %q: %s; want missed", tg.Name, tg.Status)
		}
	}
	r = perf.BuildReport(1000, 1, []map[string]float64{{perf.KeySocketRecords: 1e7}}, nil)
	for _, tg := range r.Targets {
		if tg.Status != "n/a" || tg.Value != nil {
			t.Errorf("target %q with nothing measured: %s %v; want n/a", tg.Name, tg.Status, tg.Value)
		}
	}
}

func TestReport_WriteTable(t *testing.T) {
	var b bytes.Buffer
	if err := threeReps().WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, re := range []string{
		`(?m)^sluice bench  2026-01-02T03:04:05Z$`,
		`(?m)^machine: .*nproc \d+`,
		`(?m)^sizes: +200-byte records; 1,000 records \(100 rec/msg\), 200 messages .*10,000 records \(raw socket\); 3 reps$`,
		`(?m)^  raw JetStream consume, Fetch\(500\) \+ Ack each, 1 rec/msg +150,000 +100,000 - 200,000 +67% +msgs/s$`,
		`(?m)^  sluice lines, 100 rec/msg +1,200,000 +900,000 - 1,500,000 +50% +records/s$`,
		`(?m)^  raw unix socket, 64 KiB writes \(process to process\) +4000\.0 +2000\.0 - 6000\.0 +100% +MB/s$`,
		`(?m)^  sluice acked, 1 rec/msg +n/a \(acked framing not available\) +records/s$`,
		`(?m)^  lines 1 rec/msg / raw consume +0\.950 +0\.500 - 1\.000 +53% +x$`,
		`(?m)^  sluice lines, 1 rec/msg: RSS peak \(VmHWM\) +50\.0 +40\.0 - 60\.0 +40% +MiB$`,
		`(?m)^  1 rec/msg end to end \(lines\) vs raw JetStream consume, same run +>= 0\.95 x +0\.950 x +MET$`,
		`(?m)^  100 rec/msg end to end, lines, validate-only \(\d+ CPUs\) +>= 1,000,000 records/s +1,200,000 records/s +MET$`,
		`(?m)^  peak RSS .* +<= 128 MiB +61\.0 MiB +MET$`,
		`(?m)^  100 rec/msg end to end, acked vs lines, same run +>= 0\.85 x +n/a +N/A$`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("table has no line matching %s\n%s", re, out)
		}
	}
}

func TestReport_WriteJSON(t *testing.T) {
	r := threeReps()
	var b bytes.Buffer
	if err := r.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Date    string `json:"date"`
		Records int    `json:"records"`
		Reps    int    `json:"reps"`
		Machine struct {
			NProc int `json:"nproc"`
		} `json:"machine"`
		Rows []struct {
			Key     string    `json:"key"`
			Values  []float64 `json:"values"`
			Summary *struct {
				Median, Min, Max float64
			} `json:"summary"`
			NA string `json:"na"`
		} `json:"rows"`
		Targets []struct {
			Status string   `json:"status"`
			Value  *float64 `json:"value"`
		} `json:"targets"`
	}
	if err := json.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatalf("%v\n%s", err, b.String())
	}
	if got.Date != "2026-01-02T03:04:05Z" || got.Records != 1000 || got.Reps != 3 || got.Machine.NProc < 1 {
		t.Errorf("header: %+v", got)
	}
	if len(got.Rows) != len(r.Rows) || len(got.Targets) != 8 {
		t.Fatalf("%d rows, %d targets; want %d, 8", len(got.Rows), len(got.Targets), len(r.Rows))
	}
	byKey := map[string]int{}
	for i, rw := range got.Rows {
		byKey[rw.Key] = i
	}
	c := got.Rows[byKey[perf.KeyJSConsume]]
	if len(c.Values) != 3 || c.Summary == nil || c.Summary.Median != 150000 || c.Summary.Min != 100000 || c.Summary.Max != 200000 {
		t.Errorf("consume row: %+v", c)
	}
	a := got.Rows[byKey[perf.KeyAcked100]]
	if a.Summary != nil || len(a.Values) != 0 || a.NA == "" {
		t.Errorf("acked row: %+v; want n/a with no values", a)
	}
	if got.Targets[0].Status != "met" || got.Targets[0].Value == nil || *got.Targets[0].Value != 0.95 {
		t.Errorf("first target: %+v", got.Targets[0])
	}
}

func TestFormatValue(t *testing.T) {
	for _, tc := range []struct {
		v    float64
		unit string
		want string
	}{
		{0, perf.UnitRecords, "0"},
		{999.4, perf.UnitRecords, "999"},
		{1000, perf.UnitMsgs, "1,000"},
		{1234567.6, perf.UnitRecords, "1,234,568"},
		{-1234, perf.UnitRecords, "-1,234"},
		{0.12345, perf.UnitRatio, "0.123"},
		{63.96, perf.UnitMiB, "64.0"},
		{2949.94, perf.UnitMB, "2949.9"},
	} {
		if got := perf.FormatValue(tc.v, tc.unit); got != tc.want {
			t.Errorf("FormatValue(%v, %q) = %q; want %q", tc.v, tc.unit, got, tc.want)
		}
	}
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

func TestReport_Save(t *testing.T) {
	r := threeReps()
	r.Date = time.Date(2026, 11, 24, 16, 31, 47, 0, time.UTC)
	r.Machine.Host, r.Machine.NProc = "vm", 2
	dir := filepath.Join(t.TempDir(), "results")
	base, err := r.Save(dir)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "2026-11-24T163147Z-vm-2cpu"); base != want {
		t.Fatalf("Save = %q, want %q", base, want)
	}
	var txt, js bytes.Buffer
	if err := r.WriteTable(&txt); err != nil {
		t.Fatal(err)
	}
	if err := r.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	for ext, want := range map[string][]byte{".txt": txt.Bytes(), ".json": js.Bytes()} {
		got, err := os.ReadFile(base + ext)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s%s: %v, content equal to the writer's: %v", base, ext, err, bytes.Equal(got, want))
		}
	}
}
