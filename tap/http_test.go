package tap_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-dev/sluice/obs"
	"github.com/sluice-dev/sluice/tap"
)

func server(t *testing.T) (*tap.Hub, *httptest.Server) {
	t.Helper()
	reg := prometheus.NewRegistry()
	h := tap.NewHub(reg)
	a := obs.NewAdmin(reg, slog.New(slog.DiscardHandler))
	tap.Mount(a, h)
	srv := httptest.NewServer(a)
	t.Cleanup(srv.Close)
	return h, srv
}

// feed offers records to stage s until ctx ends, like a running pipeline.
func feed(ctx context.Context, h *tap.Hub, s tap.Stage) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for seq := uint64(1); ctx.Err() == nil; seq++ {
			if h.Tapping(s) {
				r := rec(seq, 0, `{"n":1}`)
				r.Reason = "bad"
				h.Offer(s, r)
			}
			time.Sleep(time.Millisecond)
		}
	}()
	return done
}

func TestStream_TapsOverAdminAPI(t *testing.T) {
	for _, asJSON := range []bool{false, true} {
		h, srv := server(t)
		ctx, cancel := context.WithCancel(context.Background())
		fed := feed(ctx, h, tap.Dead)
		var out bytes.Buffer
		sum, err := tap.Stream(ctx, srv.Client(), tap.StreamOptions{Admin: srv.URL, Stage: tap.Dead, Rate: 1000, Max: 3, JSON: asJSON}, &out)
		cancel()
		<-fed
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
		if sum.Events != 3 || len(lines) != 3 {
			t.Fatalf("json=%v: %d events, output:\n%s", asJSON, sum.Events, out.String())
		}
		for _, l := range lines {
			if asJSON {
				var e tap.Event
				if err := json.Unmarshal([]byte(l), &e); err != nil || e.Stage != "dead" || e.Stream != "INGEST" || e.Seq == 0 || e.Reason != "bad" {
					t.Fatalf("line %q: %+v %v", l, e, err)
				}
			} else if !strings.Contains(l, ` dead INGEST epoch=9 seq=`) || !strings.HasSuffix(l, ` index=0 subject=ingest.orders reason="bad" {"n":1}`) {
				t.Fatalf("line %q", l)
			}
		}
	}
}

// When the client has gone, the server's subscription ends.
func TestMount_ClientGoneEndsSubscription(t *testing.T) {
	h, srv := server(t)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/tap/in", nil)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || ct != "application/x-ndjson" {
		t.Fatalf("status %d, content type %q", resp.StatusCode, ct)
	}
	if !h.Tapping(tap.In) {
		t.Fatal("no subscription while the stream is open")
	}
	cancel()
	resp.Body.Close()
	deadline := time.Now().Add(10 * time.Second)
	for h.Tapping(tap.In) {
		if time.Now().After(deadline) {
			t.Fatal("subscription still open 10s after the client went away")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestMount_BadRequests(t *testing.T) {
	_, srv := server(t)
	for _, tc := range []struct{ path, want string }{
		{"/tap/sink", `unknown tap stage: \"sink\" (want in, out or dead)`},
		{"/tap/out?rate=0", `rate=\"0\": want records per second, above 0 and at most 10000`},
		{"/tap/out?rate=20000", `at most 10000`},
		{"/tap/out?max=-1", `max=\"-1\": want a count of records, 0 for no limit`},
	} {
		resp, err := srv.Client().Get(srv.URL + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 400 || !strings.Contains(b.String(), tc.want) {
			t.Errorf("%s: %d %s, want 400 with %s", tc.path, resp.StatusCode, b.String(), tc.want)
		}
	}
	// The client shows the server's reason.
	_, err := tap.Stream(context.Background(), srv.Client(), tap.StreamOptions{Admin: srv.URL, Stage: tap.Out, Rate: 1e9}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "400 Bad Request: rate=") {
		t.Fatalf("Stream with rate 1e9: %v", err)
	}
}

func TestStream_NoSluice(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	addr := srv.Listener.Addr().String()
	srv.Close()
	_, err := tap.Stream(context.Background(), http.DefaultClient, tap.StreamOptions{Admin: addr, Stage: tap.Out}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "is sluice run up, with its admin server at "+addr) {
		t.Fatalf("err = %v", err)
	}
}
