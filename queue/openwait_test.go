package queue_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-dev/sluice/queue"
)

// Transient tells the errors that pass by themselves (retried at start)
// from those that retrying cannot cure (returned at once).
func TestTransient(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("queue: look up stream %q: %w", "INGEST", err) }
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{wrap(context.DeadlineExceeded), true},
		{wrap(nats.ErrTimeout), true},
		{wrap(nats.ErrNoResponders), true},
		{wrap(nats.ErrConnectionReconnecting), true},
		{wrap(queue.ErrNotConnected), true},
		{wrap(&jetstream.APIError{Code: 503, ErrorCode: 10008, Description: "JetStream system temporarily unavailable"}), true},
		{wrap(queue.ErrStreamMismatch), false},
		{wrap(queue.ErrBadConfig), false},
		{wrap(jetstream.ErrJetStreamNotEnabled), false},
		{wrap(nats.ErrAuthorization), false},
		{wrap(nats.ErrConnectionClosed), false},
		{wrap(&jetstream.APIError{Code: 400, ErrorCode: 10058, Description: "stream name already in use"}), false},
		{errors.New("something else"), false},
	} {
		if got := queue.Transient(tc.err); got != tc.want {
			t.Errorf("Transient(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
