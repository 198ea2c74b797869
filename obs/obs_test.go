package obs_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-dev/sluice/fault"
	"github.com/sluice-dev/sluice/obs"
)

func TestNewLogger(t *testing.T) {
	var buf bytes.Buffer
	l, err := obs.NewLogger(&buf, "json", "warn")
	if err != nil {
		t.Fatal(err)
	}
	l.Info("hidden")
	l.Warn("shown", "k", 1)
	if s := buf.String(); strings.Contains(s, "hidden") || !strings.Contains(s, `"msg":"shown"`) {
		t.Fatalf("log output %q", s)
	}
	if _, err := obs.NewLogger(io.Discard, "xml", "info"); err == nil || !strings.Contains(err.Error(), `log format "xml"`) {
		t.Fatalf("bad format err = %v", err)
	}
	if _, err := obs.NewLogger(io.Discard, "text", "loud"); err == nil || !strings.Contains(err.Error(), `log level "loud"`) {
		t.Fatalf("bad level err = %v", err)
	}
}

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	return rec.Code, rec.Body.String()
}

func TestAdmin_Endpoints(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_test_total", Help: "x"})
	reg.MustRegister(c)
	c.Add(3)
	a := obs.NewAdmin(reg, slog.New(slog.DiscardHandler))

	if code, body := get(t, a, "/healthz"); code != 200 || body != "ok\n" {
		t.Fatalf("/healthz = %d %q", code, body)
	}
	if code, body := get(t, a, "/metrics"); code != 200 || !strings.Contains(body, "sluice_test_total 3") {
		t.Fatalf("/metrics = %d %q", code, body)
	}
	ready := errors.New("sink not connected")
	a.AddReadyCheck("sink", func() error { return ready })
	a.AddReadyCheck("queue", func() error { return nil })
	if code, body := get(t, a, "/readyz"); code != 503 || !strings.Contains(body, `"sink":"sink not connected"`) || !strings.Contains(body, `"queue":"ok"`) {
		t.Fatalf("/readyz not ready = %d %q", code, body)
	}
	ready = nil
	if code, _ := get(t, a, "/readyz"); code != 200 {
		t.Fatalf("/readyz ready = %d", code)
	}
}

func TestAdmin_StartListensOnLoopback(t *testing.T) {
	a := obs.NewAdmin(prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	if err := a.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	resp, err := http.Get("http://" + a.Addr() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	b := obs.NewAdmin(prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	if err := b.Start(a.Addr()); err == nil || !strings.Contains(err.Error(), "admin.listen") {
		b.Close()
		t.Fatalf("second listen on %s: err = %v, want a hint about admin.listen", a.Addr(), err)
	}
}

func TestFaultCollector(t *testing.T) {
	p := fault.Register("obs.test.point", "test")
	p.Set(&fault.Action{Kind: fault.Error})
	defer p.Set(nil)
	before := p.Hits() // the registry is process-wide: -count=N runs share it
	for range 4 {
		_ = p.Hit(context.Background())
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(obs.FaultCollector{})
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var got float64 = -1
	for _, fam := range fams {
		if fam.GetName() != "sluice_fault_activations_total" || fam.GetType().String() != "COUNTER" {
			continue
		}
		for _, m := range fam.GetMetric() {
			if l := m.GetLabel(); len(l) == 1 && l[0].GetName() == "point" && l[0].GetValue() == "obs.test.point" {
				got = m.GetCounter().GetValue()
			}
		}
	}
	if want := float64(before + 4); got != want {
		t.Fatalf(`sluice_fault_activations_total{point="obs.test.point"} = %v, want %v`, got, want)
	}
}

func TestMountPprof(t *testing.T) {
	a := obs.NewAdmin(prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	obs.MountPprof(a)
	if code, body := get(t, a, "/debug/pprof/heap?debug=1"); code != 200 || !strings.Contains(body, "heap profile") {
		t.Fatalf("/debug/pprof/heap = %d %.80q", code, body)
	}
	if code, body := get(t, a, "/debug/pprof/"); code != 200 || !strings.Contains(body, "goroutine") {
		t.Fatalf("/debug/pprof/ = %d %.80q", code, body)
	}
}
