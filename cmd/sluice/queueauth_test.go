package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/sluice-dev/sluice/config"
)

// TestService_QueueAuth: by default (queue.auth token) the embedded server
// makes its token at first start in a 0600 file, asks every client for it,
// keeps it across restarts and never logs it; a token file others can read
// is refused; queue.auth none lets any client in.
func TestService_QueueAuth(t *testing.T) {
	cfg, _ := testConfig(t)
	var logs bytes.Buffer
	var stops []func()
	t.Cleanup(func() {
		for _, stop := range stops {
			stop()
		}
	})
	// start builds the service (its embedded server and connection); the
	// test's end or the next stopAll closes it, once.
	start := func(cfg *config.Config) (*service, error) {
		ctx, cancel := context.WithCancel(context.Background())
		svc, err := newService(ctx, cfg, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
		var once sync.Once
		stops = append(stops, func() {
			once.Do(func() {
				if err == nil {
					svc.close()
				}
				cancel()
			})
		})
		return svc, err
	}
	stopAll := func() {
		for _, stop := range stops {
			stop()
		}
	}
	svc, err := start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	path := cfg.QueueTokenFile()
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file %s: %v, mode %v; want it made with mode 0600", path, err, fi.Mode().Perm())
	}
	tok := queueToken(t, svc)
	for _, opts := range [][]nats.Option{nil, {nats.Token("not-" + tok)}} {
		if nc, err := nats.Connect(svc.emb.ClientURL(), opts...); err == nil {
			nc.Close()
			t.Fatal("a client without the token was let in")
		} else if !errors.Is(err, nats.ErrAuthorization) {
			t.Fatalf("refusal: %v, want an authorization violation", err)
		}
	}
	nc, err := nats.Connect(svc.emb.ClientURL(), nats.Token(tok))
	if err != nil {
		t.Fatalf("the token was refused: %v", err)
	}
	nc.Close()
	stopAll()

	svc, err = start(cfg) // a restart keeps the token
	if err != nil {
		t.Fatal(err)
	}
	if got := queueToken(t, svc); got != tok {
		t.Fatal("the token changed across a restart")
	}
	stopAll()
	if strings.Contains(logs.String(), tok) {
		t.Fatal("the token is in the logs")
	}

	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := start(cfg); err == nil || !strings.Contains(err.Error(), "readable by others") {
		t.Fatalf("start with a group-readable token file: %v, want a refusal that says so", err)
	}

	open, _ := testConfig(t)
	open.Queue.Auth = config.AuthNone
	svc, err = start(open)
	if err != nil {
		t.Fatal(err)
	}
	if nc, err := nats.Connect(svc.emb.ClientURL()); err != nil {
		t.Fatalf("queue.auth none: a client was refused: %v", err)
	} else {
		nc.Close()
	}
	if _, err := os.Stat(open.QueueTokenFile()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("queue.auth none made a token file (%v)", err)
	}
}

// A client command that the embedded server refuses says where the token
// is and how to present it: no token file where it looked, or a token file
// of another sluice run.
func TestClients_RefusedTokenSaysWhere(t *testing.T) {
	cfg, _ := testConfig(t)
	svc, _ := startService(t, cfg)
	url := svc.emb.ClientURL()
	other := t.TempDir()
	stale := other + "/stale.token"
	if err := os.WriteFile(stale, []byte("not-the-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, env, val, want string
	}{
		{"no token file", "SLUICE_QUEUE_DATA_DIR", other, "there is none at " + other + "/nats.token"},
		{"another run's token", "SLUICE_QUEUE_TOKEN_FILE", stale, "refused the token read from " + stale},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(tc.env, tc.val)
			for _, args := range [][]string{
				{"load", "--url", url, "--count", "1", "--metrics-url", ""},
				{"dlq", "list"},
			} {
				if args[0] == "dlq" { // it connects to queue.listen
					t.Setenv("SLUICE_QUEUE_LISTEN", strings.TrimPrefix(url, "nats://"))
				}
				_, _, err := runCLI(args...)
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("sluice %s: %v; want an error saying %q", strings.Join(args, " "), err, tc.want)
				}
			}
		})
	}
}
