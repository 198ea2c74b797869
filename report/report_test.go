package report_test

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/report"
)

// synthetic returns a 30-second run: a steady 5000 rec/s published, drained
// with a dip and a latency spike around two reconnects, and a second with
// nothing drained (no latency point).
func synthetic() report.Run {
	var samples []report.Sample
	for i := 1; i <= 30; i++ {
		s := report.Sample{At: time.Duration(i) * time.Second, Published: 5000, Drained: 5000, Latency: 5000,
			P50: time.Duration(2+i%3) * time.Millisecond, P99: time.Duration(9+i%5) * time.Millisecond}
		switch i {
		case 10:
			s.Drained, s.Latency = 0, 0
		case 11:
			s.Drained, s.P99 = 10000, 180*time.Millisecond
		case 21:
			s.Drained, s.P99 = 3000, 95*time.Millisecond
		case 22:
			s.Drained = 7000
		}
		samples = append(samples, s)
	}
	return report.Run{
		RunID:   "r0123456789ab",
		Started: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Summary: []report.Field{{Name: "published", Value: "150000"}, {Name: "received", Value: "150000"}, {Name: "lost", Value: "0"}},
		Samples: samples,
		Events: []report.Event{
			{At: 9500 * time.Millisecond, Label: "reconnect: eof"},
			{At: 20500 * time.Millisecond, Label: "reconnect: write_error ×2"},
		},
		Metrics:  true,
		Verified: true,
	}
}

func render(t *testing.T, r report.Run) string {
	t.Helper()
	var b bytes.Buffer
	if err := report.Write(&b, r); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func svg(t *testing.T, c report.Chart) string {
	t.Helper()
	var b bytes.Buffer
	if err := c.WriteSVG(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestTicks(t *testing.T) {
	for _, tc := range []struct {
		max  float64
		n    int
		want []float64
	}{
		{0, 5, []float64{0, 0.2, 0.4, 0.6, 0.8, 1}},
		{10, 5, []float64{0, 2, 4, 6, 8, 10}},
		{11, 5, []float64{0, 5, 10, 15}},
		{1234, 5, []float64{0, 500, 1000, 1500}},
		{0.3, 5, []float64{0, 0.1, 0.2, 0.3}},
		{30, 10, []float64{0, 5, 10, 15, 20, 25, 30}},
		{math.NaN(), 5, []float64{0, 0.2, 0.4, 0.6, 0.8, 1}},
	} {
		if got := report.Ticks(tc.max, tc.n); !slices.Equal(got, tc.want) {
			t.Errorf("Ticks(%v, %d) = %v, want %v", tc.max, tc.n, got, tc.want)
		}
	}
}

func TestChart_WriteSVG(t *testing.T) {
	c := report.Chart{
		ID: "c1", Title: "T <1>", XLabel: "seconds", YLabel: "records / s",
		Series: []report.Series{
			{Name: "published", Points: []report.Point{{1, 1000}, {2, 2500}, {3, 1500}}},
			{Name: "gappy", Points: []report.Point{{1, 10}, {2, math.NaN()}, {3, 30}, {4, 40}}},
		},
		Markers: []report.Marker{{X: 2.5, Label: "reconnect: eof"}},
	}
	out := svg(t, c)
	t.Run("series", func(t *testing.T) {
		paths := regexp.MustCompile(`<g class="series" data-series="([^"]+)"><path d="([^"]*)"`).FindAllStringSubmatch(out, -1)
		if len(paths) != 2 || paths[0][1] != "published" || paths[1][1] != "gappy" {
			t.Fatalf("series groups = %q, want published and gappy", paths)
		}
		if d := paths[0][2]; strings.Count(d, "M") != 1 || strings.Count(d, "L") != 2 {
			t.Errorf("published path %q: want one move and two lines", d)
		}
		// The NaN breaks the line: the first point stands alone (a dot),
		// then a new subpath joins 3 and 4.
		if d := paths[1][2]; strings.Count(d, "M") != 2 || strings.Count(d, "L") != 1 {
			t.Errorf("gappy path %q: want two moves and one line", d)
		}
		if n := strings.Count(out, "<circle"); n != 1 {
			t.Errorf("%d dots, want 1 for the lone point", n)
		}
	})
	t.Run("axes", func(t *testing.T) {
		for _, want := range []string{
			`>seconds</text>`, `>records / s</text>`, // axis labels
			`>0</text>`, `>500</text>`, `>1.5k</text>`, `>2.5k</text>`, // y ticks 0..2500 by 500
			`>4</text>`,                  // x ticks up to the last x
			`<title>T &lt;1&gt;</title>`, // escaped title
			`id="c1"`,
		} {
			if !strings.Contains(out, want) {
				t.Errorf("SVG lacks %s", want)
			}
		}
		if strings.Contains(out, ">3k</text>") {
			t.Error("y axis runs past the first tick above the data")
		}
	})
	t.Run("markers and legend", func(t *testing.T) {
		if n := strings.Count(out, `<g class="marker">`); n != 1 {
			t.Fatalf("%d markers, want 1", n)
		}
		if !strings.Contains(out, `reconnect: eof</text>`) || !strings.Contains(out, `<title>reconnect: eof at 2.5</title>`) {
			t.Error("marker label or tooltip missing")
		}
		legend := out[strings.Index(out, `<g class="legend"`):]
		for _, name := range []string{">published<", ">gappy<", ">reconnect<"} {
			if !strings.Contains(legend, name) {
				t.Errorf("legend lacks %s", name)
			}
		}
		// The marker sits between x=2 and x=3 on the plot.
		x := regexp.MustCompile(`<g class="marker"><title>[^<]*</title><line x1="([0-9.]+)"`).FindStringSubmatch(out)
		if x == nil {
			t.Fatal("no marker line")
		}
		if want := fmt.Sprintf("%.1f", 72+2.5/4*(960-24-72)); x[1] != want {
			t.Errorf("marker at x=%s, want %s", x[1], want)
		}
	})
	t.Run("no markers, no marker legend", func(t *testing.T) {
		c := c
		c.Markers = nil
		if out := svg(t, c); strings.Contains(out, ">reconnect<") || strings.Contains(out, `class="marker"`) {
			t.Error("marker drawn or listed without markers")
		}
	})
}

func TestWrite_Page(t *testing.T) {
	out := render(t, synthetic())
	for _, want := range []string{
		"<!DOCTYPE html>", `<meta charset="utf-8">`,
		`id="chart-throughput"`, `id="chart-latency"`,
		`data-series="published"`, `data-series="drained"`, `data-series="p50"`, `data-series="p99"`,
		"run r0123456789ab", "started 2026-01-02T03:04:05Z", "30 samples",
		"<td>lost</td><td>0</td>",
		"<td>9.5 s</td><td>reconnect: eof</td>", "<td>20.5 s</td><td>reconnect: write_error ×2</td>",
		`>records / s</text>`, `>milliseconds</text>`, `>time since start (s)</text>`,
		`>30s</text>`, // the last x tick
	} {
		if !strings.Contains(out, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	// Each reconnect is marked on both charts.
	if n := strings.Count(out, `<g class="marker">`); n != 4 {
		t.Errorf("%d markers, want 2 per chart", n)
	}
	// The latency lines break at second 10 (nothing drained): two subpaths.
	p99 := regexp.MustCompile(`data-series="p99"><path d="([^"]*)"`).FindStringSubmatch(out)
	if p99 == nil || strings.Count(p99[1], "M") != 2 || strings.Count(p99[1], "L") != 27 {
		t.Errorf("p99 path = %q, want 2 subpaths over 29 points", p99)
	}
}

// TestWrite_SelfContained proves the page opens with no network: nothing in
// it points outside the file.
func TestWrite_SelfContained(t *testing.T) {
	out := render(t, synthetic())
	if strings.Contains(out, "://") {
		i := strings.Index(out, "://")
		t.Errorf("page contains a URL: %q", out[max(0, i-40):min(len(out), i+40)])
	}
	ref := regexp.MustCompile(`(?i)\b(src|href|xlink:href|action|srcset|poster|data)\s*=|url\(|@import`)
	if m := ref.FindAllString(out, -1); m != nil {
		t.Errorf("page references other resources: %q", m)
	}
	if strings.Contains(out, "<link") || strings.Contains(out, "<img") || strings.Contains(out, "<iframe") {
		t.Error("page has a link, img or iframe element")
	}
}

func TestWrite_Escapes(t *testing.T) {
	r := synthetic()
	r.RunID = `<script>alert(1)</script>`
	r.Summary = append(r.Summary, report.Field{Name: "last error", Value: `"quoted" & <b>`})
	r.Events[0].Label = `reconnect: <img onerror=x>`
	out := render(t, r)
	for _, bad := range []string{"<script>alert", "<b>", "<img"} {
		if strings.Contains(out, bad) {
			t.Errorf("page contains unescaped %q", bad)
		}
	}
	if !strings.Contains(out, "&lt;img onerror=x&gt;") {
		t.Error("event label not shown escaped")
	}
}

func TestWrite_WithoutMetricsOrVerify(t *testing.T) {
	r := synthetic()
	r.Metrics, r.Events, r.Verified = false, nil, false
	out := render(t, r)
	if !strings.Contains(out, "metrics endpoint could not be read") {
		t.Error("page does not say that reconnects are unknown")
	}
	if strings.Contains(out, "None: the sink kept") {
		t.Error("page claims no reconnects without metrics")
	}
	if strings.Contains(out, `id="chart-latency"`) || strings.Contains(out, `data-series="drained"`) {
		t.Error("drained or latency charted without verification")
	}
	r.Metrics = true
	if out := render(t, r); !strings.Contains(out, "None: the sink kept its connection") {
		t.Error("page does not say there was no reconnect")
	}
}

// TestRender_Chromium renders a report in headless Chromium through
// scripts/render-check.sh, which fails unless the browser drew the charts,
// and leaves the screenshot in $SLUICE_RENDER_OUT if set. Without chromium
// the test fails: scripts/test, the README's test command, installs it.
func TestRender_Chromium(t *testing.T) {
	if _, err := exec.LookPath("chromium"); err != nil {
		t.Fatal("chromium is not installed: as root run 'apt-get update && apt-get install -y chromium' " +
			"(scripts/test, the README's test command, installs it)")
	}
	dir := t.TempDir()
	page := filepath.Join(dir, "report.html")
	if err := os.WriteFile(page, []byte(render(t, synthetic())), 0o644); err != nil {
		t.Fatal(err)
	}
	png := filepath.Join(dir, "report.png")
	if d := os.Getenv("SLUICE_RENDER_OUT"); d != "" {
		png = filepath.Join(d, "report.png")
	}
	out, err := exec.Command("../scripts/render-check.sh", page, png).CombinedOutput()
	t.Logf("%s", out)
	if err != nil {
		t.Fatalf("render check: %v", err)
	}
	if !strings.Contains(string(out), "4 series, 4 lines drawn, 4 markers") {
		t.Error("the browser did not draw all 4 series and 4 markers")
	}
	b, err := os.ReadFile(png)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 8 || string(b[1:4]) != "PNG" || len(b) < 10_000 {
		t.Errorf("screenshot is not a plausible PNG (%d bytes)", len(b))
	}

	t.Run("the check fails on a page without charts", func(t *testing.T) {
		blank := filepath.Join(dir, "blank.html")
		if err := os.WriteFile(blank, []byte("<!DOCTYPE html><title>x</title><p>no charts"), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("../scripts/render-check.sh", blank, filepath.Join(dir, "blank.png")).CombinedOutput()
		if err == nil {
			t.Fatalf("render check passed a page without charts:\n%s", out)
		}
		if !strings.Contains(string(out), "FAIL") {
			t.Errorf("no FAIL reason in:\n%s", out)
		}
	})
}

func TestRun_ChartsRates(t *testing.T) {
	r := report.Run{Verified: true, Samples: []report.Sample{
		{At: time.Second, Published: 1000, Drained: 900},
		{At: 2 * time.Second, Published: 2000, Drained: 2100, Latency: 1, P50: 1500 * time.Microsecond, P99: 4 * time.Millisecond},
		{At: 2250 * time.Millisecond, Published: 500, Drained: 250}, // a short last sample
	}}
	tc, lc := r.Charts()
	want := map[string][]report.Point{
		"published": {{1, 1000}, {2, 2000}, {2.25, 2000}},
		"drained":   {{1, 900}, {2, 2100}, {2.25, 1000}},
	}
	for _, s := range tc.Series {
		if !slices.Equal(s.Points, want[s.Name]) {
			t.Errorf("%s = %v, want %v", s.Name, s.Points, want[s.Name])
		}
	}
	p99 := lc.Series[1].Points
	if lc.Series[1].Name != "p99" || !math.IsNaN(p99[0].Y) || p99[1] != (report.Point{X: 2, Y: 4}) || !math.IsNaN(p99[2].Y) {
		t.Errorf("p99 = %v, want a point at 2s only", p99)
	}
	if len(tc.Markers) != 0 {
		t.Error("markers without events")
	}
}
