package load

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is a verifier's accounting of one run.
type Report struct {
	RunID         string   `json:"run_id"`
	Published     int64    `json:"published"`      // seqs 1..Published were produced
	Expected      int64    `json:"expected"`       // Published minus Invalid and Failed records
	Invalid       int64    `json:"invalid"`        // records marked invalid (bound for the dead-letter subject)
	Failed        int64    `json:"failed"`         // records whose publish was never acknowledged
	Received      int64    `json:"received"`       // distinct expected records observed intact
	Lost          int64    `json:"lost"`           // Expected - Received
	LostIDs       []string `json:"lost_ids"`       // the first (lowest) 10 lost ids
	Duplicates    int64    `json:"duplicates"`     // extra copies of records already observed
	DuplicateIDs  []string `json:"duplicate_ids"`  // the first 10 duplicated ids, in observation order
	OutOfOrder    int64    `json:"out_of_order"`   // records with a seq lower than the last seen for their key
	InvalidLeaked int64    `json:"invalid_leaked"` // invalid records that arrived downstream
	FailedArrived int64    `json:"failed_arrived"` // failed records that arrived anyway (their ack was lost)
	OutOfRange    int64    `json:"out_of_range"`   // records of this run with seq outside 1..Published
	Malformed     int64    `json:"malformed"`      // lines of this run that are no longer well-formed records
	OtherRuns     int64    `json:"other_runs"`     // records of other runs, ignored
	Junk          int64    `json:"junk"`           // lines that are not records, ignored
	Lines         int64    `json:"lines"`          // lines observed
	Latency       Latency  `json:"latency"`        // of the first copy of each received record
}

// Latency holds end-to-end latency percentiles (send time to drain time) at
// microsecond resolution. In JSON the durations are float milliseconds.
type Latency struct {
	Count int64
	Mean  time.Duration
	P50   time.Duration
	P90   time.Duration
	P99   time.Duration
	P999  time.Duration
	Max   time.Duration
}

type latencyJSON struct {
	Count int64   `json:"count"`
	Mean  float64 `json:"mean_ms"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p99_9_ms"`
	Max   float64 `json:"max_ms"`
}

func ms(d time.Duration) float64     { return float64(d) / float64(time.Millisecond) }
func fromMs(f float64) time.Duration { return time.Duration(f * float64(time.Millisecond)) }
func (l Latency) toJSON() latencyJSON {
	return latencyJSON{l.Count, ms(l.Mean), ms(l.P50), ms(l.P90), ms(l.P99), ms(l.P999), ms(l.Max)}
}
func (j latencyJSON) toLatency() Latency {
	return Latency{j.Count, fromMs(j.Mean), fromMs(j.P50), fromMs(j.P90), fromMs(j.P99), fromMs(j.P999), fromMs(j.Max)}
}

// MarshalJSON writes the durations as float milliseconds.
func (l Latency) MarshalJSON() ([]byte, error) { return json.Marshal(l.toJSON()) }

// UnmarshalJSON reads what MarshalJSON writes.
func (l *Latency) UnmarshalJSON(b []byte) error {
	var j latencyJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*l = j.toLatency()
	return nil
}

// OK reports whether the run passed: nothing lost, no invalid record leaked,
// nothing damaged, no unknown seq of this run, and, when failOnDup is set
// (effectively-once output), no duplicates. Out-of-order records never fail
// a run: several publishers, retries and redeliveries reorder legitimately.
func (r Report) OK(failOnDup bool) bool {
	return r.Lost == 0 && r.InvalidLeaked == 0 && r.Malformed == 0 && r.OutOfRange == 0 &&
		(!failOnDup || r.Duplicates == 0)
}

// WriteTable writes r as an aligned two-column table for people.
func (r Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(name string, format string, args ...any) {
		fmt.Fprintf(tw, "%s\t"+format+"\n", append([]any{name}, args...)...)
	}
	ids := func(n int64, list []string) string {
		if n == 0 {
			return "0"
		}
		more := ""
		if n > int64(len(list)) {
			more = ", ..."
		}
		return fmt.Sprintf("%d  (%s%s)", n, strings.Join(list, ", "), more)
	}
	row("run", "%s", r.RunID)
	row("published", "%d", r.Published)
	row("invalid", "%d", r.Invalid)
	row("failed", "%d", r.Failed)
	row("expected", "%d", r.Expected)
	row("received", "%d", r.Received)
	row("lost", "%s", ids(r.Lost, r.LostIDs))
	row("duplicates", "%s", ids(r.Duplicates, r.DuplicateIDs))
	row("out of order", "%d", r.OutOfOrder)
	row("invalid leaked", "%d", r.InvalidLeaked)
	row("failed arrived", "%d", r.FailedArrived)
	row("out of range", "%d", r.OutOfRange)
	row("malformed", "%d", r.Malformed)
	row("other runs", "%d", r.OtherRuns)
	row("junk lines", "%d", r.Junk)
	row("lines", "%d", r.Lines)
	l := r.Latency
	row("latency", "n=%d  mean %v  p50 %v  p90 %v  p99 %v  p99.9 %v  max %v",
		l.Count, l.Mean, l.P50, l.P90, l.P99, l.P999, l.Max)
	return tw.Flush()
}
