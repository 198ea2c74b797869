package sink

import (
	"context"
	"errors"
	"net"
	"time"

	"github.com/sluice-dev/sluice/internal/backoff"
	"github.com/sluice-dev/sluice/obs"
)

// connector is the one goroutine that dials. It runs until ctx ends.
func (w *Writer) connector(ctx context.Context) {
	defer w.wg.Done()
	pol := backoff.Policy{Min: w.opts.BackoffMin, Max: w.opts.BackoffMax}
	flaps := 0 // consecutive connections that failed young
	for {
		if !w.awaitWork(ctx) {
			return
		}
		w.mu.Lock()
		broke, age := w.st == statusBroken, w.failAge
		if broke {
			w.st = statusReconnecting
		}
		w.mu.Unlock()
		// A connection that fails soon after it was made (a drainer that
		// accepts and drops) must not make us redial at full speed.
		if broke {
			if age < w.opts.BackoffMax {
				flaps++
				if backoff.Sleep(ctx, pol.Delay(flaps)) != nil {
					return
				}
			} else {
				flaps = 0
			}
		}
		conn, fs, attrs, failures, err := w.dial(ctx, pol)
		if err != nil {
			return
		}
		w.install(ctx, conn, fs, attrs, failures)
	}
}

// awaitWork waits until a connection is needed: in connecting, broken or
// replacing, or when the current one reached MaxConnAge (connected →
// replacing). It returns false when ctx ends or the Writer is closed.
func (w *Writer) awaitWork(ctx context.Context) bool {
	for {
		w.mu.Lock()
		st, cur := w.st, w.cur
		w.mu.Unlock()
		switch st {
		case statusClosed:
			return false
		case statusConnecting, statusBroken, statusReconnecting, statusReplacing:
			return true
		}
		var (
			t    *time.Timer
			ageC <-chan time.Time
		)
		if w.opts.MaxConnAge > 0 && cur != nil {
			t = time.NewTimer(time.Until(cur.born.Add(w.opts.MaxConnAge)))
			ageC = t.C
		}
		select {
		case <-ctx.Done():
		case <-w.wake:
		case <-ageC:
			w.request(ReasonMaxAge)
		}
		if t != nil {
			t.Stop()
		}
		if ctx.Err() != nil {
			return false
		}
	}
}

// stuckLogEvery paces the ERROR lines of a refusal only the operator can
// cure (handshakeError.stuck).
const stuckLogEvery = time.Minute

// dial connects to the drainer and runs the framing's handshake, retrying
// with pol's capped exponential backoff. It logs the first failure of a
// streak only, except a stuck refusal: that is retried every pol.Max and
// logged at ERROR once per stuckLogEvery. It returns the connection, the framing's state and log
// attributes for it, and the number of failed attempts, or ctx.Err().
func (w *Writer) dial(ctx context.Context, pol backoff.Policy) (conn net.Conn, fs any, attrs []any, failures int, err error) {
	var loud time.Time // when a stuck refusal was last logged
	for {
		dctx, cancel := context.WithTimeout(ctx, w.opts.WriteTimeout)
		conn, err = w.opts.Dial(dctx, w.opts.Path)
		cancel()
		if err == nil {
			fs, attrs, err = w.fr.handshake(ctx, conn)
			if err == nil {
				return conn, fs, attrs, failures, nil
			}
			_ = conn.Close() // never shared
			code, hint, stuck := "IO", "", false
			if he, ok := errors.AsType[*handshakeError](err); ok {
				code, hint, stuck = he.code, he.hint, he.stuck
			}
			w.m.handshakeFailures.WithLabelValues(code).Inc()
			if ctx.Err() != nil {
				return nil, nil, nil, failures, ctx.Err()
			}
			failures++
			if stuck {
				if time.Since(loud) >= stuckLogEvery {
					loud = time.Now()
					w.log.Error("the drainer refused this sink; retrying every "+pol.Max.String()+" until the operator acts",
						obs.KeyCode, code, obs.KeyErr, err, obs.KeyHint, hint, obs.KeyAttempts, failures)
				}
				if backoff.Sleep(ctx, pol.Max) != nil {
					return nil, nil, nil, failures, ctx.Err()
				}
				continue
			}
			if failures == 1 {
				w.log.Error("handshake with the drainer failed; retrying with backoff",
					obs.KeyCode, code, obs.KeyErr, err, obs.KeyHint, hint)
			} else {
				w.log.Debug("handshake failed", obs.KeyAttempts, failures, obs.KeyCode, code, obs.KeyErr, err)
			}
		} else {
			if ctx.Err() != nil {
				return nil, nil, nil, failures, ctx.Err()
			}
			failures++
			w.m.dialFailures.Inc()
			if failures == 1 {
				w.log.Warn("cannot connect to the drainer's socket; retrying with backoff",
					obs.KeyErr, err, obs.KeyHint, "start the drainer (sluice drain) or check sink.socket")
			} else {
				w.log.Debug("dial failed", obs.KeyAttempts, failures, obs.KeyErr, err)
			}
		}
		if backoff.Sleep(ctx, pol.Delay(failures)) != nil {
			return nil, nil, nil, failures, ctx.Err()
		}
	}
}

// install makes conn the current lease (→ connected), retires the previous
// one (if any) and lets the framing start on the new one. The old
// connection ends when its last writer lets go.
func (w *Writer) install(ctx context.Context, conn net.Conn, fs any, attrs []any, failures int) {
	w.mu.Lock()
	if w.st == statusClosed {
		w.mu.Unlock()
		_ = conn.Close() // never shared
		return
	}
	first := w.st == statusConnecting
	w.gen++
	// Two references: the owner's, and install's own across fr.start.
	l := &lease{conn: conn, gen: w.gen, born: time.Now(), fs: fs, refs: 2, gone: make(chan struct{})}
	old, reason, brokeAt := w.cur, w.reason, w.brokeAt
	w.cur, w.st, w.reason = l, statusConnected, ""
	w.live[l] = struct{}{}
	if !first {
		// Counted before writers can use the new lease, so a Send that
		// returned after a reconnect always sees it counted.
		if reason == "" {
			reason = ReasonRequested
		}
		w.m.reconnects.WithLabelValues(reason).Inc()
	}
	if old == nil {
		close(w.ready) // wake the writers waiting for a connection
	} else {
		old.retired = true
	}
	w.m.connected.Set(1)
	w.mu.Unlock()

	w.fr.start(ctx, l) // the connector's own wg count is held, so Close's Wait cannot have returned
	w.release(l)       // install's reference
	if !first {
		w.notify(EventReconnect, reason)
	}

	switch {
	case first:
		w.log.Info("connected to the drainer", append([]any{obs.KeyGen, l.gen, obs.KeyAttempts, failures}, attrs...)...)
	case old == nil:
		w.log.Info("reconnected to the drainer", obs.KeyReason, reason, obs.KeyGen, l.gen,
			obs.KeyAttempts, failures, obs.KeyDowntime, time.Since(brokeAt).Round(time.Millisecond))
	default:
		w.log.Debug("replaced the connection to the drainer", obs.KeyReason, reason, obs.KeyGen, l.gen)
	}
	if old != nil {
		_ = beforeClose.Hit(ctx) // only a delay matters here; the owner's reference is dropped regardless
		w.release(old)           // the owner's reference
	}
}
