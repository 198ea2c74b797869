package obs_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-dev/sluice/obs"
)

func TestRedactArgs(t *testing.T) {
	in := []string{"sluice", "run", "--queue-url=nats://u:pw-SECRET@h1:4222,nats://tok-SECRET@h2:4222", "--url", "nats://tok-SECRET@h3", "--socket", "/run/s.sock", "nats://h4:4222"}
	got := obs.RedactArgs(in)
	want := []string{"sluice", "run", "--queue-url=nats://xxxxx@h1:4222,nats://xxxxx@h2:4222", "--url", "nats://xxxxx@h3", "--socket", "/run/s.sock", "nats://h4:4222"}
	if !slices.Equal(got, want) {
		t.Fatalf("RedactArgs =\n%q\nwant\n%q", got, want)
	}
	if strings.Contains(strings.Join(got, " "), "SECRET") {
		t.Fatal("a secret survived")
	}
}

// badSecretURL is a variable, not a constant, so that vet tools do not flag
// the deliberately unparsable URL.
var badSecretURL = "nats://u:pw-SECRET@[::1"

// RedactError hides the userinfo of the URL a *url.Error quotes, keeps the
// rest of the message and the chain, and leaves other errors alone.
func TestRedactError(t *testing.T) {
	_, perr := url.Parse(badSecretURL)
	err := fmt.Errorf("connect: %w", perr)
	got := obs.RedactError(err)
	if msg := got.Error(); strings.Contains(msg, "SECRET") || !strings.Contains(msg, `connect: parse "nats://xxxxx@[::1": missing ']' in host`) {
		t.Errorf("RedactError(%q) = %q", err, msg)
	}
	var ue *url.Error
	if !errors.Is(got, perr) || !errors.As(got, &ue) {
		t.Error("RedactError lost the error chain")
	}
	for _, e := range []error{nil, io.EOF, &url.Error{Op: "Get", URL: "http://h/metrics", Err: io.EOF}} {
		if got := obs.RedactError(e); got != e {
			t.Errorf("RedactError(%v) = %v, want it unchanged", e, got)
		}
	}
}

// The admin server refuses a Host that is neither a loopback name nor its
// address (DNS rebinding), and private endpoints without the token (which
// also keeps cross-site browser requests out); open endpoints need none.
func TestAdmin_Guard(t *testing.T) {
	a := obs.NewAdmin(prometheus.NewRegistry(), nil)
	a.HandleFunc("POST /sink/reconnect", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusAccepted) })
	a.Protect("s3cret-token", "the test's token")
	if err := a.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	do := func(method, path, host, token string) int {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+a.Addr()+path, nil)
		if host != "" {
			req.Host = host
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tc := range []struct {
		method, path, host, token string
		want                      int
	}{
		{"GET", "/metrics", "", "", http.StatusOK},
		{"GET", "/healthz", "localhost:9464", "", http.StatusOK},
		{"GET", "/metrics", "evil.example", "", http.StatusMisdirectedRequest},
		{"POST", "/sink/reconnect", "evil.example", "s3cret-token", http.StatusMisdirectedRequest},
		{"POST", "/sink/reconnect", "", "", http.StatusUnauthorized},
		{"POST", "/sink/reconnect", "", "wrong", http.StatusUnauthorized},
		{"POST", "/sink/reconnect", "", "s3cret-token", http.StatusAccepted},
		{"GET", "/debug/pprof/", "", "", http.StatusUnauthorized},
		{"GET", "/faults", "", "", http.StatusUnauthorized},
	} {
		if got := do(tc.method, tc.path, tc.host, tc.token); got != tc.want {
			t.Errorf("%s %s (Host %q, token %q) = %d, want %d", tc.method, tc.path, tc.host, tc.token, got, tc.want)
		}
	}
}

// LoadOrCreateToken makes a 0600 token file once and reads it back; it
// refuses a token file others can read.
func TestLoadOrCreateToken(t *testing.T) {
	path := filepath.Join(t.TempDir(), "admin.token")
	tok, err := obs.LoadOrCreateToken(path)
	if err != nil || len(tok) != 64 {
		t.Fatalf("LoadOrCreateToken = %q, %v", tok, err)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode %#o, want 0600", st.Mode().Perm())
	}
	if again, err := obs.LoadOrCreateToken(path); err != nil || again != tok {
		t.Fatalf("second LoadOrCreateToken = %q, %v; want the same token", again, err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := obs.LoadOrCreateToken(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("a world-readable token file: %v", err)
	}
}
