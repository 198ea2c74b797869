// Package report renders one sluice load run as a self-contained HTML page:
// a summary table, a throughput chart (records published and drained per
// second), a latency chart (p50 and p99 of each second) and the sink's
// reconnects marked on both. The charts are inline SVG drawn here; the page
// has no external reference of any kind (no scripts, styles, fonts or images
// to fetch), so it opens the same offline, from a CI artifact or an email.
package report

import (
	"bytes"
	"fmt"
	"html/template"
	"io"
	"math"
	"strconv"
	"time"
)

// Sample is what happened during one interval (normally one second) of a
// run.
type Sample struct {
	At        time.Duration // end of the interval, since the run started
	Published int64         // records acknowledged by the queue during the interval
	Drained   int64         // records of the run that appeared in the drainer's output during the interval
	Latency   int64         // latency observations in the interval; 0 = P50 and P99 are meaningless
	P50, P99  time.Duration // latency percentiles of the records drained during the interval
}

// Event is something worth marking on the charts, at a point of the run.
type Event struct {
	At    time.Duration // since the run started
	Label string        // short: "reconnect: eof"
}

// Field is one row of the summary table.
type Field struct{ Name, Value string }

// Run is everything the page shows.
type Run struct {
	Title   string    // "" = "sluice load"
	RunID   string    // shown under the title
	Started time.Time // wall-clock start; zero = not shown
	Summary []Field
	// Samples are in time order, each covering the time since the previous
	// one (the first: since the start); rates are counts divided by that
	// width.
	Samples []Sample
	// Interval is the width assumed for a sample that does not advance in
	// time; 0 = one second.
	Interval time.Duration
	Events   []Event
	// Metrics says whether the events could be read at all (the sink's
	// metrics endpoint answered); when false the page says so instead of
	// claiming there was no reconnect.
	Metrics bool
	// Verified says whether drained counts and latencies were measured (the
	// run read the drainer's output); when false the page omits them.
	Verified bool
	// Extra charts are drawn after the standard ones, each with its note
	// (sluice bench --soak: memory, goroutines, descriptors, disk).
	Extra []ExtraChart
}

// ExtraChart is a chart of Run.Extra with the note under it.
type ExtraChart struct {
	Chart Chart
	Note  string
}

// Charts returns the throughput and latency charts of r, with the events
// as markers.
func (r Run) Charts() (throughput, latency Chart) {
	iv := r.Interval
	if iv <= 0 {
		iv = time.Second
	}
	var pub, drn, p50, p99 []Point
	var prev time.Duration
	for _, s := range r.Samples {
		x := s.At.Seconds()
		// The rate is over the sample's actual width: the last one of a
		// run is usually shorter.
		width := s.At - prev
		if width <= 0 {
			width = iv
		}
		prev = s.At
		per := width.Seconds()
		pub = append(pub, Point{x, float64(s.Published) / per})
		drn = append(drn, Point{x, float64(s.Drained) / per})
		if s.Latency > 0 {
			p50 = append(p50, Point{x, ms(s.P50)})
			p99 = append(p99, Point{x, ms(s.P99)})
		} else {
			p50 = append(p50, Point{x, math.NaN()})
			p99 = append(p99, Point{x, math.NaN()})
		}
	}
	var markers []Marker
	for _, e := range r.Events {
		markers = append(markers, Marker{X: e.At.Seconds(), Label: e.Label})
	}
	secs := func(v float64) string { return compact(v) + "s" }
	throughput = Chart{
		ID:      "chart-throughput",
		Title:   "Throughput",
		XLabel:  "time since start (s)",
		YLabel:  "records / s",
		Series:  []Series{{Name: "published", Points: pub, Width: 4}}, // wide: drained is drawn over it
		Markers: markers,
		XFormat: secs,
	}
	if r.Verified {
		throughput.Series = append(throughput.Series, Series{Name: "drained", Points: drn})
	}
	latency = Chart{
		ID:      "chart-latency",
		Title:   "Latency, publish to drained (per second)",
		XLabel:  "time since start (s)",
		YLabel:  "milliseconds",
		Series:  []Series{{Name: "p50", Points: p50}, {Name: "p99", Points: p99}},
		Markers: markers,
		XFormat: secs,
	}
	return throughput, latency
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// Write writes r as one HTML page to w.
func Write(w io.Writer, r Run) error {
	if r.Title == "" {
		r.Title = "sluice load"
	}
	tc, lc := r.Charts()
	var tb, lb bytes.Buffer
	if err := tc.WriteSVG(&tb); err != nil {
		return err
	}
	if r.Verified {
		if err := lc.WriteSVG(&lb); err != nil {
			return err
		}
	}
	var extra []extraSVG
	for _, x := range r.Extra {
		var b bytes.Buffer
		if err := x.Chart.WriteSVG(&b); err != nil {
			return err
		}
		extra = append(extra, extraSVG{SVG: template.HTML(b.String()), Note: x.Note}) // WriteSVG escapes every text
	}
	var events []eventRow
	for _, e := range r.Events {
		events = append(events, eventRow{strconv.FormatFloat(e.At.Seconds(), 'f', 1, 64) + " s", e.Label})
	}
	started := ""
	if !r.Started.IsZero() {
		started = r.Started.Format(time.RFC3339)
	}
	data := pageData{
		Run:        r,
		StartedStr: started,
		Throughput: template.HTML(tb.String()), // built by WriteSVG, which escapes every text
		Latency:    template.HTML(lb.String()),
		EventRows:  events,
		SampleN:    len(r.Samples),
		ExtraSVG:   extra,
	}
	if err := page.Execute(w, data); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return nil
}

type eventRow struct{ At, Label string }

type extraSVG struct {
	SVG  template.HTML
	Note string
}

type pageData struct {
	Run
	StartedStr string
	Throughput template.HTML
	Latency    template.HTML
	EventRows  []eventRow
	SampleN    int
	ExtraSVG   []extraSVG
}

// page is the HTML around the charts. Its one inline script only counts
// the chart lines the browser laid out (for the headless render check);
// the page is complete without it.
var page = template.Must(template.New("page").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}{{if .RunID}} — {{.RunID}}{{end}}</title>
<style>
body { font-family: system-ui, sans-serif; color: #222; margin: 24px auto; max-width: 1000px; padding: 0 16px; background: #fafafa; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 16px; margin: 28px 0 8px; }
.meta { color: #666; margin: 0 0 16px; }
table { border-collapse: collapse; background: #fff; }
td, th { padding: 3px 14px 3px 6px; text-align: left; border-bottom: 1px solid #eee; font-variant-numeric: tabular-nums; }
th { font-weight: 600; }
.summary td:first-child { color: #555; }
svg.chart { display: block; margin-top: 24px; max-width: 100%; height: auto; border: 1px solid #ddd; background: #fff; }
.note { color: #666; font-size: 13px; margin: 6px 0 0; }
</style>
</head>
<body>
<h1>{{.Title}}</h1>
<p class="meta">{{if .RunID}}run {{.RunID}}{{end}}{{if .StartedStr}} · started {{.StartedStr}}{{end}} · {{.SampleN}} samples</p>
{{if .Summary}}<table class="summary">
{{range .Summary}}<tr><td>{{.Name}}</td><td>{{.Value}}</td></tr>
{{end}}</table>{{end}}
{{.Throughput}}
<p class="note">Records acknowledged by the queue ("published") {{if .Verified}}and records of this run that appeared in the drainer's output ("drained") {{end}}in each second.{{if .Events}} Dashed lines: the sink reconnected to the drainer.{{end}}</p>
{{if .Verified}}{{.Latency}}
<p class="note">Latency is the time from publishing a record to seeing it in the drainer's output files (read every 50 ms), for the records drained in each second. Seconds in which nothing was drained have no point.</p>
{{end}}{{range .ExtraSVG}}{{.SVG}}
<p class="note">{{.Note}}</p>
{{end}}<h2>Reconnects</h2>
{{if not .Metrics}}<p class="note">Not known: the sink's metrics endpoint could not be read during the run, so reconnects are not marked.</p>
{{else if .EventRows}}<table class="events"><tr><th>time</th><th>event</th></tr>
{{range .EventRows}}<tr><td>{{.At}}</td><td>{{.Label}}</td></tr>
{{end}}</table>
{{else}}<p class="note">None: the sink kept its connection to the drainer for the whole run.</p>
{{end}}<script>
(function () {
  var drawn = 0;
  document.querySelectorAll("svg.chart g.series path").forEach(function (p) {
    if (p.getTotalLength() > 0) { drawn++; }
  });
  document.body.setAttribute("data-paths-drawn", String(drawn));
})();
</script>
</body>
</html>
`))
