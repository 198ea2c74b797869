package tap

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/sluice-dev/sluice/obs"
)

// Mount serves h on the admin server a:
//
//	GET /tap/{stage}?rate=N&max=N   stage: in, out or dead
//
// The answer streams one Event as a JSON object per line
// (application/x-ndjson), each flushed as it comes, until max events were
// sent (max=0 or none: until the client goes away). rate caps the events
// per second (default DefaultRate, at most MaxRate). A bad stage or
// parameter answers 400 with {"error": "..."}.
func Mount(a *obs.Admin, h *Hub) {
	a.HandleFunc("GET /tap/{stage}", func(w http.ResponseWriter, r *http.Request) {
		stage, opts, err := parseRequest(r)
		if err != nil {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
			return
		}
		serve(r.Context(), w, h, stage, opts)
	})
}

func parseRequest(r *http.Request) (Stage, SubOptions, error) {
	var opts SubOptions
	stage, err := ParseStage(r.PathValue("stage"))
	if err != nil {
		return 0, opts, err
	}
	q := r.URL.Query()
	if v := q.Get("rate"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f <= 0 || f > MaxRate {
			return 0, opts, fmt.Errorf("rate=%q: want records per second, above 0 and at most %d", v, MaxRate)
		}
		opts.Rate = f
	}
	if v := q.Get("max"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return 0, opts, fmt.Errorf("max=%q: want a count of records, 0 for no limit", v)
		}
		opts.Max = n
	}
	return stage, opts, nil
}

// serve streams a subscription's events to w until opts.Max were sent or
// ctx ends.
func serve(ctx context.Context, w http.ResponseWriter, h *Hub, stage Stage, opts SubOptions) {
	sub := h.Subscribe(stage, opts)
	defer sub.Close()
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	_ = rc.Flush() // the client sees the answer start before the first record
	enc := json.NewEncoder(w)
	for sent := 0; opts.Max == 0 || sent < opts.Max; sent++ {
		select {
		case <-ctx.Done():
			return
		case e := <-sub.C():
			if enc.Encode(e) != nil || rc.Flush() != nil {
				return
			}
		}
	}
}

// StreamOptions says what Stream asks for and how it prints.
type StreamOptions struct {
	Admin string  // the admin server's address (host:port) or URL
	Stage Stage   // the stage to tap
	Rate  float64 // events per second; 0: DefaultRate
	Max   int     // stop after this many; 0: until ctx ends
	JSON  bool    // print each Event as one JSON line instead of text
}

// Summary is what Stream saw.
type Summary struct {
	Events  int    // events printed
	Dropped uint64 // events the server dropped because this reader was slow
}

// Stream taps a running sluice's stage through its admin API and prints
// each event to w as it comes: one line each, as Format writes it (or the
// JSON with opts.JSON). It returns when opts.Max events came, when the
// server ends the stream, or when ctx ends (then with a nil error).
func Stream(ctx context.Context, client *http.Client, opts StreamOptions, w io.Writer) (Summary, error) {
	var sum Summary
	u, err := tapURL(opts)
	if err != nil {
		return sum, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return sum, err
	}
	resp, err := client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return sum, nil
		}
		return sum, fmt.Errorf("tap %s: %w (is sluice run up, with its admin server at %s? see admin.listen, or pass --admin)", opts.Stage, err, opts.Admin)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return sum, fmt.Errorf("tap %s at %s: %s", opts.Stage, u, obs.AdminError(resp))
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		var e Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return sum, fmt.Errorf("tap %s at %s: bad event line %q: %w", opts.Stage, u, sc.Bytes(), err)
		}
		if e.Dropped > sum.Dropped {
			if !opts.JSON {
				fmt.Fprintf(w, "# %d records dropped so far: this reader is slower than the rate cap\n", e.Dropped)
			}
			sum.Dropped = e.Dropped
		}
		if opts.JSON {
			_, err = fmt.Fprintf(w, "%s\n", sc.Bytes())
		} else {
			_, err = io.WriteString(w, Format(e)+"\n")
		}
		if err != nil {
			return sum, err
		}
		sum.Events++
		if opts.Max > 0 && sum.Events >= opts.Max {
			return sum, nil
		}
	}
	if err := sc.Err(); err != nil && ctx.Err() == nil {
		return sum, fmt.Errorf("tap %s at %s: reading the stream: %w", opts.Stage, u, err)
	}
	return sum, nil
}

func tapURL(opts StreamOptions) (string, error) {
	base, err := obs.AdminURL(opts.Admin)
	if err != nil {
		return "", err
	}
	q := url.Values{}
	if opts.Rate > 0 {
		q.Set("rate", strconv.FormatFloat(opts.Rate, 'f', -1, 64))
	}
	if opts.Max > 0 {
		q.Set("max", strconv.Itoa(opts.Max))
	}
	u := base + "/tap/" + opts.Stage.String()
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	return u, nil
}

// Format writes e as one line of text:
//
//	14:07:05.123 out INGEST epoch=1764684425000000000 seq=12 index=0 subject=ingest.orders {"id":1}
//
// A dead letter adds reason="..."; a whole message shows index=-; data that
// is not printable UTF-8 text is quoted, and cut data ends with
// "… (N bytes)".
func Format(e Event) string {
	var b strings.Builder
	b.WriteString(e.Time.UTC().Format("15:04:05.000"))
	b.WriteByte(' ')
	b.WriteString(e.Stage)
	fmt.Fprintf(&b, " %s epoch=%d seq=%d index=", e.Stream, e.Epoch, e.Seq)
	if e.Index < 0 {
		b.WriteByte('-')
	} else {
		b.WriteString(strconv.FormatInt(e.Index, 10))
	}
	b.WriteString(" subject=")
	b.WriteString(e.Subject)
	if e.Reason != "" {
		b.WriteString(" reason=")
		b.WriteString(strconv.Quote(e.Reason))
	}
	b.WriteByte(' ')
	if printable(e.Data) {
		b.WriteString(e.Data)
	} else {
		b.WriteString(strconv.Quote(e.Data))
	}
	if e.Truncated {
		fmt.Fprintf(&b, "… (%d bytes)", e.Size)
	}
	return b.String()
}

func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if !unicode.IsPrint(r) && r != ' ' {
			return false
		}
	}
	return true
}
