package sink

import (
	"context"
	"net"

	"github.com/sluice-dev/sluice/record"
)

// framing is a socket protocol as the connection core uses it: the core
// dials, hands out leases, retires and closes connections; the framing
// decides what goes on the wire. lines (lines.go) and acked (acked.go)
// implement it. The core calls its methods without holding any of its
// locks.
type framing interface {
	// handshake starts a session on conn, a new connection that nothing
	// else uses yet, within the Writer's WriteTimeout (ctx ends with the
	// Writer). It returns the
	// per-connection state the core keeps in lease.fs for the framing, and
	// slog attributes describing the session for the "connected" log line.
	// On error the core closes conn and retries with backoff; an error
	// that is a *handshakeError is counted by its code.
	handshake(ctx context.Context, conn net.Conn) (fs any, attrs []any, err error)
	// start begins the framing's work on l, which has just become the
	// current lease. It starts l's goroutines, each counted in Writer.wg,
	// and may take references to l with Writer.ref. The core holds a
	// reference across start, so l cannot end before start returns.
	start(ctx context.Context, l *lease)
	// send is Writer.Send for a non-empty recs; the Writer is configured
	// and ctx had not ended when it was called.
	send(ctx context.Context, recs []record.Record, done func(error)) error
	// end is called once for every retired lease when its last reference
	// was dropped (no write on it is in progress or will start), before
	// its connection is closed. It reports whether it took over closing the
	// connection; if not, the core closes it on return.
	end(l *lease) (closes bool)
	// close settles whatever the framing still holds. Writer.Close calls it
	// once, when none of the Writer's goroutines runs any more.
	close()
}

// handshakeError is a failed handshake: code is the label of
// sluice_sink_handshake_failures_total, hint what the operator can do.
// stuck is a refusal that retrying soon will not cure, only the operator
// (the drainer's STREAM_REWOUND): it is retried at BackoffMax and logged at
// ERROR, not only at the first failure of a streak.
type handshakeError struct {
	code  string
	hint  string
	stuck bool
	err   error
}

func (e *handshakeError) Error() string { return e.err.Error() }
func (e *handshakeError) Unwrap() error { return e.err }
