package obs

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"strings"
)

// privatePrefixes are the admin paths that change behaviour or expose
// internals: with a token set (Protect), they need it.
var privatePrefixes = []string{"/faults", "/sink/", "/debug/", "/tap/"}

func isPrivate(path string) bool {
	for _, p := range privatePrefixes {
		if path == strings.TrimSuffix(p, "/") || strings.HasPrefix(path, p) {
			return true
		}
	}
	return false
}

// Protect makes every private endpoint (fault points, reconnects, flight
// dumps, profiles, taps) require "Authorization: Bearer <token>"; /metrics,
// /healthz, /readyz and /status stay open. hint says where the token is,
// for the refusal's message. A browser cannot send that header to another
// origin without a CORS preflight, which the admin server never grants, so
// the token also keeps cross-site requests out.
func (a *Admin) Protect(token, hint string) {
	a.token, a.tokenHint = token, hint
}

// ProtectWith is Protect with token, or, when it is empty, the token in
// tokenFile (created by LoadOrCreateToken at first start).
func (a *Admin) ProtectWith(token, tokenFile string) error {
	if token != "" {
		a.Protect(token, "admin.token (SLUICE_ADMIN_TOKEN)")
		return nil
	}
	tok, err := LoadOrCreateToken(tokenFile)
	if err != nil {
		return fmt.Errorf("admin token: %w (set admin.token_file to a usable path, or admin.token)", err)
	}
	a.Protect(tok, tokenFile+" (admin.token_file)")
	return nil
}

// guard wraps h with the admin server's checks: with checkHost, the Host
// header names the listen address or a loopback name (no DNS rebinding);
// and private endpoints carry the token.
func (a *Admin) guard(h http.Handler, checkHost bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if checkHost && !a.hostAllowed(r.Host) {
			adminRefuse(w, http.StatusMisdirectedRequest, fmt.Sprintf("Host %q is neither this server's address nor a loopback name; use http://%s", r.Host, a.Addr()))
			return
		}
		if a.token != "" && isPrivate(r.URL.Path) {
			got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(a.token)) != 1 {
				adminRefuse(w, http.StatusUnauthorized, "this endpoint needs the admin token: send Authorization: Bearer <token>, the token in "+a.tokenHint)
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}

func adminRefuse(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

// hostAllowed reports whether a request's Host header names this server:
// a loopback name or address, or the listen address's host.
func (a *Admin) hostAllowed(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if host == "localhost" {
		return true
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return true
	}
	if a.ln != nil {
		if lh, _, err := net.SplitHostPort(a.ln.Addr().String()); err == nil && strings.Trim(lh, "[]") == host {
			return true
		}
	}
	return false
}

// IsLoopbackAddr reports whether a listen address (host:port) binds only a
// loopback interface.
func IsLoopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// LoadOrCreateToken returns the token in path (the admin API's, the
// embedded NATS server's), creating the file
// (mode 0600, 32 random bytes in hex) when it does not exist. A file that
// others can read is refused: the token would not be a secret.
func LoadOrCreateToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		var raw [32]byte
		if _, err := rand.Read(raw[:]); err != nil {
			return "", fmt.Errorf("make a token: %w", err)
		}
		tok := hex.EncodeToString(raw[:])
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, fs.ErrExist) { // another process made it first
			return LoadOrCreateToken(path)
		}
		if err != nil {
			return "", fmt.Errorf("create %s: %w", path, err)
		}
		_, err = f.WriteString(tok + "\n")
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return "", fmt.Errorf("write %s: %w", path, err)
		}
		return tok, nil
	}
	if err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	if st, err := os.Stat(path); err == nil && st.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("%s is readable by others (mode %#o): chmod 600 %s", path, st.Mode().Perm(), path)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("%s is empty: delete it to have a new one made, or write a token into it", path)
	}
	return tok, nil
}

// ReadToken reads the admin token a client sends: token if set, else the
// content of path.
func ReadToken(token, path string) (string, error) {
	if token != "" {
		return token, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("admin token: %w (the admin API's private endpoints need the token that sluice run wrote there; set --admin-token-file or SLUICE_ADMIN_TOKEN)", err)
	}
	return strings.TrimSpace(string(b)), nil
}
