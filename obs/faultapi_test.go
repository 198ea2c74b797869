package obs_test

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/internal/testkit"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-dev/sluice/fault"
	"github.com/sluice-dev/sluice/obs"
)

func do(t *testing.T, h http.Handler, method, path, body string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.RemoteAddr = "192.0.2.7:4242"
	h.ServeHTTP(rec, req)
	return rec.Code, rec.Body.String()
}

func decode[T any](t *testing.T, body string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("bad JSON %q: %v", body, err)
	}
	return v
}

func TestFaultAPI(t *testing.T) {
	a1 := fault.Register("obs.api.alpha", "first test point")
	a2 := fault.Register("obs.api.beta", "second test point")
	t.Cleanup(func() { a1.Set(nil); a2.Set(nil) })
	a1.Set(nil)
	a2.Set(nil)

	logs := &testkit.SyncBuffer{}
	a := obs.NewAdmin(prometheus.NewRegistry(), slog.New(slog.NewTextHandler(logs, nil)))
	obs.MountFaultAPI(a)

	t.Run("list", func(t *testing.T) {
		code, body := do(t, a, "GET", "/faults", "")
		if code != 200 {
			t.Fatalf("GET /faults = %d %s", code, body)
		}
		list := decode[[]obs.FaultState](t, body)
		var found int
		for i, s := range list {
			if i > 0 && list[i-1].Name >= s.Name {
				t.Fatalf("list not sorted by name: %q before %q", list[i-1].Name, s.Name)
			}
			if s.Name == "obs.api.alpha" {
				found++
				if s.Doc != "first test point" || s.Action != "off" {
					t.Fatalf("alpha = %+v", s)
				}
			}
		}
		if found != 1 {
			t.Fatalf("alpha listed %d times in %s", found, body)
		}
	})

	t.Run("put", func(t *testing.T) {
		code, body := do(t, a, "PUT", "/faults/obs.api.alpha", "delay(5ms)\n")
		if code != 200 {
			t.Fatalf("PUT = %d %s", code, body)
		}
		if s := decode[obs.FaultState](t, body); s.Name != "obs.api.alpha" || s.Action != "delay(5ms)" {
			t.Fatalf("PUT answer %+v", s)
		}
		if act := a1.Action(); act == nil || act.Kind != fault.Delay || act.Min != 5*time.Millisecond {
			t.Fatalf("point action after PUT = %v", act)
		}
		log := logs.String()
		for _, want := range []string{"fault point changed", "point=obs.api.alpha", "action=delay(5ms)", "was=off", "remote=192.0.2.7:4242"} {
			if !strings.Contains(log, want) {
				t.Fatalf("log lacks %q:\n%s", want, log)
			}
		}
		// JSON body, with a rate limit and a count.
		code, body = do(t, a, "PUT", "/faults/obs.api.beta", `{"action": "error(1)@10/s*3"}`)
		if s := decode[obs.FaultState](t, body); code != 200 || s.Action != "error(1)@10/s*3" || a2.Action().String() != "error(1)@10/s*3" {
			t.Fatalf("PUT JSON = %d %s", code, body)
		}
		// GET one point.
		code, body = do(t, a, "GET", "/faults/obs.api.beta", "")
		if s := decode[obs.FaultState](t, body); code != 200 || s.Action != "error(1)@10/s*3" {
			t.Fatalf("GET one = %d %s", code, body)
		}
		// PUT off switches it off.
		code, body = do(t, a, "PUT", "/faults/obs.api.alpha", "off")
		if s := decode[obs.FaultState](t, body); code != 200 || s.Action != "off" || a1.Action() != nil {
			t.Fatalf("PUT off = %d %s", code, body)
		}
	})

	t.Run("hits", func(t *testing.T) {
		a1.Set(&fault.Action{Kind: fault.Error})
		before := a1.Hits()
		for range 3 {
			_ = a1.Hit(t.Context())
		}
		_, body := do(t, a, "GET", "/faults/obs.api.alpha", "")
		if s := decode[obs.FaultState](t, body); s.Hits != before+3 {
			t.Fatalf("hits = %d, want %d", s.Hits, before+3)
		}
		a1.Set(nil)
	})

	t.Run("errors", func(t *testing.T) {
		code, body := do(t, a, "PUT", "/faults/no.such.point", "delay(1ms)")
		if code != 404 || !strings.Contains(body, `unknown fault point \"no.such.point\"`) || !strings.Contains(body, "obs.api.alpha") || !strings.Contains(body, "obs.api.beta") {
			t.Fatalf("unknown point = %d %s", code, body)
		}
		if code, body := do(t, a, "DELETE", "/faults/no.such.point", ""); code != 404 {
			t.Fatalf("DELETE unknown = %d %s", code, body)
		}
		a1.Set(&fault.Action{Kind: fault.Close, Prob: 1})
		code, body = do(t, a, "PUT", "/faults/obs.api.alpha", "delay(fast)")
		if code != 400 || !strings.Contains(body, `bad duration \"fast\"`) {
			t.Fatalf("bad action = %d %s", code, body)
		}
		if a1.Action().String() != "close(1)" {
			t.Fatalf("a bad PUT changed the point to %v", a1.Action())
		}
		if code, body := do(t, a, "PUT", "/faults/obs.api.alpha", "  "); code != 400 || !strings.Contains(body, "empty action") {
			t.Fatalf("empty body = %d %s", code, body)
		}
		if code, body := do(t, a, "PUT", "/faults/obs.api.alpha", `{"action":`); code != 400 || !strings.Contains(body, "bad JSON") {
			t.Fatalf("bad JSON = %d %s", code, body)
		}
		if code, body := do(t, a, "PUT", "/faults/obs.api.alpha", strings.Repeat("x", 4096)); code != 413 {
			t.Fatalf("huge body = %d %s", code, body)
		}
		if code, _ := do(t, a, "POST", "/faults/obs.api.alpha", "delay(1ms)"); code != 405 {
			t.Fatalf("POST = %d, want 405", code)
		}
	})

	t.Run("delete", func(t *testing.T) {
		a1.Set(&fault.Action{Kind: fault.Delay, Min: time.Millisecond})
		code, body := do(t, a, "DELETE", "/faults/obs.api.alpha", "")
		if s := decode[obs.FaultState](t, body); code != 200 || s.Action != "off" || a1.Action() != nil {
			t.Fatalf("DELETE one = %d %s", code, body)
		}
		a1.Set(&fault.Action{Kind: fault.Delay, Min: time.Millisecond})
		a2.Set(&fault.Action{Kind: fault.Error, Prob: 1})
		code, body = do(t, a, "DELETE", "/faults", "")
		if code != 200 || a1.Action() != nil || a2.Action() != nil {
			t.Fatalf("DELETE all = %d %s; alpha %v beta %v", code, body, a1.Action(), a2.Action())
		}
		for _, s := range decode[[]obs.FaultState](t, body) {
			if s.Action != "off" {
				t.Fatalf("after DELETE /faults: %+v", s)
			}
		}
		if !strings.Contains(logs.String(), "point=obs.api.beta action=off was=error(1)") {
			t.Fatalf("DELETE /faults not logged per point:\n%s", logs.String())
		}
	})
}

func TestFlightAPI(t *testing.T) {
	t.Run("disabled", func(t *testing.T) {
		a := obs.NewAdmin(prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
		obs.MountFlightAPI(a, nil)
		code, body := do(t, a, "POST", "/debug/flight/dump", "")
		if code != 503 || !strings.Contains(body, "flight recorder is not enabled") {
			t.Fatalf("nil recorder = %d %s", code, body)
		}
	})
	t.Run("enabled", func(t *testing.T) {
		e := startRecorder(t, obs.FlightOptions{MinInterval: time.Hour})
		a := obs.NewAdmin(prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
		obs.MountFlightAPI(a, e.f)
		if code, _ := do(t, a, "GET", "/debug/flight/dump", ""); code != 405 {
			t.Fatalf("GET = %d, want 405", code)
		}
		for range 2 { // an operator's dumps ignore the rate limit
			code, body := do(t, a, "POST", "/debug/flight/dump", "")
			if code != 200 {
				t.Fatalf("POST = %d %s", code, body)
			}
			path := decode[map[string]string](t, body)["path"]
			if !strings.HasPrefix(path, e.dir) || !strings.Contains(path, "-admin") {
				t.Fatalf("path %q", path)
			}
			if _, err := os.Stat(path); err != nil {
				t.Fatal(err)
			}
			traceEvents(t, path) // parses to the end
		}
		e.f.Close()
		code, body := do(t, a, "POST", "/debug/flight/dump", "")
		if code != 503 || !strings.Contains(body, "shut down") {
			t.Fatalf("after Close = %d %s", code, body)
		}
	})
	t.Run("failure", func(t *testing.T) {
		e := startRecorder(t, obs.FlightOptions{})
		a := obs.NewAdmin(prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
		obs.MountFlightAPI(a, e.f)
		if err := os.RemoveAll(e.dir); err != nil { // the dump directory vanished
			t.Fatal(err)
		}
		code, body := do(t, a, "POST", "/debug/flight/dump", "")
		if code != 500 || !strings.Contains(body, "dump failed") {
			t.Fatalf("dump into a missing dir = %d %s", code, body)
		}
		if n := e.metric(t, "sluice_flight_dump_failures_total"); n != 1 {
			t.Fatalf("failures = %v, want 1", n)
		}
		if _, err := e.f.DumpNow("x"); err == nil || errors.Is(err, obs.ErrFlightClosed) {
			t.Fatalf("DumpNow into a missing dir = %v", err)
		}
	})
}
