package queue

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sluice-dev/sluice/obs"
)

// Connect dials NATS. With emb non-nil it connects to the embedded server
// in-process (no TCP) and uses only opts.Logger; otherwise it dials opts.URL
// with the credentials in opts (user/password, token, nkey seed file, creds
// file, TLS files), which it never logs. The connection reconnects forever, with jitter; reconnects
// and disconnects are logged. Errors name the URL with any password or token
// redacted.
func Connect(ctx context.Context, emb *Embedded, opts ConnectOptions) (*nats.Conn, error) {
	opts = opts.WithDefaults()
	log := opts.Logger.With(obs.KeyComponent, component)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	nopts := []nats.Option{
		nats.Name("sluice"),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectJitter(250*time.Millisecond, time.Second),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if err != nil {
				log.Warn("disconnected from NATS; reconnecting", obs.KeyURL, ConnectedURL(nc), obs.KeyErr, err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("reconnected to NATS", obs.KeyURL, ConnectedURL(nc), obs.KeyReconnects, nc.Stats().Reconnects)
			if opts.OnReconnect != nil {
				opts.OnReconnect()
			}
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subj := ""
			if sub != nil {
				subj = sub.Subject
			}
			log.Warn("NATS asynchronous error", obs.KeySubject, subj, obs.KeyErr, err)
		}),
	}
	if dl, ok := ctx.Deadline(); ok {
		if d := time.Until(dl); d > 0 && d < nats.DefaultTimeout {
			nopts = append(nopts, nats.Timeout(d))
		}
	}
	var target string
	if emb != nil {
		target = emb.ClientURL()
		nopts = append(nopts, nats.InProcessServer(emb.Server()))
		nopts = append(nopts, emb.ClientOptions()...)
	} else {
		target = opts.URL
		if strings.TrimSpace(target) == "" {
			return nil, fmt.Errorf("%w: queue.url is empty and no embedded server was started", ErrBadConfig)
		}
		copts, err := credentialOptions(opts)
		if err != nil {
			return nil, fmt.Errorf("connect to NATS at %s: %w", redactURL(target), err)
		}
		nopts = append(nopts, copts...)
	}
	nc, err := nats.Connect(target, nopts...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s: %w (check queue.url, that the server runs and the credentials)", redactURL(target), obs.RedactError(err))
	}
	if err := ctx.Err(); err != nil {
		nc.Close()
		return nil, err
	}
	log.Info("connected to NATS", obs.KeyURL, ConnectedURL(nc), obs.KeyInProcess, emb != nil)
	return nc, nil
}

// credentialOptions turns the credentials in cfg into connect options.
func credentialOptions(cfg ConnectOptions) ([]nats.Option, error) {
	var opts []nats.Option
	if cfg.User != "" || cfg.Password != "" {
		opts = append(opts, nats.UserInfo(cfg.User, cfg.Password))
	}
	if cfg.Token != "" {
		opts = append(opts, nats.Token(cfg.Token))
	}
	if cfg.NKeyFile != "" {
		o, err := nats.NkeyOptionFromSeed(cfg.NKeyFile)
		if err != nil {
			return nil, fmt.Errorf("%w: queue.nkey_file %q: %v", ErrBadConfig, cfg.NKeyFile, err)
		}
		opts = append(opts, o)
	}
	if cfg.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(cfg.CredsFile))
	}
	if cfg.TLS.CAFile != "" {
		opts = append(opts, nats.RootCAs(cfg.TLS.CAFile))
	}
	if (cfg.TLS.CertFile == "") != (cfg.TLS.KeyFile == "") {
		return nil, fmt.Errorf("%w: queue.tls.cert_file and queue.tls.key_file must be set together", ErrBadConfig)
	}
	if cfg.TLS.CertFile != "" {
		opts = append(opts, nats.ClientCert(cfg.TLS.CertFile, cfg.TLS.KeyFile))
	}
	return opts, nil
}

// redactURL hides the password or token in each of the comma-separated URLs
// in s, for logs and errors.
// ConnectedURL is the URL of the server nc is connected to, with a
// password or a token (nats://TOKEN@host) replaced by xxxxx: what sluice
// shows of it in logs and the admin API. ("" while not connected.) The
// client's own ConnectedUrlRedacted hides passwords only.
func ConnectedURL(nc *nats.Conn) string {
	if u := nc.ConnectedUrl(); u != "" {
		return redactURL(u)
	}
	return ""
}

func redactURL(s string) string {
	parts := strings.Split(s, ",")
	for i, p := range parts {
		p = strings.TrimSpace(p)
		u, err := url.Parse(p)
		if err != nil {
			if strings.Contains(p, "@") {
				parts[i] = "<unparsable URL with credentials>"
			} else {
				parts[i] = p
			}
			continue
		}
		if u.User != nil {
			if _, ok := u.User.Password(); ok {
				u.User = url.UserPassword(u.User.Username(), "xxxxx")
			} else {
				// nats://TOKEN@host: the user part is a secret too.
				u.User = url.User("xxxxx")
			}
		}
		parts[i] = u.String()
	}
	return strings.Join(parts, ",")
}
