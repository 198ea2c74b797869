package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
)

// /debug/pprof is not served unless admin.pprof is on; when it is, its
// cmdline endpoint shows URL credentials redacted.
func TestService_PprofOffByDefault(t *testing.T) {
	get := func(url string) (int, string) {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, on := range []bool{false, true} {
		t.Run(fmt.Sprintf("pprof=%v", on), func(t *testing.T) {
			cfg, _ := testConfig(t)
			cfg.Admin.Listen = fmt.Sprintf("127.0.0.1:%d", freePort(t))
			cfg.Admin.Pprof = on
			old := os.Args
			os.Args = append(os.Args[:1:1], "--queue-url=nats://u:pw-SECRET@h:4222")
			defer func() { os.Args = old }()
			_, stop := startService(t, cfg)
			defer stop()
			code, body := get("http://" + cfg.Admin.Listen + "/debug/pprof/cmdline")
			switch {
			case !on && code != http.StatusNotFound:
				t.Fatalf("GET /debug/pprof/cmdline with pprof off: %d", code)
			case on && (code != http.StatusOK || strings.Contains(body, "SECRET") || !strings.Contains(body, "nats://xxxxx@h:4222")):
				t.Fatalf("GET /debug/pprof/cmdline with pprof on: %d %q", code, body)
			}
		})
	}
}
