package queue_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/internal/testkit"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/sluice-dev/sluice/queue"
)

func TestStartEmbedded_PortInUse(t *testing.T) {
	t.Run("other listener", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		cfg := testConfig(t)
		cfg.Listen = ln.Addr().String()
		emb, err := queue.StartEmbedded(cfg)
		if err == nil {
			emb.Shutdown()
			t.Fatalf("StartEmbedded on busy %s succeeded", cfg.Listen)
		}
		if !errors.Is(err, queue.ErrAddrInUse) {
			t.Fatalf("err = %v, want ErrAddrInUse", err)
		}
		for _, w := range []string{cfg.Listen, "queue.listen", "already listens"} {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("error %q does not mention %q", err, w)
			}
		}
	})
	t.Run("second sluice", func(t *testing.T) {
		first := startServer(t, testConfig(t))
		addr := first.Server().Addr().String()
		cfg := testConfig(t)
		cfg.Listen = addr
		emb, err := queue.StartEmbedded(cfg)
		if err == nil {
			emb.Shutdown()
			t.Fatalf("second server on %s started", addr)
		}
		if !errors.Is(err, queue.ErrAddrInUse) || !strings.Contains(err.Error(), addr) {
			t.Fatalf("err = %v, want ErrAddrInUse naming %s", err, addr)
		}
	})
	t.Run("bad address", func(t *testing.T) {
		cfg := testConfig(t)
		cfg.Listen = "localhost"
		_, err := queue.StartEmbedded(cfg)
		if !errors.Is(err, queue.ErrBadConfig) || !strings.Contains(err.Error(), `queue.listen "localhost"`) {
			t.Fatalf("err = %v, want ErrBadConfig naming queue.listen", err)
		}
	})
}

func TestStartEmbedded_ListensOnlyWhereConfigured(t *testing.T) {
	var logs testkit.SyncBuffer
	cfg := testConfig(t)
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	emb, err := queue.StartEmbedded(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer emb.Shutdown()

	addr, ok := emb.Server().Addr().(*net.TCPAddr)
	if !ok || !addr.IP.Equal(net.IPv4(127, 0, 0, 1)) || addr.Port == 0 {
		t.Fatalf("server listens on %v, want 127.0.0.1 and a picked port", emb.Server().Addr())
	}
	if !strings.HasPrefix(emb.ClientURL(), "nats://127.0.0.1:") || strings.HasSuffix(emb.ClientURL(), ":0") {
		t.Fatalf("ClientURL = %q", emb.ClientURL())
	}
	// No monitoring, cluster, leaf or gateway listeners.
	if emb.Server().MonitorAddr() != nil || emb.Server().ClusterAddr() != nil || emb.Server().GatewayAddr() != nil {
		t.Fatal("embedded server opened a listener besides the client port")
	}
	// Its streams live under DataDir/jetstream.
	nc := connect(t, emb)
	_ = openSource(t, nc, queue.Options{}, nil)
	if _, err := os.Stat(filepath.Join(cfg.DataDir, "jetstream")); err != nil {
		t.Fatalf("no jetstream directory under the data dir: %v", err)
	}
	// Its logs went to slog, tagged.
	if l := logs.String(); !strings.Contains(l, "component=nats-server") || !strings.Contains(l, "Listening for client connections") {
		t.Fatalf("server logs not routed to slog:\n%s", l)
	}
}

func TestConnect_External(t *testing.T) {
	// A separate password-protected server, reached over TCP like an
	// external cluster.
	opts := &server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true,
		Username: "ingest", Password: "s3cret-pw"}
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
	if !srv.ReadyForConnections(stallGuard) {
		t.Fatal("test server not ready")
	}
	port := srv.Addr().(*net.TCPAddr).Port
	url := "nats://127.0.0.1:" + itoa(port)

	t.Run("user and password", func(t *testing.T) {
		cfg := queue.ConnectOptions{URL: url, User: "ingest", Password: "s3cret-pw", Logger: quietLogger()}
		nc, err := queue.Connect(context.Background(), nil, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		src, err := queue.Open(context.Background(), nc, queue.Options{Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		_ = src.Close()
	})
	t.Run("wrong password is reported without it", func(t *testing.T) {
		var logs testkit.SyncBuffer
		cfg := queue.ConnectOptions{URL: "nats://ingest:wrong-pw@127.0.0.1:" + itoa(port), Logger: slog.New(slog.NewTextHandler(&logs, nil))}
		_, err := queue.Connect(context.Background(), nil, cfg)
		if err == nil {
			t.Fatal("connected with a wrong password")
		}
		if strings.Contains(err.Error(), "wrong-pw") || strings.Contains(logs.String(), "wrong-pw") {
			t.Fatalf("password leaked: err %q, logs %q", err, logs.String())
		}
		if !strings.Contains(err.Error(), "127.0.0.1:"+itoa(port)) {
			t.Fatalf("error %q does not name the server", err)
		}
	})
	t.Run("token in URL is redacted", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		dead := ln.Addr().String()
		ln.Close() // nothing listens there now
		cfg := queue.ConnectOptions{URL: "nats://tok-SECRET@" + dead + ",nats://u:pw-SECRET@" + dead, Logger: quietLogger()}
		_, err = queue.Connect(context.Background(), nil, cfg)
		if err == nil {
			t.Fatal("connected to a closed port")
		}
		if strings.Contains(err.Error(), "SECRET") || !strings.Contains(err.Error(), dead) {
			t.Fatalf("error %q leaks a secret or does not name %s", err, dead)
		}
	})
	t.Run("missing nkey file", func(t *testing.T) {
		cfg := queue.ConnectOptions{URL: url, NKeyFile: filepath.Join(t.TempDir(), "none.nk"), Logger: quietLogger()}
		_, err := queue.Connect(context.Background(), nil, cfg)
		if !errors.Is(err, queue.ErrBadConfig) || !strings.Contains(err.Error(), "queue.nkey_file") {
			t.Fatalf("err = %v, want ErrBadConfig naming queue.nkey_file", err)
		}
	})
}

func itoa(i int) string { return strconv.Itoa(i) }

// TestConnect_OnReconnect: when the server comes back after a loss (here:
// restarted on the same address and store), OnReconnect is called, so that
// sluice can start a new drainer session whose HELLO carries the stream's
// position as the restarted server sees it.
func TestConnect_OnReconnect(t *testing.T) {
	store := t.TempDir()
	start := func(port int) *server.Server {
		srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: store, NoSigs: true, NoLog: true})
		if err != nil {
			t.Fatal(err)
		}
		srv.Start()
		if !srv.ReadyForConnections(stallGuard) {
			t.Fatal("test server not ready")
		}
		return srv
	}
	srv := start(-1)
	port := srv.Addr().(*net.TCPAddr).Port
	reconnected := make(chan struct{}, 1)
	nc, err := queue.Connect(context.Background(), nil, queue.ConnectOptions{URL: "nats://127.0.0.1:" + itoa(port), Logger: quietLogger(),
		OnReconnect: func() {
			select {
			case reconnected <- struct{}{}:
			default:
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	srv.Shutdown()
	srv.WaitForShutdown()
	select {
	case <-reconnected:
		t.Fatal("OnReconnect called while the server is down")
	default:
	}
	srv = start(port)
	defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
	select {
	case <-reconnected:
	case <-time.After(stallGuard):
		t.Fatalf("OnReconnect not called within %v of the server's restart", stallGuard)
	}
}

// TestStartEmbedded_Sync: queue.sync reaches the server: "always" syncs
// every write, an interval is the background sync's, and the default is
// DefaultSyncInterval, not the server's own 2 minutes.
func TestStartEmbedded_Sync(t *testing.T) {
	for _, tc := range []struct {
		name     string
		opts     queue.EmbeddedOptions
		always   bool
		interval time.Duration
	}{
		{"default", queue.EmbeddedOptions{}, false, queue.DefaultSyncInterval},
		{"interval", queue.EmbeddedOptions{SyncInterval: 250 * time.Millisecond}, false, 250 * time.Millisecond},
		{"always", queue.EmbeddedOptions{SyncAlways: true}, true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.opts
			o.DataDir, o.Listen, o.Logger = t.TempDir(), "127.0.0.1:0", quietLogger()
			emb, err := queue.StartEmbedded(o)
			if err != nil {
				t.Fatal(err)
			}
			defer emb.Shutdown()
			jc := emb.Server().JetStreamConfig()
			if jc == nil || jc.SyncAlways != tc.always || !tc.always && jc.SyncInterval != tc.interval {
				t.Fatalf("server's JetStream config %+v; want sync_always %v, interval %v", jc, tc.always, tc.interval)
			}
		})
	}
}

// An unparsable URL is not quoted with its password in Connect's error
// (nats.go returns url.Parse's error, which quotes the URL).
func TestConnect_UnparsableURLHidesCredentials(t *testing.T) {
	for _, u := range []string{"nats://u:pw-SECRET@[::1", "nats://tok-SECRET@h:4222,nats://u:pw-SECRET@[::1"} {
		_, err := queue.Connect(context.Background(), nil, queue.ConnectOptions{URL: u})
		if err == nil || strings.Contains(err.Error(), "SECRET") || !strings.Contains(err.Error(), "missing ']' in host") {
			t.Errorf("Connect(%q) = %v; want the parse error without the secret", u, err)
		}
	}
}

// TestConnect_TokenNotLogged: a token given in the URL (nats://TOKEN@host)
// appears in no log line of a connect, a reconnect or a disconnect, and
// ConnectedURL hides it.
func TestConnect_TokenNotLogged(t *testing.T) {
	const token = "tok-9f3a-SECRET"
	store := t.TempDir()
	start := func(port int) *server.Server {
		srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: store, NoSigs: true, NoLog: true, Authorization: token})
		if err != nil {
			t.Fatal(err)
		}
		srv.Start()
		if !srv.ReadyForConnections(stallGuard) {
			t.Fatal("test server not ready")
		}
		return srv
	}
	srv := start(-1)
	port := srv.Addr().(*net.TCPAddr).Port
	var logs testkit.SyncBuffer
	reconnected := make(chan struct{}, 1)
	nc, err := queue.Connect(context.Background(), nil, queue.ConnectOptions{URL: "nats://" + token + "@127.0.0.1:" + itoa(port),
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		OnReconnect: func() {
			select {
			case reconnected <- struct{}{}:
			default:
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if u := queue.ConnectedURL(nc); strings.Contains(u, token) || !strings.Contains(u, itoa(port)) {
		t.Fatalf("ConnectedURL = %q", u)
	}
	srv.Shutdown()
	srv.WaitForShutdown()
	srv = start(port)
	defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
	select {
	case <-reconnected:
	case <-time.After(stallGuard):
		t.Fatal("no reconnect")
	}
	testkit.WaitFor(t, stallGuard, func() error {
		if !strings.Contains(logs.String(), "reconnected to NATS") {
			return errors.New("no reconnect log line yet")
		}
		return nil
	})
	if l := logs.String(); strings.Contains(l, token) || !strings.Contains(l, "connected to NATS") {
		t.Fatalf("the token leaked into the logs, or nothing was logged:\n%s", l)
	}
}
