package obs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Admin is the admin HTTP server: /metrics, /healthz, /readyz, plus whatever
// other packages mount with Handle. It listens on loopback by default; the
// caller chooses the address.
type Admin struct {
	mux    *http.ServeMux
	gather prometheus.Gatherer
	log    *slog.Logger

	mu     sync.Mutex              // guards checks
	checks map[string]func() error // readiness checks by name

	srv *http.Server
	ln  net.Listener
	wg  sync.WaitGroup

	token, tokenHint string // Protect's; "" = private endpoints open
}

// NewAdmin returns an admin server serving metrics from g.
func NewAdmin(g prometheus.Gatherer, logger *slog.Logger) *Admin {
	if logger == nil {
		logger = slog.Default()
	}
	a := &Admin{mux: http.NewServeMux(), gather: g, log: logger.With(KeyComponent, "admin"), checks: map[string]func() error{}}
	a.mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	a.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = fmt.Fprintln(w, "ok")
	})
	a.mux.HandleFunc("GET /readyz", a.ready)
	return a
}

// Handle mounts h at pattern (net/http ServeMux syntax, e.g. "POST /sink/reconnect").
func (a *Admin) Handle(pattern string, h http.Handler) { a.mux.Handle(pattern, h) }

// HandleFunc mounts f at pattern.
func (a *Admin) HandleFunc(pattern string, f http.HandlerFunc) { a.mux.HandleFunc(pattern, f) }

// AddReadyCheck adds a readiness check; /readyz answers 200 only when every
// check returns nil.
func (a *Admin) AddReadyCheck(name string, check func() error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.checks[name] = check
}

func (a *Admin) ready(w http.ResponseWriter, _ *http.Request) {
	a.mu.Lock()
	names := make([]string, 0, len(a.checks))
	for n := range a.checks {
		names = append(names, n)
	}
	checks := a.checks
	a.mu.Unlock()
	sort.Strings(names)
	res := map[string]string{}
	ok := true
	for _, n := range names {
		if err := checks[n](); err != nil {
			res[n] = err.Error()
			ok = false
		} else {
			res[n] = "ok"
		}
	}
	w.Header().Set("Content-Type", "application/json")
	if !ok {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(res)
}

// ServeHTTP lets tests drive the admin API without a listener, with the
// server's token check (the Host check needs the listen address).
func (a *Admin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.guard(a.mux, false).ServeHTTP(w, r)
}

// Start listens on addr and serves in a goroutine owned by a; Close stops it.
func (a *Admin) Start(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("admin server: listen on %s: %w (set admin.listen to another address, or \"off\")", addr, err)
	}
	a.ln = ln
	a.srv = &http.Server{Handler: a.guard(a.mux, true), ReadHeaderTimeout: 5 * time.Second}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		if err := a.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("admin server stopped", KeyErr, err)
		}
	}()
	a.log.Info("admin server listening", "addr", ln.Addr().String())
	return nil
}

// Addr returns the address the server listens on, or "" before Start.
func (a *Admin) Addr() string {
	if a.ln == nil {
		return ""
	}
	return a.ln.Addr().String()
}

// Close shuts the server down, waiting up to 2s for requests in progress.
func (a *Admin) Close() error {
	if a.srv == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := a.srv.Shutdown(ctx)
	a.wg.Wait()
	return err
}

// RedactArgs returns args with the secrets a command line can carry
// replaced by xxxxx: the userinfo of URLs (user:password@, token@), in an
// argument of its own or after a flag's "=".
func RedactArgs(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = a
		name, val, isFlag := strings.Cut(a, "=")
		if !isFlag || !strings.HasPrefix(name, "-") {
			name, val = "", a
		} else {
			name += "="
		}
		if strings.Contains(val, "://") && strings.Contains(val, "@") {
			out[i] = name + RedactURL(val)
		}
	}
	return out
}

// RedactURL replaces the userinfo (user:password@ or token@) of each
// comma-separated URL in s by xxxxx, for messages a user sees.
func RedactURL(s string) string {
	parts := strings.Split(s, ",")
	for i, p := range parts {
		scheme, rest, ok := strings.Cut(p, "://")
		if !ok {
			continue
		}
		if at := strings.LastIndex(rest, "@"); at >= 0 {
			parts[i] = scheme + "://xxxxx@" + rest[at+1:]
		}
	}
	return strings.Join(parts, ",")
}

// RedactError returns err with the userinfo of the URL in any *url.Error
// in its chain replaced by xxxxx in its message (a client such as nats.go
// returns url.Parse's error for a URL it cannot parse, and that error
// quotes the whole URL, password included). errors.Is and errors.As still
// see err. Without such a URL it returns err itself.
func RedactError(err error) error {
	var ue *url.Error
	if !errors.As(err, &ue) || RedactURL(ue.URL) == ue.URL {
		return err
	}
	return redactedError{msg: strings.ReplaceAll(err.Error(), ue.URL, RedactURL(ue.URL)), err: err}
}

// redactedError is an error whose message has a secret removed.
type redactedError struct {
	msg string
	err error // the original, for errors.Is and errors.As
}

func (e redactedError) Error() string { return e.msg }
func (e redactedError) Unwrap() error { return e.err }

// MountPprof serves the Go runtime profiles (net/http/pprof) under
// /debug/pprof/ on the admin server, e.g.
// go tool pprof http://127.0.0.1:9464/debug/pprof/heap. The admin server
// listens on loopback unless configured otherwise; profiles reveal code
// paths and timing, so keep it there.
// It is mounted only with admin.pprof: true. Its cmdline endpoint shows
// the command line with RedactArgs applied.
func MountPprof(a *Admin) {
	a.HandleFunc("GET /debug/pprof/", pprof.Index)
	a.HandleFunc("GET /debug/pprof/cmdline", func(w http.ResponseWriter, _ *http.Request) {
		// pprof.Cmdline would show a password or token given in a flag.
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprint(w, strings.Join(RedactArgs(os.Args), "\x00"))
	})
	a.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	a.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	a.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
}
