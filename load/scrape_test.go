package load_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/sluice-dev/sluice/load"
)

func TestReconnectScraper(t *testing.T) {
	var body atomic.Value
	body.Store("# HELP x\n")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, body.Load().(string))
	}))
	defer srv.Close()
	metrics := func(eof, write float64) string {
		return fmt.Sprintf(`# HELP sluice_sink_reconnects_total Connections replaced.
# TYPE sluice_sink_reconnects_total counter
sluice_sink_reconnects_total{reason="eof"} %g
sluice_sink_reconnects_total{reason="write_error"} %g
sluice_sink_reconnects_total_other 99
sluice_sink_write_errors_total 7
`, eof, write)
	}
	ctx := context.Background()
	s := load.NewReconnectScraper(srv.URL)
	if _, ok := s.Total(); ok {
		t.Fatal("total known before any scrape")
	}
	steps := []struct {
		body  string
		label string
		total int64
	}{
		{"# no reconnect yet\n", "", 0}, // the baseline
		{metrics(2, 0), "reconnect: eof ×2", 2},
		{metrics(2, 0), "", 2},
		{metrics(3, 1), "reconnect: eof, write_error", 4},
		{"sluice_sink_reconnects_total 1\n", "reconnect: unknown", 5},
	}
	for i, st := range steps {
		body.Store(st.body)
		if got := s.Scrape(ctx); got != st.label {
			t.Errorf("step %d: label %q, want %q", i, got, st.label)
		}
		if n, ok := s.Total(); !ok || n != st.total {
			t.Errorf("step %d: total %d, %v; want %d", i, n, ok, st.total)
		}
	}

	t.Run("absent endpoint", func(t *testing.T) {
		s := load.NewReconnectScraper("http://127.0.0.1:1/metrics")
		if s.Scrape(ctx) != "" || s.OK() {
			t.Error("an absent endpoint produced events or counted as read")
		}
		if s := load.NewReconnectScraper(""); s.Scrape(ctx) != "" || s.OK() {
			t.Error("scraping with no URL")
		}
	})
}

func TestRun_VerifyCapacity(t *testing.T) {
	for _, tc := range []struct {
		o    load.GenOptions
		want int64
	}{
		{load.GenOptions{Count: 1234, Duration: time.Hour}, 1234},
		{load.GenOptions{}, load.VerifyMaxRecords},
		{load.GenOptions{Duration: 10 * time.Second, Rate: 1000}, 10500 + 100 + 4 + 1},
		{load.GenOptions{Duration: 2 * time.Second}, 10_500_001},
		{load.GenOptions{Duration: time.Hour}, load.VerifyMaxRecords},
	} {
		if got := load.VerifyCapacity(tc.o.WithDefaults()); got != tc.want {
			t.Errorf("load.VerifyCapacity(%+v) = %d, want %d", tc.o, got, tc.want)
		}
	}
}

// TestReconnects reads the counter from a registry, as the demo does.
func TestReconnects(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := promauto.With(reg).NewCounterVec(prometheus.CounterOpts{Name: load.ReconnectsMetric, Help: "h"}, []string{"reason"})
	promauto.With(reg).NewCounter(prometheus.CounterOpts{Name: "sluice_other_total", Help: "h"}).Add(9)
	c.WithLabelValues("eof").Add(2)
	c.WithLabelValues("requested")
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := load.Reconnects(mfs)
	if len(got) != 2 || got["eof"] != 2 || got["requested"] != 0 {
		t.Fatalf("Reconnects = %v", got)
	}
}

// A credential in the URL is not repeated in the error of a failed connect.
func TestRun_ConnectErrorHidesCredentials(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	_, err = load.Run(context.Background(), load.RunOptions{URL: "nats://u:pw-SECRET@" + addr + ",nats://tok-SECRET@" + addr})
	if err == nil || strings.Contains(err.Error(), "SECRET") || !strings.Contains(err.Error(), addr) {
		t.Fatalf("Run = %v; want an error naming %s without the secrets", err, addr)
	}
}

// The URL that Run's Output carries, and so the summary, --json and the
// report, has the password in it replaced.
func TestRun_OutputHidesCredentials(t *testing.T) {
	s, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true,
		Username: "u", Password: "pw-SECRET",
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	defer func() { s.Shutdown(); s.WaitForShutdown() }()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	addr := s.Addr().String()
	nc, err := nats.Connect("nats://"+addr, nats.UserInfo("u", "pw-SECRET"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	createStream(t, js, jetstream.StreamConfig{Name: "INGEST", Subjects: []string{"ingest.>"}})
	out, err := load.Run(context.Background(), load.RunOptions{URL: "nats://u:pw-SECRET@" + addr, Gen: load.GenOptions{Count: 5}})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	out.WriteSummary(&b)
	if err := out.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	if out.URL != "nats://xxxxx@"+addr || strings.Contains(b.String(), "SECRET") || out.Generator.Published != 5 {
		t.Fatalf("Output.URL = %q; summary and JSON:\n%s", out.URL, b.String())
	}
}
