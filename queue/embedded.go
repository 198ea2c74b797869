package queue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/sluice-dev/sluice/obs"
)

// readyTimeout guards the wait for the embedded server to accept clients. A
// healthy server is ready in milliseconds; this only bounds a hang.
const readyTimeout = 30 * time.Second

// Embedded is an in-process NATS server with JetStream, storing its streams
// under the configured data directory.
type Embedded struct {
	srv  *server.Server
	log  *slog.Logger
	once sync.Once // guards Shutdown
	// the credentials clients must present (EmbeddedOptions)
	token, user, password string
}

// ClientOptions returns the connect options a client of e needs: its
// credentials, if it requires any.
func (e *Embedded) ClientOptions() []nats.Option {
	switch {
	case e.token != "":
		return []nats.Option{nats.Token(e.token)}
	case e.user != "":
		return []nats.Option{nats.UserInfo(e.user, e.password)}
	}
	return nil
}

// StartEmbedded starts an in-process NATS server with JetStream on
// opts.Listen (port 0 picks a free port), storing streams as files under
// opts.DataDir/jetstream, and waits until it accepts clients. The server
// listens only on opts.Listen: no monitoring, cluster, leaf or gateway port.
// Its logs go to opts.Logger with component=nats-server. Zero fields of
// opts take their defaults (EmbeddedOptions.WithDefaults).
//
// A taken address yields an error wrapping ErrAddrInUse that names it; any
// other start failure wraps ErrEmbeddedStart.
func StartEmbedded(opts EmbeddedOptions) (*Embedded, error) {
	cfg := opts.WithDefaults()
	logger := cfg.Logger
	host, portStr, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("%w: queue.listen %q is not host:port: %v", ErrBadConfig, cfg.Listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return nil, fmt.Errorf("%w: queue.listen %q: port must be a number from 0 to 65535 (0 picks a free port)", ErrBadConfig, cfg.Listen)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("%w: create queue.data_dir %q: %v", ErrEmbeddedStart, cfg.DataDir, err)
	}

	sopts := &server.Options{
		ServerName: "sluice",
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   cfg.DataDir, // the server adds the "jetstream" directory
		NoSigs:     true,        // signals belong to the sluice process
		MaxPayload: 8 << 20,
		// The server's SyncAlways also sets the interval it uses for
		// its background sync.
		SyncAlways:   cfg.SyncAlways,
		SyncInterval: cfg.SyncInterval,
	}
	if cfg.User != "" && cfg.Token != "" {
		return nil, fmt.Errorf("%w: the embedded server takes a token or a user and password, not both", ErrBadConfig)
	}
	sopts.Authorization = cfg.Token
	sopts.Username, sopts.Password = cfg.User, cfg.Password
	srv, err := server.NewServer(sopts)
	if err != nil {
		return nil, fmt.Errorf("%w: on %s with data in %s: %v", ErrEmbeddedStart, cfg.Listen, cfg.DataDir, err)
	}
	sl := &serverLogger{log: logger.With(obs.KeyComponent, "nats-server")}
	srv.SetLoggerV2(sl, logger.Enabled(context.Background(), slog.LevelDebug), false, false)

	// Start listens synchronously: when it returns, the listener is up or
	// its failure was reported through the logger's Fatalf.
	srv.Start()
	if err := sl.fatal(); err != nil {
		srv.Shutdown()
		srv.WaitForShutdown()
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("%w: another sluice or nats-server already listens on %s; set queue.listen to another address (port 0 picks a free one) or stop the other process", ErrAddrInUse, cfg.Listen)
		}
		return nil, fmt.Errorf("%w: on %s with data in %s: %v", ErrEmbeddedStart, cfg.Listen, cfg.DataDir, err)
	}
	if !srv.ReadyForConnections(readyTimeout) || !srv.JetStreamEnabled() {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, fmt.Errorf("%w: on %s with data in %s: not ready for clients after %s (see the nats-server log lines above)", ErrEmbeddedStart, cfg.Listen, cfg.DataDir, readyTimeout)
	}
	e := &Embedded{srv: srv, log: logger.With(obs.KeyComponent, component), token: cfg.Token, user: cfg.User, password: cfg.Password}
	e.log.Info("embedded NATS JetStream server started", obs.KeyURL, srv.ClientURL(), obs.KeyDataDir, cfg.DataDir)
	return e, nil
}

// ClientURL returns the URL producers and Connect use, with the real port
// when the configured one was 0.
func (e *Embedded) ClientURL() string { return e.srv.ClientURL() }

// Server returns the underlying server, for in-process connections.
func (e *Embedded) Server() *server.Server { return e.srv }

// Shutdown stops the server and waits until it has stopped. It is
// idempotent; clients see their connection drop and reconnect.
func (e *Embedded) Shutdown() {
	e.once.Do(func() {
		e.srv.Shutdown()
		e.srv.WaitForShutdown()
		e.log.Info("embedded NATS JetStream server stopped")
	})
}

// serverLogger routes nats-server's logs to slog. Fatalf never exits: the
// server calls it for start failures, which it records for StartEmbedded.
type serverLogger struct {
	log *slog.Logger

	mu       sync.Mutex // guards firstErr
	firstErr error      // first Fatalf, as an error wrapping its error argument
}

var _ server.Logger = (*serverLogger)(nil)

func (l *serverLogger) Noticef(format string, v ...any) { l.log.Info(fmt.Sprintf(format, v...)) }
func (l *serverLogger) Warnf(format string, v ...any)   { l.log.Warn(fmt.Sprintf(format, v...)) }
func (l *serverLogger) Errorf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l *serverLogger) Debugf(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l *serverLogger) Tracef(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }

func (l *serverLogger) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	l.log.Error(msg, obs.KeyFatal, true)
	var cause error
	for _, a := range v {
		if e, ok := a.(error); ok {
			cause = e
			break
		}
	}
	err := errors.New(msg)
	if cause != nil {
		err = fmt.Errorf("%s: %w", msg, cause)
	}
	l.mu.Lock()
	if l.firstErr == nil {
		l.firstErr = err
	}
	l.mu.Unlock()
}

func (l *serverLogger) fatal() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.firstErr
}
