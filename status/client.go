package status

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-dev/sluice/obs"
)

// Fetch asks the admin server at admin (host:port or URL) for its Report.
func Fetch(ctx context.Context, client *http.Client, admin string) (*Report, error) {
	base, err := obs.AdminURL(admin)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/status", nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("status: %w (is sluice run up, with its admin server at %s? see admin.listen, or pass --admin)", err, admin)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status from %s: %s", base, obs.AdminError(resp))
	}
	var r Report
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return nil, fmt.Errorf("status from %s: bad answer: %w", base, err)
	}
	return &r, nil
}

// clearScreen moves the cursor home and clears the screen (ANSI), so each
// Watch frame redraws in place.
const clearScreen = "\x1b[H\x1b[2J"

// Watch fetches and renders the report every interval until ctx ends,
// redrawing in place. A failed fetch is shown on the screen and retried at
// the next tick; Watch returns nil when ctx ends.
func Watch(ctx context.Context, client *http.Client, admin string, interval time.Duration, w io.Writer) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		var b strings.Builder
		b.WriteString(clearScreen)
		fctx, cancel := context.WithTimeout(ctx, max(interval, 2*time.Second))
		r, err := Fetch(fctx, client, admin)
		cancel()
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			fmt.Fprintf(&b, "sluice status %s  %s\n\n%v\n\nretrying every %s; Ctrl-C to stop\n", admin, time.Now().UTC().Format("15:04:05 UTC"), err, interval)
		default:
			Render(&b, admin, r)
			fmt.Fprintf(&b, "\nrefreshing every %s; Ctrl-C to stop\n", interval)
		}
		if _, err := io.WriteString(w, b.String()); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Render writes r as one screen of text.
func Render(w io.Writer, admin string, r *Report) {
	p := func(format string, a ...any) { fmt.Fprintf(w, format, a...) }
	p("sluice %s at %s · up %s · %s\n\n", r.Version, admin, dur(float64(r.Uptime)), r.At.Format("2006-01-02 15:04:05 UTC"))

	q := r.Queue
	where := q.URL
	if where == "" {
		where = "embedded"
	}
	p("queue      %-13s %s, stream %s\n", state(q.Connected), where, q.Stream)
	if b := q.Backlog; b != nil {
		p("  backlog  %s pending · %s delivered unacked (%s redelivered) · oldest unacked %s\n",
			count(b.Pending), count(b.AckPending), count(b.Redelivered), age(float64(b.OldestUnackedAge), b.Stored))
	} else {
		p("  backlog  unknown (the queue cannot be asked now)\n")
	}
	d := r.Drainer
	p("drainer    %-13s %s framing, %s\n", state(d.Connected), d.Framing, d.Socket)
	if win := d.Window; win != nil {
		p("  window   %s frames · %s\n", of(win.Records, win.MaxRecords, count), of(win.Bytes, win.MaxBytes, bytes))
	}
	if l := d.AckLatency; l != nil {
		if l.Count == 0 {
			p("  acks     no acknowledgements in the last minute\n")
		} else {
			p("  acks     latency p50 %s · p90 %s · p99 %s (%s frames, last minute)\n",
				secs(float64(l.P50)), secs(float64(l.P90)), secs(float64(l.P99)), count(l.Count))
		}
	}
	if d.Framing == "acked" {
		p("  commit   %s\n", d.CommittedNote)
	}
	p("\n")

	rec := r.Records
	if ps := rec.PerSecond; ps != nil {
		p("records/s  in %s · out %s · dropped %s · dead-lettered %s  (last %s)\n",
			rate(ps.In), rate(ps.Out), rate(ps.Dropped), rate(ps.DeadLettered), dur(float64(rec.RateWindow)))
	} else {
		p("records/s  measuring (no snapshot yet)\n")
	}
	t := rec.Total
	p("total      in %s · out %s · dropped %s · dead-lettered %s\n", count(t.In), count(t.Out), count(t.Dropped), count(t.DeadLettered))
	in := r.Inflight
	p("in flight  %s records · %s\n\n", of(in.Records, in.MaxRecords, count), of(in.Bytes, in.MaxBytes, bytes))

	rc := r.Reconnects
	p("reconnects last minute %s · total %s", count(rc.LastMinute), count(rc.Total))
	if len(rc.ByReason) > 0 {
		var parts []string
		for _, x := range rc.ByReason {
			parts = append(parts, fmt.Sprintf("%s %s/%s", x.Reason, count(x.LastMinute), count(x.Total)))
		}
		p("  (%s, last minute/total)", strings.Join(parts, " · "))
	}
	p("\n")
	p("flight     dumps last minute %s · total %s\n", count(r.FlightDumps.LastMinute), count(r.FlightDumps.Total))
	if len(r.Taps) > 0 || r.TapDropped > 0 {
		p("taps       in %s · out %s · dead %s reading · %s records dropped for slow readers\n",
			count(r.Taps["in"]), count(r.Taps["out"]), count(r.Taps["dead"]), count(r.TapDropped))
	}
}

func state(ok bool) string {
	if ok {
		return "connected"
	}
	return "DISCONNECTED"
}

// of writes v against its limit: "1,024 / 50,000 (2%)", or v alone with no
// limit.
func of(v, limit float64, f func(float64) string) string {
	if limit <= 0 {
		return f(v)
	}
	return fmt.Sprintf("%s / %s (%.0f%%)", f(v), f(limit), 100*v/limit)
}

// count writes n with thousands separators.
func count(n float64) string {
	if math.IsNaN(n) {
		return "-"
	}
	s := strconv.FormatInt(int64(math.Round(n)), 10)
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

func rate(n float64) string {
	if n > 0 && n < 10 {
		return strconv.FormatFloat(n, 'f', 1, 64)
	}
	return count(n)
}

func bytes(n float64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%.0f B", n)
	}
	units := []string{"KiB", "MiB", "GiB", "TiB"}
	i := -1
	for n >= unit && i < len(units)-1 {
		n /= unit
		i++
	}
	return fmt.Sprintf("%.1f %s", n, units[i])
}

func secs(s float64) string {
	if math.IsNaN(s) {
		return "-"
	}
	return time.Duration(s * float64(time.Second)).Round(10 * time.Microsecond).String()
}

func dur(s float64) string {
	return time.Duration(s * float64(time.Second)).Round(time.Second).String()
}

func age(s, stored float64) string {
	if stored == 0 {
		return "none (the stream is empty)"
	}
	return time.Duration(s * float64(time.Second)).Round(100 * time.Millisecond).String()
}
