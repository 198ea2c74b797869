package load

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// ReconnectsMetric is sluice's counter of replaced sink connections,
// labelled by reason.
const ReconnectsMetric = "sluice_sink_reconnects_total"

// Reconnects returns ReconnectsMetric by reason from metric families, as a
// prometheus.Gatherer gathers them or the text format parses into. A sample
// without a reason label counts under "unknown". Families without the metric
// (no reconnect reason seen yet) yield an empty map.
func Reconnects(mfs []*dto.MetricFamily) map[string]float64 {
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != ReconnectsMetric {
			continue
		}
		for _, m := range mf.GetMetric() {
			reason := "unknown"
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" {
					reason = l.GetValue()
				}
			}
			out[reason] += m.GetCounter().GetValue() + m.GetUntyped().GetValue()
		}
	}
	return out
}

// reconnectScraper reads ReconnectsMetric from sluice's /metrics and
// reports what changed since the previous read. It tolerates the endpoint
// being absent: then it reports nothing. It is not safe for concurrent use.
type reconnectScraper struct {
	url    string
	client *http.Client
	read   bool               // the endpoint was read at least once
	last   map[string]float64 // by reason, at the last successful read
	count  int64              // reconnects seen since the first read
}

func newReconnectScraper(url string) *reconnectScraper {
	return &reconnectScraper{url: url, client: &http.Client{Timeout: 800 * time.Millisecond}}
}

// get reads the endpoint once.
func (s *reconnectScraper) get(ctx context.Context) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return nil, err
	}
	// Ask for the text format: it is what the parser below reads.
	req.Header.Set("Accept", string(expfmt.NewFormat(expfmt.TypeTextPlain)))
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("load: scrape %s: %s", s.url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("load: scrape %s: %w", s.url, err)
	}
	return Reconnects(slices.Collect(maps.Values(fams))), nil
}

// scrape reads the counters and returns a label for what increased since
// the last successful read ("reconnect: eof ×2, write_error"), or "".
func (s *reconnectScraper) scrape(ctx context.Context) string {
	if s.url == "" {
		return ""
	}
	cur, err := s.get(ctx)
	if err != nil {
		return ""
	}
	prev := s.last
	s.last = cur
	if !s.read {
		s.read = true
		return ""
	}
	var parts []string
	for _, reason := range slices.Sorted(maps.Keys(cur)) {
		d := cur[reason] - prev[reason]
		if d < 0 { // sluice restarted: its counters did too
			d = cur[reason]
		}
		s.count += int64(d)
		switch {
		case d >= 2:
			parts = append(parts, fmt.Sprintf("%s ×%.0f", reason, d))
		case d > 0:
			parts = append(parts, reason)
		}
	}
	if parts == nil {
		return ""
	}
	return "reconnect: " + strings.Join(parts, ", ")
}

// ok reports whether the endpoint was read at least once.
func (s *reconnectScraper) ok() bool { return s.read }

// total returns the reconnects counted during the run, and whether the
// endpoint was ever read.
func (s *reconnectScraper) total() (int64, bool) { return s.count, s.read }
