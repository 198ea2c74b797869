package perf

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is the result of Run: one row per measurement with its values
// from every repetition and their summary, and the targets.
type Report struct {
	Date       time.Time `json:"date"`
	Machine    Machine   `json:"machine"`
	Command    string    `json:"command,omitempty"` // set by the caller, for the record
	Records    int       `json:"records"`           // 100 rec/msg cases
	Messages   int       `json:"messages"`          // 1 rec/msg cases and raw JetStream
	SocketRecs int       `json:"socket_records"`
	RecordSize int       `json:"record_size"`
	Reps       int       `json:"reps"`
	Rows       []*Row    `json:"rows"`
	Targets    []Target  `json:"targets"`

	byKey map[string]*Row
	cur   map[string]float64 // this repetition's values, for ratios
}

// Row is one measurement.
type Row struct {
	Key     string    `json:"key"`
	Name    string    `json:"name"`
	Unit    string    `json:"unit"`
	Values  []float64 `json:"values"`            // one per repetition that produced it
	Summary *Summary  `json:"summary,omitempty"` // nil with no values
	NA      string    `json:"na,omitempty"`      // why there are no values
}

// Target is one of the goals sluice is measured against.
type Target struct {
	Name   string   `json:"name"`
	Goal   string   `json:"goal"`
	Value  *float64 `json:"value,omitempty"` // nil: not measured
	Unit   string   `json:"unit"`
	Status string   `json:"status"` // "met", "missed" or "n/a"
}

// Units of the rows.
const (
	UnitRecords = "records/s"
	UnitMsgs    = "msgs/s"
	UnitMB      = "MB/s"
	UnitMiB     = "MiB"
	UnitRatio   = "x"
	UnitCPU     = "CPU-s/M"
	UnitMs      = "ms"
)

func newReport(o Options) *Report {
	r := &Report{
		Date: o.Now().UTC().Truncate(time.Second), Machine: ThisMachine(),
		Records: o.Records, Messages: max(o.Records/5, 100), SocketRecs: o.Records * 10,
		RecordSize: o.RecordSize, Reps: o.Reps, byKey: map[string]*Row{},
	}
	row := func(key, name, unit string) {
		rw := &Row{Key: key, Name: name, Unit: unit, Values: []float64{}}
		r.Rows = append(r.Rows, rw)
		r.byKey[key] = rw
	}
	row(KeySocketRecords, "raw unix socket, 64 KiB writes (process to process)", UnitRecords)
	row(KeySocketMB, "raw unix socket, 64 KiB writes (process to process)", UnitMB)
	row(KeyJSPublish, "raw JetStream publish, async, 4096 pending, 1 rec/msg", UnitMsgs)
	row(KeyJSConsume, "raw JetStream consume, Fetch(500) + Ack each, 1 rec/msg", UnitMsgs)
	row(KeyJSPublishSync, "raw JetStream publish as above, queue.sync: always", UnitMsgs)
	row(KeyJSConsumeSync, "raw JetStream consume as above, queue.sync: always", UnitMsgs)
	for _, c := range e2eCases {
		row(c.key, c.name, UnitRecords)
	}
	for _, c := range e2eCases {
		row(c.key+"_rss_peak", c.name+": RSS peak (VmHWM)", UnitMiB)
		row(c.key+"_rss_steady", c.name+": RSS steady (median VmRSS)", UnitMiB)
	}
	for _, l := range []struct{ key, name string }{{KeyLatLines, "lines"}, {KeyLatAcked, "acked"}} {
		row(l.key+"_sustained", fmt.Sprintf("sustained %s, 100 rec/msg, publishing while draining", l.name), UnitRecords)
		for _, q := range []string{"p50", "p99", "max"} {
			row(l.key+"_"+q, fmt.Sprintf("latency %s, 100 rec/msg at 50%% of the sustained rate: %s", l.name, q), UnitMs)
		}
	}
	row(KeyJSConsumeCPU, "raw JetStream consume: CPU per M msgs (server + consumer)", UnitCPU)
	for _, c := range e2eCases {
		row(c.key+"_cpu_sluice", c.name+": sluice run CPU per M records (with its server)", UnitCPU)
		row(c.key+"_cpu_drain", c.name+": drainer CPU per M records", UnitCPU)
	}
	row(KeyRatioLines1, "lines 1 rec/msg / raw consume", UnitRatio)
	row(KeyRatioLines100S, "lines 100 rec/msg / raw socket", UnitRatio)
	row(KeyRatioLines100C, "lines 100 rec/msg / (raw consume x 100)", UnitRatio)
	row(KeyRatioAcked1, "acked 1 rec/msg / raw consume", UnitRatio)
	row(KeyRatioAcked100S, "acked 100 rec/msg / raw socket", UnitRatio)
	row(KeyRatioAcked100C, "acked 100 rec/msg / (raw consume x 100)", UnitRatio)
	row(KeyRatioAckedLine, "acked 100 rec/msg / lines 100 rec/msg", UnitRatio)
	row(KeyRatioFlight, "lines 100 rec/msg, flight recorder on / off", UnitRatio)
	row(KeyRatioTransform, "lines 100 rec/msg, 3-step transform / validate-only", UnitRatio)
	row(KeyRatioOrdered, "lines 100 rec/msg, transform with order_by / without", UnitRatio)
	row(KeyRatioSyncPub, "raw publish, sync always / 1s interval", UnitRatio)
	row(KeyRatioSyncCon, "raw consume, sync always / 1s interval", UnitRatio)
	return r
}

// startRep begins a repetition: ratios use only its values.
func (r *Report) startRep() { r.cur = map[string]float64{} }

func (r *Report) add(key string, v float64) {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return
	}
	rw := r.byKey[key]
	rw.Values = append(rw.Values, v)
	r.cur[key] = v
}

func (r *Report) setNA(key, why string) {
	r.byKey[key].NA = why
	r.byKey[key+"_rss_peak"].NA = why
	r.byKey[key+"_rss_steady"].NA = why
	r.byKey[key+"_cpu_sluice"].NA = why
	r.byKey[key+"_cpu_drain"].NA = why
	prefix := "ratio_" + strings.TrimPrefix(key, "sluice_") + "_"
	for _, rw := range r.Rows {
		if strings.HasPrefix(rw.Key, prefix) {
			rw.NA = why
		}
	}
}

func (r *Report) setLatencyNA(key, why string) {
	for _, q := range []string{"_sustained", "_p50", "_p99", "_max"} {
		r.byKey[key+q].NA = why
	}
}

func (r *Report) addRSS(key string, e E2EResult) {
	r.add(key+"_rss_peak", mib(e.PeakRSS))
	r.add(key+"_rss_steady", mib(e.SteadyRSS))
}

// last is key's value in this repetition, NaN when it has none.
func (r *Report) last(key string) float64 {
	if v, ok := r.cur[key]; ok {
		return v
	}
	return math.NaN()
}

// addRatios adds this repetition's ratios of sluice to the raw limits.
func (r *Report) addRatios() {
	cons, sock := r.last(KeyJSConsume), r.last(KeySocketRecords)
	r.add(KeyRatioLines1, ratio(r.last(KeyLines1), cons))
	r.add(KeyRatioLines100S, ratio(r.last(KeyLines100), sock))
	r.add(KeyRatioLines100C, ratio(r.last(KeyLines100), cons*100))
	r.add(KeyRatioAcked1, ratio(r.last(KeyAcked1), cons))
	r.add(KeyRatioAcked100S, ratio(r.last(KeyAcked100), sock))
	r.add(KeyRatioAcked100C, ratio(r.last(KeyAcked100), cons*100))
	r.add(KeyRatioAckedLine, ratio(r.last(KeyAcked100), r.last(KeyLines100)))
	r.add(KeyRatioFlight, ratio(r.last(KeyLines100Flight), r.last(KeyLines100)))
	r.add(KeyRatioTransform, ratio(r.last(KeyLines100Transform), r.last(KeyLines100)))
	r.add(KeyRatioOrdered, ratio(r.last(KeyLines100Ordered), r.last(KeyLines100Transform)))
	r.add(KeyRatioSyncPub, ratio(r.last(KeyJSPublishSync), r.last(KeyJSPublish)))
	r.add(KeyRatioSyncCon, ratio(r.last(KeyJSConsumeSync), r.last(KeyJSConsume)))
}

// Row returns the row with key, or nil.
func (r *Report) Row(key string) *Row { return r.byKey[key] }

// finish summarizes every row and evaluates the targets.
func (r *Report) finish() {
	for _, rw := range r.Rows {
		if len(rw.Values) > 0 {
			s := Summarize(rw.Values)
			rw.Summary = &s
		} else if rw.NA == "" {
			rw.NA = "n/a"
		}
	}
	med := func(key string) *float64 {
		if s := r.byKey[key].Summary; s != nil {
			v := s.Median
			return &v
		}
		return nil
	}
	check := func(name, goal, unit string, v *float64, ok func(float64) bool) Target {
		t := Target{Name: name, Goal: goal, Value: v, Unit: unit, Status: "n/a"}
		if v != nil {
			t.Status = "missed"
			if ok(*v) {
				t.Status = "met"
			}
		}
		return t
	}
	var peak *float64
	for _, c := range e2eCases {
		if s := r.byKey[c.key+"_rss_peak"].Summary; s != nil && (peak == nil || s.Max > *peak) {
			v := s.Max
			peak = &v
		}
	}
	r.Targets = []Target{
		check("1 rec/msg end to end (lines) vs raw JetStream consume, same run", ">= 0.95", UnitRatio,
			med(KeyRatioLines1), func(v float64) bool { return v >= 0.95 }),
		check("100 rec/msg end to end, acked vs lines, same run", ">= 0.85", UnitRatio,
			med(KeyRatioAckedLine), func(v float64) bool { return v >= 0.85 }),
		check(fmt.Sprintf("100 rec/msg end to end, lines, validate-only (%d CPUs)", r.Machine.NProc), ">= 1,000,000", UnitRecords,
			med(KeyLines100), func(v float64) bool { return v >= 1e6 }),
		check("flight recorder on, lines 100 rec/msg, vs off, same run", ">= 0.95", UnitRatio,
			med(KeyRatioFlight), func(v float64) bool { return v >= 0.95 }),
		check("p99 latency, lines, 100 rec/msg at 50% of max rate", "<= 10", UnitMs,
			med(KeyLatLines+"_p99"), func(v float64) bool { return v <= 10 }),
		check("p99 latency, acked, 100 rec/msg at 50% of max rate", "<= 25", UnitMs,
			med(KeyLatAcked+"_p99"), func(v float64) bool { return v <= 25 }),
		check("peak RSS of sluice run with its embedded server, default limits (max over all cases and reps)", "<= 128", UnitMiB,
			peak, func(v float64) bool { return v <= 128 }),
		check("100 rec/msg end to end, lines, 3-step transform vs validate-only, same run", ">= 0.6", UnitRatio,
			med(KeyRatioTransform), func(v float64) bool { return v >= 0.6 }),
	}
}

// FormatValue prints v the way the table does for unit.
func FormatValue(v float64, unit string) string {
	switch unit {
	case UnitRecords, UnitMsgs:
		return group(int64(math.Round(v)))
	case UnitRatio:
		return strconv.FormatFloat(v, 'f', 3, 64)
	case UnitCPU:
		return strconv.FormatFloat(v, 'f', 2, 64)
	default:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
}

// group writes n with commas between thousands: 1234567 → "1,234,567".
func group(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// WriteTable writes the report as aligned text.
func (r *Report) WriteTable(w io.Writer) error {
	m := r.Machine
	fmt.Fprintf(w, "sluice bench  %s\n", r.Date.Format(time.RFC3339))
	if r.Command != "" {
		fmt.Fprintf(w, "command: %s\n", r.Command)
	}
	fmt.Fprintf(w, "machine: %s, nproc %d, %q, %s %s/%s\n", m.Host, m.NProc, m.CPUModel, m.GoVersion, m.OS, m.Arch)
	fmt.Fprintf(w, "sizes:   %d-byte records; %s records (100 rec/msg), %s messages (1 rec/msg, raw JetStream), %s records (raw socket); %d reps\n\n",
		r.RecordSize, group(int64(r.Records)), group(int64(r.Messages)), group(int64(r.SocketRecs)), r.Reps)
	// Names left-aligned, numbers right-aligned.
	nameW := len("measurement")
	for _, rw := range r.Rows {
		nameW = max(nameW, len(rw.Name))
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%-*s\tmedian\tmin - max\tspread\tunit\t\n", nameW, "measurement")
	for _, rw := range r.Rows {
		if rw.Summary == nil {
			fmt.Fprintf(tw, "%-*s\t%s\t\t\t%s\t\n", nameW, rw.Name, rw.NA, rw.Unit)
			continue
		}
		s := rw.Summary
		fmt.Fprintf(tw, "%-*s\t%s\t%s - %s\t%.0f%%\t%s\t\n", nameW, rw.Name,
			FormatValue(s.Median, rw.Unit), FormatValue(s.Min, rw.Unit), FormatValue(s.Max, rw.Unit), 100*s.Spread(), rw.Unit)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "\ntargets")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, t := range r.Targets {
		v := "n/a"
		if t.Value != nil {
			v = FormatValue(*t.Value, t.Unit) + " " + t.Unit
		}
		fmt.Fprintf(tw, "  %s\t%s %s\t%s\t%s\n", t.Name, t.Goal, t.Unit, v, strings.ToUpper(t.Status))
	}
	return tw.Flush()
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// Save writes the report as a table (.txt) and as JSON (.json) to files in
// dir named by its date and machine, creating dir if needed, and returns
// their common path without the extension.
func (r *Report) Save(dir string) (string, error) {
	base := filepath.Join(dir, fmt.Sprintf("%s-%s-%dcpu", r.Date.Format("2006-01-02T150405Z"), r.Machine.Host, r.Machine.NProc))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("perf: save: %w", err)
	}
	for ext, write := range map[string]func(io.Writer) error{".txt": r.WriteTable, ".json": r.WriteJSON} {
		var b bytes.Buffer
		if err := write(&b); err != nil {
			return "", err
		}
		if err := os.WriteFile(base+ext, b.Bytes(), 0o644); err != nil {
			return "", fmt.Errorf("perf: save: %w", err)
		}
	}
	return base, nil
}
