package conformance

import (
	"context"
	"fmt"
	"hash/crc32"

	"github.com/sluice-dev/sluice/wire"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func crc32c(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// crashRounds runs Options.CrashRounds rounds of: connect, send, let kill
// SIGKILL the drainer at its moment, restart it, and re-send what a sink
// would (every frame not acknowledged) together with some messages that
// were acknowledged before the kill (a queue redelivers those after a
// crash of sluice). Then every acknowledged record must be in the output
// exactly once.
func (r *run) crashRounds(ctx context.Context, what string, round func(c *client) (unacked []message, err error)) (string, error) {
	if r.opts.Exec == "" {
		return "", skipError{"needs --exec, so that the suite can kill and restart the drainer"}
	}
	if r.opts.Out == "" {
		return "", skipError{"needs the drainer's output (--out) to count what survived"}
	}
	var all []message
	for i := range r.opts.CrashRounds {
		c, err := r.open(wire.Hello{})
		if err != nil {
			return "", fmt.Errorf("round %d: %w", i+1, err)
		}
		before := r.newMessages(4) // acknowledged before the kill
		if err := r.sendAcked(c, before...); err != nil {
			c.close()
			return "", fmt.Errorf("round %d: %w", i+1, err)
		}
		unacked, err := round(c)
		c.close()
		if err != nil {
			return "", fmt.Errorf("round %d: %w", i+1, err)
		}
		r.kill()
		if err := r.startDrainer(ctx); err != nil {
			return "", fmt.Errorf("round %d: restart: %w", i+1, err)
		}
		d, err := r.open(wire.Hello{})
		if err != nil {
			return "", fmt.Errorf("round %d, after the restart: %w", i+1, err)
		}
		if len(unacked) > 0 {
			err = r.sendAcked(d, unacked...)
		}
		if err == nil {
			err = r.sendAcked(d, before[:2]...) // redelivered after the crash
		}
		d.close()
		if err != nil {
			return "", fmt.Errorf("round %d, re-sending after the restart: %w", i+1, err)
		}
		all = append(append(all, before...), unacked...)
		if _, err := r.checkOutput(all...); err != nil {
			return "", fmt.Errorf("round %d (%s, then restart and re-send): %w", i+1, what, err)
		}
	}
	d, err := r.checkOutput(all...)
	return fmt.Sprintf("%d rounds; %s", r.opts.CrashRounds, d), err
}

// checkCrashAfterAck kills the drainer right after an ACK: what it
// acknowledged must survive (it was durable before the ACK).
func checkCrashAfterAck(ctx context.Context, r *run) (string, error) {
	return r.crashRounds(ctx, "SIGKILL right after an ACK", func(c *client) ([]message, error) {
		return nil, r.sendAcked(c, r.newMessages(3)...)
	})
}

// checkCrashMidFrame kills the drainer while a frame is half written.
func checkCrashMidFrame(ctx context.Context, r *run) (string, error) {
	return r.crashRounds(ctx, "SIGKILL in the middle of a frame", func(c *client) ([]message, error) {
		ms := r.newMessages(3)
		r.markSent(ms...)
		b, err := wire.AppendData(nil, r.nextFrame(), records(ms...), c.welcome.Limits())
		if err != nil {
			return nil, err
		}
		return ms, c.write(b[:len(b)/2])
	})
}

// checkCrashBeforeAck kills the drainer with frames sent and not yet
// acknowledged: each may or may not have been committed, and re-sending
// them must leave each record once.
func checkCrashBeforeAck(ctx context.Context, r *run) (string, error) {
	return r.crashRounds(ctx, "SIGKILL with frames in flight", func(c *client) ([]message, error) {
		var ms []message
		for range 3 {
			m := r.newMessages(2)
			r.markSent(m...)
			if err := c.send(r.nextFrame(), records(m...)); err != nil {
				return nil, err
			}
			ms = append(ms, m...)
		}
		return ms, nil
	})
}
