package report

import (
	"fmt"
	"html"
	"io"
	"math"
	"strconv"
	"strings"
)

// Point is one (x, y) value of a Series.
type Point struct{ X, Y float64 }

// Series is one line of a Chart. A NaN Y breaks the line: the points on
// either side are not joined (a second with no data).
type Series struct {
	Name   string
	Color  string  // any SVG colour; "" = the next colour of the palette
	Width  float64 // line width in px; 0 = 2
	Points []Point
}

// Marker is a vertical line across a Chart at X, with a label (a reconnect).
type Marker struct {
	X     float64
	Label string
}

// Chart is a line chart drawn as inline SVG: axes with ticks and labels, a
// legend, any number of series and vertical markers. The zero value of each
// optional field means its documented default.
type Chart struct {
	ID      string // the svg element's id; "" = none
	Title   string
	XLabel  string
	YLabel  string
	Series  []Series
	Markers []Marker
	Width   int                  // in px; 0 = 960
	Height  int                  // in px; 0 = 300
	YFormat func(float64) string // tick labels of the y axis; nil = compact numbers (1.5k, 2M)
	XFormat func(float64) string // tick labels of the x axis; nil = compact numbers
}

// palette is colour-blind friendly (Okabe-Ito).
var palette = []string{"#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00"}

// MarkerColor is the colour of markers, also used in the legend.
const MarkerColor = "#c0392b"

const (
	marginLeft   = 72
	marginRight  = 24
	marginTop    = 44
	marginBottom = 52
)

// WriteSVG writes c as one <svg> element, meant to be inlined in an HTML
// page (it carries no xmlns attribute, which HTML does not need, and
// references nothing outside itself).
func (c Chart) WriteSVG(w io.Writer) error {
	width, height := c.Width, c.Height
	if width <= 0 {
		width = 960
	}
	if height <= 0 {
		height = 300
	}
	xf, yf := c.XFormat, c.YFormat
	if xf == nil {
		xf = compact
	}
	if yf == nil {
		yf = compact
	}

	// Domains: both axes start at 0 and end at a tick.
	var maxX, maxY float64
	for _, s := range c.Series {
		for _, p := range s.Points {
			if finite(p.X) {
				maxX = math.Max(maxX, p.X)
			}
			if finite(p.Y) {
				maxY = math.Max(maxY, p.Y)
			}
		}
	}
	for _, m := range c.Markers {
		if finite(m.X) {
			maxX = math.Max(maxX, m.X)
		}
	}
	xTicks := ticks(maxX, 10)
	yTicks := ticks(maxY, 5)
	x1, y1 := xTicks[len(xTicks)-1], yTicks[len(yTicks)-1]

	pl, pr := float64(marginLeft), float64(width-marginRight)
	pt, pb := float64(marginTop), float64(height-marginBottom)
	sx := func(x float64) float64 { return pl + x/x1*(pr-pl) }
	sy := func(y float64) float64 { return pb - y/y1*(pb-pt) }

	b := &strings.Builder{}
	p := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	id := ""
	if c.ID != "" {
		id = ` id="` + esc(c.ID) + `"`
	}
	p(`<svg class="chart"%s viewBox="0 0 %d %d" width="%d" height="%d" role="img" font-family="system-ui, sans-serif" font-size="12">`+"\n",
		id, width, height, width, height)
	p("<title>%s</title>\n", esc(c.Title))
	p(`<rect class="bg" x="0" y="0" width="%d" height="%d" fill="#fff"/>`+"\n", width, height)
	p(`<text class="title" x="%g" y="20" font-size="15" font-weight="600" fill="#222">%s</text>`+"\n", pl, esc(c.Title))

	// Grid, ticks and tick labels.
	p(`<g class="y-axis" fill="#444">` + "\n")
	for _, v := range yTicks {
		y := sy(v)
		p(`<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#e4e4e4"/>`+"\n", pl, pr, y, y)
		p(`<text class="tick" x="%.1f" y="%.1f" text-anchor="end" dominant-baseline="middle">%s</text>`+"\n", pl-6, y, esc(yf(v)))
	}
	p("</g>\n")
	p(`<g class="x-axis" fill="#444">` + "\n")
	for _, v := range xTicks {
		x := sx(v)
		p(`<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#444"/>`+"\n", x, x, pb, pb+5)
		p(`<text class="tick" x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", x, pb+18, esc(xf(v)))
	}
	p("</g>\n")
	p(`<line class="axis" x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#444"/>`+"\n", pl, pr, pb, pb)
	p(`<line class="axis" x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#444"/>`+"\n", pl, pl, pt, pb)
	if c.XLabel != "" {
		p(`<text class="axis-label" x="%.1f" y="%d" text-anchor="middle" fill="#222">%s</text>`+"\n", (pl+pr)/2, height-10, esc(c.XLabel))
	}
	if c.YLabel != "" {
		p(`<text class="axis-label" transform="translate(16 %.1f) rotate(-90)" text-anchor="middle" fill="#222">%s</text>`+"\n", (pt+pb)/2, esc(c.YLabel))
	}

	// Markers under the series, so the lines stay readable.
	for _, m := range c.Markers {
		if !finite(m.X) {
			continue
		}
		x := sx(m.X)
		p(`<g class="marker"><title>%s at %s</title>`, esc(m.Label), esc(xf(m.X)))
		p(`<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="%s" stroke-width="1.5" stroke-dasharray="5 3"/>`, x, x, pt, pb, MarkerColor)
		p(`<text x="%.1f" y="%.1f" transform="rotate(-90 %.1f %.1f)" text-anchor="end" font-size="10" fill="%s">%s</text></g>`+"\n",
			x-3, pt+2, x-3, pt+2, MarkerColor, esc(m.Label))
	}

	// Series.
	for i, s := range c.Series {
		color := s.Color
		if color == "" {
			color = palette[i%len(palette)]
		}
		lw := s.Width
		if lw <= 0 {
			lw = 2
		}
		d, lone := pathData(s.Points, sx, sy)
		p(`<g class="series" data-series="%s">`, esc(s.Name))
		p(`<path d="%s" fill="none" stroke="%s" stroke-width="%g" stroke-linejoin="round" stroke-linecap="round"/>`, d, color, lw)
		for _, q := range lone {
			p(`<circle cx="%.1f" cy="%.1f" r="%g" fill="%s"/>`, sx(q.X), sy(q.Y), lw+0.5, color)
		}
		p("</g>\n")
	}

	// Legend, right-aligned above the plot.
	type entry struct {
		name, color string
		dashed      bool
	}
	var legend []entry
	for i, s := range c.Series {
		color := s.Color
		if color == "" {
			color = palette[i%len(palette)]
		}
		legend = append(legend, entry{s.Name, color, false})
	}
	if len(c.Markers) > 0 {
		legend = append(legend, entry{"reconnect", MarkerColor, true})
	}
	x := pr
	p(`<g class="legend" fill="#222">`)
	for i := len(legend) - 1; i >= 0; i-- {
		e := legend[i]
		x -= float64(7*len([]rune(e.name)) + 34)
		dash := ""
		if e.dashed {
			dash = ` stroke-dasharray="5 3"`
		}
		p(`<line x1="%.1f" x2="%.1f" y1="16" y2="16" stroke="%s" stroke-width="2"%s/>`, x, x+20, e.color, dash)
		p(`<text x="%.1f" y="20">%s</text>`, x+25, esc(e.name))
	}
	p("</g>\n</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// pathData returns the d attribute for points, breaking the line at NaN
// values, and the points that have no neighbour to join (drawn as dots).
func pathData(pts []Point, sx, sy func(float64) float64) (string, []Point) {
	var d strings.Builder
	var lone []Point
	run := 0 // points in the current unbroken run
	flush := func(i int) {
		if run == 1 {
			lone = append(lone, pts[i-1])
		}
		run = 0
	}
	for i, q := range pts {
		if !finite(q.X) || !finite(q.Y) {
			flush(i)
			continue
		}
		cmd := "L"
		if run == 0 {
			cmd = "M"
		}
		if d.Len() > 0 {
			d.WriteByte(' ')
		}
		fmt.Fprintf(&d, "%s%.1f %.1f", cmd, sx(q.X), sy(q.Y))
		run++
	}
	flush(len(pts))
	return d.String(), lone
}

// ticks returns evenly spaced round values (1, 2 or 5 times a power of ten
// apart) from 0 to the first tick at or above max, about n of them.
func ticks(max float64, n int) []float64 {
	if !(max > 0) || !finite(max) {
		max = 1
	}
	step := niceStep(max / float64(n))
	k := math.Ceil(max/step - 1e-9)
	out := make([]float64, 0, int(k)+1)
	for i := 0.0; i <= k; i++ {
		out = append(out, roundTo(i*step, step))
	}
	return out
}

// niceStep rounds raw up to 1, 2 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	switch f := raw / p; {
	case f <= 1:
		return p
	case f <= 2:
		return 2 * p
	case f <= 5:
		return 5 * p
	default:
		return 10 * p
	}
}

// roundTo removes floating-point noise from a multiple of step.
func roundTo(v, step float64) float64 {
	digits := max(0, -int(math.Floor(math.Log10(step)))+1)
	r, _ := strconv.ParseFloat(strconv.FormatFloat(v, 'f', digits, 64), 64)
	return r
}

// compact formats a tick value: 0, 0.25, 12, 1.5k, 2M, 3G.
func compact(v float64) string {
	a := math.Abs(v)
	switch {
	case a >= 1e9:
		return trim(v/1e9) + "G"
	case a >= 1e6:
		return trim(v/1e6) + "M"
	case a >= 1e3:
		return trim(v/1e3) + "k"
	}
	return trim(v)
}

func trim(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

func esc(s string) string { return html.EscapeString(s) }
