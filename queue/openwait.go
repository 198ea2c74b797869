package queue

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-dev/sluice/internal/backoff"
	"github.com/sluice-dev/sluice/obs"
)

// openRetry paces OpenWaiting's attempts.
var openRetry = backoff.Policy{Min: 100 * time.Millisecond, Max: 5 * time.Second}

// OpenWaiting is Open for a service's start: while the JetStream API is
// unavailable for a while (the connection is reconnecting, a cluster is
// electing a leader or has lost its quorum, a request timed out), it
// retries with backoff, logging each failure at WARN with the error and the
// next attempt's delay, until Open succeeds or ctx ends. An error that
// retrying cannot cure (a stream that does not match, a bad configuration,
// JetStream not enabled, a refused permission) is returned at once.
func OpenWaiting(ctx context.Context, nc *nats.Conn, opts Options) (*Source, error) {
	log := opts.WithDefaults().Logger.With(obs.KeyComponent, component)
	for attempt := 1; ; attempt++ {
		src, err := Open(ctx, nc, opts)
		if err == nil {
			if attempt > 1 {
				log.Info("JetStream available: opened the streams and the consumer", obs.KeyAttempts, attempt-1)
			}
			return src, nil
		}
		if ctx.Err() != nil || !Transient(err) {
			return nil, err
		}
		d := openRetry.Delay(attempt)
		log.Warn("JetStream unavailable at start; retrying", obs.KeyErr, obs.RedactError(err), obs.KeyAttempts, attempt, obs.KeyRetryIn, d)
		if err := backoff.Sleep(ctx, d); err != nil {
			return nil, err
		}
	}
}

// Transient reports whether err, from Open or a JetStream API call, is one
// that can pass by itself: a timeout, no responders (JetStream not reachable
// yet), a connection that is reconnecting, or a cluster that is
// temporarily unavailable (no meta leader, no quorum).
func Transient(err error) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, ErrStreamMismatch), errors.Is(err, ErrBadConfig), errors.Is(err, ErrDeadLetterConsumed),
		errors.Is(err, jetstream.ErrJetStreamNotEnabled), errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount),
		errors.Is(err, nats.ErrAuthorization), errors.Is(err, nats.ErrPermissionViolation), errors.Is(err, nats.ErrConnectionClosed):
		return false
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout), errors.Is(err, nats.ErrNoResponders),
		errors.Is(err, jetstream.ErrNoStreamResponse), errors.Is(err, nats.ErrConnectionReconnecting), errors.Is(err, nats.ErrDisconnected),
		errors.Is(err, ErrNotConnected):
		return true
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		// 503: JetStream temporarily unavailable (no meta leader, no
		// quorum); 10008 is the cluster's "not available" code.
		return apiErr.Code == 503 || apiErr.ErrorCode == 10008
	}
	return false
}
