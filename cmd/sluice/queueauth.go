package main

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/sluice-dev/sluice/config"
	"github.com/sluice-dev/sluice/obs"
	"github.com/sluice-dev/sluice/queue"
)

// embeddedAuth sets the credentials the embedded server asks of its
// clients (queue.auth) into eo: with "token", queue.token or the token in
// the token file, which is created (mode 0600, in a 0700 data directory)
// at first start.
func embeddedAuth(cfg *config.Config, eo *queue.EmbeddedOptions) error {
	q := &cfg.Queue
	switch q.Auth {
	case config.AuthUser:
		eo.User, eo.Password = q.User, q.Password
	case config.AuthToken:
		if q.Token != "" {
			eo.Token = q.Token
			return nil
		}
		path := cfg.QueueTokenFile()
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return fmt.Errorf("queue token: %w (set queue.token_file to a writable path, or queue.token)", err)
		}
		tok, err := obs.LoadOrCreateToken(path)
		if err != nil {
			return fmt.Errorf("queue token: %w (set queue.token_file to a usable path, or queue.token)", err)
		}
		eo.Token = tok
	}
	return nil
}

// clientToken is the token a sluice command (load, dlq) presents to the
// embedded server of a sluice run on this host: queue.token, or the token
// file's content when the file exists. A rawURL that carries credentials
// of its own, an external queue.url, or queue.auth other than token give
// "" (the NATS server ignores a token it does not ask for, so a token
// from a stale file does no harm).
func clientToken(cfg *config.Config, rawURL string) (string, error) {
	if hasCredentials(rawURL) || cfg.Queue.Auth != config.AuthToken {
		return "", nil
	}
	if cfg.Queue.Token != "" {
		return cfg.Queue.Token, nil
	}
	path := cfg.QueueTokenFile()
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("queue token: %w (set queue.token_file, or queue.token / SLUICE_QUEUE_TOKEN)", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// hasCredentials reports whether any URL of the comma-separated list
// carries a user or token.
func hasCredentials(rawURL string) bool {
	for _, u := range strings.Split(rawURL, ",") {
		if p, err := url.Parse(strings.TrimSpace(u)); err == nil && p.User != nil {
			return true
		}
	}
	return false
}

// authHint adds to err, when the NATS server refused the credentials of a
// client command (load, dlq), where the token of a sluice run's embedded
// server is and how to present it; other errors are returned as they are.
// token is what the command presented ("" for none).
func authHint(err error, cfg *config.Config, token string) error {
	if err == nil || !errors.Is(err, nats.ErrAuthorization) && !strings.Contains(strings.ToLower(err.Error()), "authorization violation") {
		return err
	}
	if cfg.Queue.Auth != config.AuthToken {
		return fmt.Errorf("%w (the server refused the credentials: give the user and password of the server's queue.auth, in the URL as nats://USER:PASSWORD@host:port or as queue.user and queue.password)", err)
	}
	if cfg.Queue.Token != "" {
		return fmt.Errorf("%w (the server refused the token of queue.token: it is not the token of that server)", err)
	}
	path := cfg.QueueTokenFile()
	if abs, aerr := filepath.Abs(path); aerr == nil {
		path = abs
	}
	if token == "" {
		return fmt.Errorf("%w (the embedded server asks for a token and there is none at %s: run this command with the configuration or the queue.data_dir (SLUICE_QUEUE_DATA_DIR) of that sluice run, or give the token as SLUICE_QUEUE_TOKEN or in the URL, nats://TOKEN@host:port)", err, path)
	}
	return fmt.Errorf("%w (the server refused the token read from %s: that file belongs to another sluice run; use the configuration or the queue.data_dir (SLUICE_QUEUE_DATA_DIR) of the one serving this address)", err, path)
}
