package load

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sluice-dev/sluice/report"
)

// WriteJSON writes out as one indented JSON object.
func (out Output) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

// WriteSummary writes the human-readable summary of a run: the generator's
// figures, the verification table and the verdict.
func (out Output) WriteSummary(w io.Writer) {
	res := out.Generator
	fmt.Fprintf(w, "sluice load: run %s to %s on %s\n", res.RunID, out.Subject, out.URL)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(name, format string, args ...any) {
		fmt.Fprintf(tw, "%s\t"+format+"\n", append([]any{name}, args...)...)
	}
	fmt.Fprintln(tw, "\ngenerator\t")
	row("elapsed", "%s", res.Elapsed.Round(time.Millisecond))
	row("published", "%d", res.Published)
	row("invalid", "%d", res.Invalid)
	row("failed", "%d", res.Failed)
	row("messages", "%d", res.Messages)
	row("bytes", "%d  (%.1f MB)", res.Bytes, float64(res.Bytes)/1e6)
	row("retries", "%d", res.Retries)
	row("rate", "%.0f records/s  %.1f MB/s", out.RecordsPerSecond, float64(res.Bytes)/1e6/max(res.Elapsed.Seconds(), 1e-9))
	if res.LastError != "" {
		row("last error", "%s", res.LastError)
	}
	if out.Reconnects != nil {
		row("reconnects", "%d  (sink, from %s)", *out.Reconnects, out.MetricsURL)
	}
	if out.Interrupted {
		row("interrupted", "yes: publishing stopped early")
	}
	_ = tw.Flush()
	if out.Verify != nil {
		fmt.Fprintf(w, "\nverification of %s\n", out.VerifyDir)
		_ = out.Verify.WriteTable(w)
	}
	if out.Report != "" {
		fmt.Fprintf(w, "\nreport written to %s\n", out.Report)
	}
	switch {
	case out.Verify == nil:
	case out.OK:
		fmt.Fprintf(w, "\nOK: all %d published records were drained\n", out.Verify.Received)
	case out.Verify.Lost > 0:
		fmt.Fprintf(w, "\nFAIL: %d of %d published records were not drained (first: %s)\n",
			out.Verify.Lost, out.Verify.Expected, strings.Join(out.Verify.LostIDs, ", "))
	default:
		fmt.Fprintf(w, "\nFAIL: duplicates %d, invalid leaked %d, malformed %d, out of range %d\n",
			out.Verify.Duplicates, out.Verify.InvalidLeaked, out.Verify.Malformed, out.Verify.OutOfRange)
	}
}

// WriteHTML writes the run's HTML report (package report) to path: the
// summary, the samples of width interval, and events as markers; metricsOK
// says whether sluice's metrics could be read at all.
func (out Output) WriteHTML(path string, interval time.Duration, events []report.Event, metricsOK bool) error {
	res := out.Generator
	field := func(name, value string) report.Field { return report.Field{Name: name, Value: value} }
	fields := []report.Field{
		field("target", fmt.Sprintf("%s on %s", out.Subject, out.URL)),
		field("duration", out.Elapsed.Round(time.Millisecond).String()),
		field("published", fmt.Sprintf("%d valid, %d invalid, %d failed, in %d messages", res.Published, res.Invalid, res.Failed, res.Messages)),
		field("publish rate", fmt.Sprintf("%.0f records/s, %.1f MB/s", out.RecordsPerSecond, float64(res.Bytes)/1e6/max(res.Elapsed.Seconds(), 1e-9))),
	}
	if v := out.Verify; v != nil {
		l := v.Latency
		fields = append(fields,
			field("received", strconv.FormatInt(v.Received, 10)+" of "+strconv.FormatInt(v.Expected, 10)),
			field("lost", idList(v.Lost, v.LostIDs)),
			field("duplicates", idList(v.Duplicates, v.DuplicateIDs)),
			field("out of order (per key)", strconv.FormatInt(v.OutOfOrder, 10)),
			field("latency", fmt.Sprintf("p50 %v · p90 %v · p99 %v · p99.9 %v · max %v", l.P50, l.P90, l.P99, l.P999, l.Max)),
			field("result", map[bool]string{true: "OK", false: "FAIL"}[out.OK]),
		)
	}
	if out.Reconnects != nil {
		fields = append(fields, field("reconnects", strconv.FormatInt(*out.Reconnects, 10)))
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("load: report: %w", err)
	}
	bw := bufio.NewWriter(f)
	err = report.Write(bw, report.Run{
		RunID:    res.RunID,
		Started:  out.Started,
		Summary:  fields,
		Samples:  out.Samples,
		Interval: interval,
		Events:   events,
		Metrics:  metricsOK,
		Verified: out.Verify != nil,
	})
	if err == nil {
		err = bw.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("load: report %s: %w", path, err)
	}
	return nil
}

func idList(n int64, ids []string) string {
	if n == 0 {
		return "0"
	}
	s := strconv.FormatInt(n, 10) + " (" + strings.Join(ids, ", ")
	if n > int64(len(ids)) {
		s += ", …"
	}
	return s + ")"
}
