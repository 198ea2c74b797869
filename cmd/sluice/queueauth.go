package main

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"

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
