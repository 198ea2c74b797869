package main

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/sluice-dev/sluice/internal/testkit"
)

// secretAuth is a NATS server authenticator that accepts every way sluice
// can authenticate at once: user/password pairs, tokens, nkeys and creds
// files (the server sends a nonce, AlwaysEnableNonce, and the key's
// signature of it is verified here).
type secretAuth struct {
	mu     sync.Mutex        // guards the maps: the test adds while the server checks
	users  map[string]string // user → password
	tokens map[string]bool
	nkeys  map[string]bool // public keys of nkey files
	creds  map[string]bool // public keys of the users of creds files
}

func (a *secretAuth) Check(c server.ClientAuthentication) bool {
	o := c.GetOpts()
	a.mu.Lock()
	defer a.mu.Unlock()
	// signed says whether key is known and signed the nonce.
	signed := func(key string) bool {
		pub, err := nkeys.FromPublicKey(key)
		if err != nil || !a.nkeys[key] && !a.creds[key] {
			return false
		}
		sig, err := base64.RawURLEncoding.DecodeString(o.Sig)
		return err == nil && pub.Verify(c.GetNonce(), sig) == nil
	}
	switch {
	case o.Nkey != "":
		return signed(o.Nkey)
	case o.Sig != "":
		// A creds file: outside operator mode the server drops the user
		// JWT from the CONNECT, so try the creds files' keys.
		for key := range a.creds {
			if signed(key) {
				return true
			}
		}
		return false
	case o.Username != "":
		pw, ok := a.users[o.Username]
		return ok && pw == o.Password
	case o.Token != "":
		return a.tokens[o.Token]
	}
	return false
}

// secretSet is every secret planted in a test, by where it was planted.
type secretSet struct {
	t     *testing.T
	where map[string]string // secret → where it was planted
}

// add makes a new unique secret planted in where and returns it.
func (s *secretSet) add(where string) string {
	b := make([]byte, 10)
	_, _ = rand.Read(b)
	v := "s3cr3t" + hex.EncodeToString(b)
	s.where[v] = where
	return v
}

// addValue records v (a secret sluice made, or an nkey seed) as planted in
// where.
func (s *secretSet) addValue(where, v string) { s.where[v] = where }

// check fails the test for every secret that output, named what, holds.
func (s *secretSet) check(what string, output []byte) {
	s.t.Helper()
	for v, where := range s.where {
		if i := bytes.Index(output, []byte(v)); i >= 0 {
			lo, hi := max(0, i-160), min(len(output), i+len(v)+80)
			excerpt := strings.ReplaceAll(strings.ToValidUTF8(string(output[lo:hi]), "?"), "\x00", " ")
			s.t.Errorf("the secret planted in %s shows in %s:\n…%s…", where, what, excerpt)
		}
	}
}

// secretRun is one sluice run whose credentials come from one place.
type secretRun struct {
	name    string
	dir     string
	config  string   // YAML written to dir/sluice.yaml
	env     []string // extra environment
	args    []string // extra run flags
	token   string   // admin token, or "" for the one in dir/admin.token
	admin   string   // admin address
	proc    *proc
	outputs map[string][]byte
}

// TestSecrets_NeverLeave plants a unique secret in every place a user can
// give one (queue.url's password and token, the --queue-url flag in both
// forms, SLUICE_* variables, the config file's queue.password, queue.token
// and admin.token, an admin token file, an nkey seed file and a creds
// file), runs eleven sluices at once against a NATS server that accepts
// them all, forces a NATS reconnect and a sink reconnect, and then greps
// everything sluice produced for them: the logs at debug level in text and
// JSON, /metrics, /healthz, /readyz, /status, /faults, every /debug/
// endpoint (admin.pprof on), sluice status, sluice check --print,
// flight-recorder dumps, sluice load's output, and the errors of sluice
// run, check and load given credentials the server refuses, a closed port,
// an unparsable URL, bad credential files or a bad config.
func TestSecrets_NeverLeave(t *testing.T) {
	root := testkit.ShortDir(t)
	sec := &secretSet{t: t, where: map[string]string{}}
	auth := &secretAuth{users: map[string]string{"pub": "not-a-secret"}, tokens: map[string]bool{}, nkeys: map[string]bool{}, creds: map[string]bool{}}
	user := func(name, where string) string {
		pw := sec.add(where)
		auth.mu.Lock()
		auth.users[name] = pw
		auth.mu.Unlock()
		return pw
	}
	token := func(where string) string {
		tok := sec.add(where)
		auth.mu.Lock()
		auth.tokens[tok] = true
		auth.mu.Unlock()
		return tok
	}

	port := freePort(t)
	srv, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: filepath.Join(root, "nats"),
		CustomClientAuthentication: auth, AlwaysEnableNonce: true, NoSigs: true, NoLog: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS server not ready")
	}
	host := fmt.Sprintf("127.0.0.1:%d", port)

	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := kp.Seed()
	pub, _ := kp.PublicKey()
	auth.mu.Lock()
	auth.nkeys[pub] = true
	auth.mu.Unlock()
	sec.addValue("queue.nkey_file (the seed)", string(seed))
	// A creds file: a user JWT signed by an account, and the user's seed.
	ckp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	cseed, _ := ckp.Seed()
	cpub, _ := ckp.PublicKey()
	akp, err := nkeys.CreateAccount()
	if err != nil {
		t.Fatal(err)
	}
	ujwt, err := jwt.NewUserClaims(cpub).Encode(akp)
	if err != nil {
		t.Fatal(err)
	}
	creds, err := jwt.FormatUserConfig(ujwt, cseed)
	if err != nil {
		t.Fatal(err)
	}
	auth.mu.Lock()
	auth.creds[cpub] = true
	auth.mu.Unlock()
	sec.addValue("queue.creds_file (the seed)", string(cseed))
	sec.addValue("queue.creds_file (the user JWT)", ujwt)

	var runs []*secretRun
	newRun := func(name, queueYAML string) *secretRun {
		r := &secretRun{name: name, dir: filepath.Join(root, name), admin: fmt.Sprintf("127.0.0.1:%d", freePort(t)), outputs: map[string][]byte{}}
		if err := os.MkdirAll(r.dir, 0o755); err != nil {
			t.Fatal(err)
		}
		i := len(runs) + 1
		format := "text"
		if i%2 == 0 {
			format = "json"
		}
		r.config = fmt.Sprintf(`queue:
  stream: "R%[1]d"
  subjects: ["r%[1]d.>"]
  dead_letter_stream: "DLQ%[1]d"
  dead_letter_subject: "dlq.r%[1]d"
%[2]spipeline:
  workers: 1
  fetch_wait: 50ms
  shutdown_timeout: 2s
sink:
  socket: %[3]q
  backoff_min: 5ms
  backoff_max: 100ms
admin:
  listen: %[4]q
  pprof: true
  token_file: %[5]q
flight:
  enabled: true
  dir: %[6]q
log:
  level: debug
  format: %[7]s
`, i, queueYAML, filepath.Join(r.dir, "s.sock"), r.admin, filepath.Join(r.dir, "admin.token"), filepath.Join(r.dir, "traces"), format)
		runs = append(runs, r)
		return r
	}

	// queue.url with user:password@ in the config file, and admin.token.
	r := newRun("url-password", fmt.Sprintf("  url: \"nats://u1:%s@%s\"\n", user("u1", "queue.url's password (config file)"), host))
	r.token = sec.add("admin.token (config file)")
	r.config = strings.Replace(r.config, "  pprof: true\n", "  pprof: true\n  token: \""+r.token+"\"\n", 1)
	// queue.url with token@ in the config file; an admin token file the
	// user wrote.
	r = newRun("url-token", fmt.Sprintf("  url: \"nats://%s@%s\"\n", token("queue.url's token (config file)"), host))
	r.token = sec.add("admin.token_file")
	if err := os.WriteFile(filepath.Join(r.dir, "admin.token"), []byte(r.token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// --queue-url with a password, as two arguments; SLUICE_ADMIN_TOKEN.
	r = newRun("flag-password", "")
	r.args = []string{"--queue-url", fmt.Sprintf("nats://u3:%s@%s", user("u3", "--queue-url's password"), host)}
	r.token = sec.add("SLUICE_ADMIN_TOKEN")
	r.env = []string{"SLUICE_ADMIN_TOKEN=" + r.token}
	// --queue-url=nats://TOKEN@host.
	r = newRun("flag-token", "")
	r.args = []string{fmt.Sprintf("--queue-url=nats://%s@%s", token("--queue-url=...'s token"), host)}
	// SLUICE_QUEUE_USER and SLUICE_QUEUE_PASSWORD.
	r = newRun("env-password", "")
	r.env = []string{"SLUICE_QUEUE_URL=nats://" + host, "SLUICE_QUEUE_USER=u5", "SLUICE_QUEUE_PASSWORD=" + user("u5", "SLUICE_QUEUE_PASSWORD")}
	// SLUICE_QUEUE_TOKEN.
	r = newRun("env-token", "")
	r.env = []string{"SLUICE_QUEUE_URL=nats://" + host, "SLUICE_QUEUE_TOKEN=" + token("SLUICE_QUEUE_TOKEN")}
	// SLUICE_QUEUE_URL with user:password@.
	r = newRun("env-url", "")
	r.env = []string{fmt.Sprintf("SLUICE_QUEUE_URL=nats://u7:%s@%s", user("u7", "SLUICE_QUEUE_URL's password"), host)}
	// queue.user and queue.password in the config file.
	newRun("config-password", fmt.Sprintf("  url: \"nats://%s\"\n  user: \"u8\"\n  password: %q\n", host, user("u8", "queue.password (config file)")))
	// queue.token in the config file.
	newRun("config-token", fmt.Sprintf("  url: \"nats://%s\"\n  token: %q\n", host, token("queue.token (config file)")))
	// queue.nkey_file.
	r = newRun("nkey-file", "")
	nkeyFile := filepath.Join(r.dir, "user.nk")
	if err := os.WriteFile(nkeyFile, append(seed, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	r.config = strings.Replace(r.config, "pipeline:\n", fmt.Sprintf("  url: \"nats://%s\"\n  nkey_file: %q\npipeline:\n", host, nkeyFile), 1)
	// queue.creds_file.
	r = newRun("creds-file", "")
	credsFile := filepath.Join(r.dir, "user.creds")
	if err := os.WriteFile(credsFile, creds, 0o600); err != nil {
		t.Fatal(err)
	}
	r.config = strings.Replace(r.config, "pipeline:\n", fmt.Sprintf("  url: \"nats://%s\"\n  creds_file: %q\npipeline:\n", host, credsFile), 1)

	for _, r := range runs {
		if err := os.WriteFile(filepath.Join(r.dir, "sluice.yaml"), []byte(r.config), 0o600); err != nil {
			t.Fatal(err)
		}
		startDrain(t, filepath.Join(r.dir, "s.sock"), filepath.Join(r.dir, "out"))
		r.proc = newProc(t, r.dir, "run", r.env, append([]string{"run", "--config", filepath.Join(r.dir, "sluice.yaml")}, r.args...)...)
		r.proc.start()
		t.Cleanup(r.proc.terminate)
	}
	logOf := func(r *secretRun) []byte {
		b, _ := os.ReadFile(r.proc.log)
		return b
	}
	waitLogs := func(what string) {
		t.Helper()
		waitFor(t, 30*time.Second, "every sluice to log "+what, func() error {
			for _, r := range runs {
				if !bytes.Contains(logOf(r), []byte(what)) {
					select {
					case <-r.proc.done:
						t.Fatalf("sluice %s exited:\n%s", r.name, logOf(r))
					default:
					}
					return fmt.Errorf("%s has not yet", r.name)
				}
			}
			return nil
		})
	}
	waitLogs("connected to NATS")
	waitFor(t, 30*time.Second, "every sluice to be ready", func() error {
		for _, r := range runs {
			resp, err := http.Get("http://" + r.admin + "/readyz")
			if err != nil {
				return fmt.Errorf("%s: %v", r.name, err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("%s: GET /readyz: %s", r.name, resp.Status)
			}
		}
		return nil
	})

	// Records through every run, one of them invalid (a dead letter).
	nc, err := nats.Connect("nats://"+host, nats.UserInfo("pub", "not-a-secret"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	for i := range runs {
		for n := range 5 {
			if err := nc.Publish(fmt.Sprintf("r%d.test", i+1), fmt.Appendf(nil, `{"n":%d}`, n)); err != nil {
				t.Fatal(err)
			}
		}
		if err := nc.Publish(fmt.Sprintf("r%d.test", i+1), []byte("{not json")); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	// A NATS reconnect: the server drops every sluice connection.
	connz, err := srv.Connz(&server.ConnzOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range connz.Conns {
		if c.Name == "sluice" {
			if err := srv.DisconnectClientByID(c.Cid); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitLogs("reconnected to NATS")

	get := func(r *secretRun, method, path string) {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+r.admin+path, nil)
		req.Header.Set("Authorization", "Bearer "+r.token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Errorf("%s %s of %s: %v", method, path, r.name, err)
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusNotFound {
			t.Errorf("%s %s of %s: %s", method, path, r.name, resp.Status)
		}
		r.outputs[method+" "+path] = b
	}
	for i, r := range runs {
		if r.token == "" {
			b, err := os.ReadFile(filepath.Join(r.dir, "admin.token"))
			if err != nil {
				t.Fatalf("%v; log of sluice %s:\n%s", err, r.name, logOf(r))
			}
			r.token = strings.TrimSpace(string(b))
			sec.addValue("the admin token sluice "+r.name+" generated", r.token)
		}
		get(r, http.MethodPost, "/sink/reconnect")
		get(r, http.MethodPost, "/debug/flight/dump")
		for _, p := range []string{"/metrics", "/healthz", "/readyz", "/status", "/faults",
			"/debug/pprof/", "/debug/pprof/cmdline", "/debug/pprof/symbol", "/debug/pprof/goroutine?debug=2",
			"/debug/pprof/heap?debug=1", "/debug/pprof/allocs?debug=1", "/debug/pprof/threadcreate?debug=1",
			"/debug/pprof/block?debug=1", "/debug/pprof/mutex?debug=1"} {
			get(r, http.MethodGet, p)
		}
		if i == 0 { // the slow ones once
			get(r, http.MethodGet, "/debug/pprof/profile?seconds=1")
			get(r, http.MethodGet, "/debug/pprof/trace?seconds=1")
		}
		for _, args := range [][]string{{"status", "--admin", r.admin}, {"status", "--admin", r.admin, "--json"}} {
			stdout, stderr, err := runCLI(args...)
			if err != nil {
				t.Errorf("sluice %s against %s: %v", strings.Join(args, " "), r.name, err)
			}
			r.outputs["sluice "+strings.Join(args, " ")] = []byte(stdout + stderr + fmt.Sprint(err))
		}
		out, code := runSluice(t, r.dir, r.env, "check", "--print", "--config", filepath.Join(r.dir, "sluice.yaml"))
		if code != 0 {
			t.Errorf("sluice check --print of %s exited %d:\n%s", r.name, code, out)
		}
		r.outputs["sluice check --print"] = out
	}
	// Commands that fail: the errors they print must not show the
	// credentials either.
	failures := map[string][]byte{}
	fail := func(what, want string, env []string, args ...string) {
		t.Helper()
		out, code := runSluice(t, root, env, args...)
		if code == 0 || !bytes.Contains(out, []byte(want)) {
			t.Errorf("%s exited %d, want a failure saying %q:\n%s", what, code, want, out)
		}
		failures[what] = out
	}
	closed := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	bad := func(where string) string { return sec.add(where) } // refused by the server
	// sluice load through the server, with a password in --url, and loads
	// that fail.
	out, code := runSluice(t, root, nil, "load", "--url", fmt.Sprintf("nats://uload:%s@%s", user("uload", "sluice load --url's password"), host),
		"--subject", "r1.load", "--count", "20", "--metrics-url", "")
	if code != 0 {
		t.Errorf("sluice load exited %d:\n%s", code, out)
	}
	failures["sluice load"] = out
	fail("sluice load refused a password", "Authorization Violation", nil, "load", "--url", fmt.Sprintf("nats://u1:%s@%s", bad("a wrong password in sluice load --url"), host), "--count", "1", "--metrics-url", "")
	fail("sluice load refused a token", "Authorization Violation", nil, "load", "--url", fmt.Sprintf("nats://%s@%s", bad("a wrong token in sluice load --url"), host), "--count", "1", "--metrics-url", "")
	fail("sluice load to a closed port", "no servers available", nil, "load", "--url", fmt.Sprintf("nats://u1:%s@%s,nats://%s@%s", bad("sluice load --url's password (closed port)"), closed, bad("sluice load --url's token (closed port)"), closed), "--count", "1", "--metrics-url", "")
	// sluice run refused by the server, or with nothing listening.
	runEnv := func(extra ...string) []string {
		return append([]string{"SLUICE_QUEUE_DATA_DIR=" + filepath.Join(root, "nodata"), "SLUICE_ADMIN_LISTEN=off", "SLUICE_LOG_LEVEL=debug"}, extra...)
	}
	fail("sluice run refused a password", "Authorization Violation", runEnv(), "run", "--queue-url", fmt.Sprintf("nats://u1:%s@%s", bad("a wrong password in --queue-url"), host))
	fail("sluice run refused a token", "Authorization Violation", runEnv("SLUICE_LOG_FORMAT=json"), "run", "--queue-url=nats://"+bad("a wrong token in --queue-url")+"@"+host)
	fail("sluice run refused SLUICE_QUEUE_PASSWORD", "Authorization Violation", runEnv("SLUICE_QUEUE_URL=nats://"+host, "SLUICE_QUEUE_USER=u1", "SLUICE_QUEUE_PASSWORD="+bad("a wrong SLUICE_QUEUE_PASSWORD")), "run")
	fail("sluice run refused SLUICE_QUEUE_TOKEN", "Authorization Violation", runEnv("SLUICE_QUEUE_URL=nats://"+host, "SLUICE_QUEUE_TOKEN="+bad("a wrong SLUICE_QUEUE_TOKEN")), "run")
	fail("sluice run to a closed port", "no servers available", runEnv(), "run", "--queue-url", fmt.Sprintf("nats://u1:%s@%s", bad("--queue-url's password (closed port)"), closed))
	fail("sluice run with an unparsable URL", "missing ']' in host", runEnv(), "run", "--queue-url", fmt.Sprintf("nats://u1:%s@[::1", bad("--queue-url's password (unparsable URL)")))
	// Credential files that hold no valid credentials.
	garbage := filepath.Join(root, "garbage")
	if err := os.WriteFile(garbage, []byte(bad("a credentials file that is not one")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fail("sluice run with a bad nkey_file", "queue.nkey_file", runEnv("SLUICE_QUEUE_URL=nats://"+host, "SLUICE_QUEUE_NKEY_FILE="+garbage), "run")
	fail("sluice run with a bad creds_file", "connect to NATS", runEnv("SLUICE_QUEUE_URL=nats://"+host, "SLUICE_QUEUE_CREDS_FILE="+garbage), "run")
	// sluice check of bad configs: a field out of range, and YAML that
	// does not parse, next to the secrets.
	badCfg := filepath.Join(root, "bad.yaml")
	if err := os.WriteFile(badCfg, fmt.Appendf(nil, "queue:\n  url: \"nats://u:%s@%s\"\n  password: %q\n  token: %q\npipeline:\n  workers: -3\nadmin:\n  token: %q\n",
		bad("queue.url's password (bad config)"), host, bad("queue.password (bad config)"), bad("queue.token (bad config)"), bad("admin.token (bad config)")), 0o600); err != nil {
		t.Fatal(err)
	}
	fail("sluice check of a config with a bad field", "pipeline.workers", nil, "check", "--print", "--config", badCfg)
	fail("sluice run of a config with a bad field", "pipeline.workers", nil, "run", "--config", badCfg)
	unparsable := filepath.Join(root, "unparsable.yaml")
	if err := os.WriteFile(unparsable, fmt.Appendf(nil, "queue:\n  url: \"nats://u:%s@%s\"\n  password: %q\n   token: [%q\n",
		bad("queue.url's password (unparsable config)"), host, bad("queue.password (unparsable config)"), bad("queue.token (unparsable config)")), 0o600); err != nil {
		t.Fatal(err)
	}
	fail("sluice check of a config that does not parse", "unparsable.yaml:4", nil, "check", "--config", unparsable)
	fail("sluice check with a bad SLUICE_ variable", "SLUICE_PIPELINE_WORKERS", []string{"SLUICE_QUEUE_URL=nats://u:" + bad("SLUICE_QUEUE_URL's password (bad environment)") + "@" + host, "SLUICE_PIPELINE_WORKERS=many"}, "check", "--print")

	// Stop every run (a graceful shutdown logs too), then read what it
	// logged and dumped.
	for _, r := range runs {
		r.proc.stop()
		r.outputs["the log of sluice run"] = logOf(r)
		dumps, _ := filepath.Glob(filepath.Join(r.dir, "traces", "*"))
		if len(dumps) == 0 {
			t.Errorf("sluice %s wrote no flight-recorder dump", r.name)
		}
		for _, d := range dumps {
			b, err := os.ReadFile(d)
			if err != nil {
				t.Fatal(err)
			}
			r.outputs["flight dump "+filepath.Base(d)] = b
		}
	}
	// What the outputs must show, so that a secret's absence means it was
	// redacted rather than that nothing was printed.
	for _, r := range runs {
		wants := map[string]string{
			"the log of sluice run":            "reconnected to NATS",
			"GET /debug/pprof/cmdline":         "--config",
			"GET /metrics":                     "sluice_pipeline_records_out_total",
			"sluice status --admin " + r.admin: "connected",
		}
		given := r.config + strings.Join(r.env, "\n")
		if strings.Contains(given, "  token: ") || strings.Contains(given, "@") || strings.Contains(given, "password: ") ||
			strings.Contains(given, "_TOKEN=") || strings.Contains(given, "_PASSWORD=") {
			wants["sluice check --print"] = "REDACTED"
		}
		if len(r.args) > 0 {
			wants["GET /debug/pprof/cmdline"] = "xxxxx@" + host
		}
		for what, want := range wants {
			if !bytes.Contains(r.outputs[what], []byte(want)) {
				t.Errorf("%s (run %s) lacks %q:\n%s", what, r.name, want, r.outputs[what])
			}
		}
	}
	for _, r := range runs {
		for what, b := range r.outputs {
			sec.check(fmt.Sprintf("%s (run %s)", what, r.name), b)
		}
	}
	for what, b := range failures {
		sec.check("the output of "+what, b)
	}
	if !t.Failed() {
		t.Logf("%d secrets, %d runs; none in %d outputs", len(sec.where), len(runs), len(failures)+len(runs)*len(runs[0].outputs))
	}
}

// runSluice runs this test binary as sluice in dir with env added and
// returns its combined output and exit code.
func runSluice(t *testing.T, dir string, env []string, args ...string) ([]byte, int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), "SLUICE_TEST_MAIN=1"), env...)
	out, err := cmd.CombinedOutput()
	if err != nil && cmd.ProcessState == nil {
		t.Fatalf("sluice %s: %v", strings.Join(args, " "), err)
	}
	return out, cmd.ProcessState.ExitCode()
}
