package conformance

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"

	"github.com/sluice-dev/sluice/wire"
)

type check struct {
	name string
	fn   func(ctx context.Context, r *run) (detail string, err error)
}

// checks run in this order; later ones rely on nothing the earlier ones
// leave behind except the records they acknowledged (checked again by
// every output check).
var checks = []check{
	{"handshake/version-2", checkHandshake},
	{"handshake/version-range", checkVersionRange},
	{"handshake/window", checkWindow},
	{"handshake/no-common-version", checkNoCommonVersion},
	{"handshake/bad-range", checkBadRange},
	{"handshake/rewind", checkRewind},
	{"handshake/new-epoch", checkNewEpoch},
	{"malformed/vectors", checkVectors},
	{"session/frame-order", checkFrameOrder},
	{"session/frame-too-large", checkFrameTooLarge},
	{"session/data-before-hello", checkDataBeforeHello},
	{"delivery/acked", checkDelivery},
	{"delivery/full-window", checkFullWindow},
	{"dedup/resend-after-reconnect", checkResend},
	{"dedup/same-message-twice", checkSameMessageTwice},
	{"delivery/concurrent-connections", checkConcurrent},
	{"delivery/slow-reader", checkSlowReader},
	{"session/close-normal", checkCloseNormal},
	{"crash/kill-after-ack", checkCrashAfterAck},
	{"crash/kill-mid-frame", checkCrashMidFrame},
	{"crash/kill-before-ack", checkCrashBeforeAck},
}

func (r *run) open(h wire.Hello) (*client, error) { return open(r.opts.Socket, r.opts.Timeout, h) }

func checkHandshake(_ context.Context, r *run) (string, error) {
	c, err := r.open(wire.Hello{})
	if err != nil {
		return "", err
	}
	defer c.close()
	w := c.welcome
	if w.Version != wire.Version {
		return "", fmt.Errorf("WELCOME version %d, want %d", w.Version, wire.Version)
	}
	return fmt.Sprintf("server %q, max_frame_bytes %d, max_records %d, window %d", w.Server, w.MaxFrameBytes, w.MaxRecords, w.Window), nil
}

func checkVersionRange(_ context.Context, r *run) (string, error) {
	c, err := r.open(wire.Hello{MinVersion: wire.Version, MaxVersion: wire.Version + 7})
	if err != nil {
		return "", err
	}
	defer c.close()
	if c.welcome.Version != wire.Version {
		return "", fmt.Errorf("HELLO %d..%d: WELCOME version %d, want %d", wire.Version, wire.Version+7, c.welcome.Version, wire.Version)
	}
	return fmt.Sprintf("HELLO %d..%d: version %d", wire.Version, wire.Version+7, wire.Version), nil
}

func checkWindow(_ context.Context, r *run) (string, error) {
	c, err := r.open(wire.Hello{Window: 3})
	if err != nil {
		return "", err
	}
	defer c.close()
	if c.welcome.Window > 3 {
		return "", fmt.Errorf("HELLO asked for a window of 3, WELCOME granted %d (must be at most what the client asked)", c.welcome.Window)
	}
	return fmt.Sprintf("window 3 asked, %d granted", c.welcome.Window), nil
}

// sendRaw connects and writes b as the connection's first bytes.
func (r *run) sendRaw(b []byte) (*client, error) {
	c, err := dial(r.opts.Socket, r.opts.Timeout)
	if err != nil {
		return nil, err
	}
	if err := c.write(b); err != nil {
		c.close()
		return nil, err
	}
	return c, nil
}

// refusedFirst sends b (with encErr from building it) as a connection's
// first bytes and expects a CLOSE with code; detail says what was refused.
func (r *run) refusedFirst(b []byte, encErr error, code wire.CloseCode, detail string) (string, error) {
	if encErr != nil {
		return "", encErr
	}
	c, err := r.sendRaw(b)
	if err != nil {
		return "", err
	}
	defer c.close()
	return detail, c.expectClose(code)
}

func checkNoCommonVersion(_ context.Context, r *run) (string, error) {
	b, err := wire.AppendHello(nil, wire.Hello{MinVersion: 1, MaxVersion: 1, Instance: "sluice-conformance"})
	return r.refusedFirst(b, err, wire.CodeUnsupportedVersion, "HELLO 1..1 refused")
}

func checkBadRange(_ context.Context, r *run) (string, error) {
	// AppendHello refuses an empty range; write one by hand: patch
	// min_version above max_version and fix the CRC.
	b, err := wire.AppendHello(nil, wire.Hello{MinVersion: wire.Version, MaxVersion: wire.Version, Instance: "sluice-conformance"})
	if err != nil {
		return "", err
	}
	body := b[wire.HeaderLen-2:] // type, flags, then the body: magic(6) min(2) max(2)
	binary.BigEndian.PutUint16(body[2+6:], wire.Version+1)
	reCRC(b)
	return r.refusedFirst(b, nil, wire.CodeBadHandshake, fmt.Sprintf("HELLO %d..%d refused", wire.Version+1, wire.Version))
}

// checkRewind commits sequences 1..5 of a stream, then says in a HELLO that
// the queue's last sequence is 2.
func checkRewind(_ context.Context, r *run) (string, error) {
	m := r.newRewindMessages(5)
	c, err := r.open(wire.Hello{})
	if err != nil {
		return "", err
	}
	err = r.sendAcked(c, m...)
	c.close()
	if err != nil {
		return "", err
	}
	h := wire.Hello{MinVersion: wire.Version, MaxVersion: wire.Version, Instance: "sluice-conformance",
		Positions: []wire.StreamPosition{{Stream: m[0].recs[0].ID.Stream, Epoch: r.epoch, LastSeq: 2}}}
	b, err := wire.AppendHello(nil, h)
	return r.refusedFirst(b, err, wire.CodeStreamRewound, "committed 1..5, HELLO at 2 refused")
}

// newRewindMessages returns count one-record messages, sequences 1..count,
// of a stream of their own (so that the fence a drainer keeps for it
// touches nothing else).
func (r *run) newRewindMessages(count int) []message {
	ms := r.newMessages(count)
	for i := range ms {
		ms[i].seq = uint64(i + 1)
		for j := range ms[i].recs {
			ms[i].recs[j].ID.Stream = r.stream() + "-rewind"
			ms[i].recs[j].ID.Seq = ms[i].seq
		}
	}
	return ms
}

// checkNewEpoch: a position of a stream incarnation with nothing committed
// passes, even at sequence 0.
func checkNewEpoch(_ context.Context, r *run) (string, error) {
	c, err := r.open(wire.Hello{Positions: []wire.StreamPosition{
		{Stream: r.stream() + "-rewind", Epoch: r.epoch + 1, LastSeq: 0},
		{Stream: r.stream(), Epoch: r.epoch, LastSeq: 1 << 40},
	}})
	if err != nil {
		return "", err
	}
	c.close()
	return "positions of a new epoch and above the committed sequence admitted", nil
}

// vector is an entry of wire/testdata/vectors/vectors.json.
type vector struct {
	File  string `json:"file"`
	Hex   string `json:"hex"`
	Error string `json:"error"`
}

// firstFrame reports whether a vector is meant as a connection's first
// bytes (a HELLO, or what a stranger sends instead); the others follow a
// completed handshake.
func firstFrame(file string) bool {
	return strings.HasPrefix(file, "hello_") || file == "bad_magic.bin" || file == "http_get.bin"
}

// checkVectors sends every invalid vector on a connection of its own and
// expects the vector's CLOSE code; a witness connection must keep being
// served throughout.
func checkVectors(_ context.Context, r *run) (string, error) {
	var vf struct {
		Vectors []vector `json:"vectors"`
	}
	if err := json.Unmarshal(wire.VectorsJSON(), &vf); err != nil {
		return "", fmt.Errorf("the embedded vectors: %w", err)
	}
	codes := map[string]wire.CloseCode{}
	for c := range wire.CloseCode(0x0500) {
		if c.Known() {
			codes[c.String()] = c
		}
	}
	witness, err := r.open(wire.Hello{})
	if err != nil {
		return "", err
	}
	defer witness.close()
	var fails []string
	n := 0
	for _, v := range vf.Vectors {
		if v.Error == "" {
			continue
		}
		n++
		b, err := hex.DecodeString(v.Hex)
		if err != nil {
			return "", fmt.Errorf("vector %s: %w", v.File, err)
		}
		if err := r.sendVector(v, b, codes); err != nil {
			fails = append(fails, fmt.Sprintf("%s: %v", v.File, err))
		}
		if err := r.sendAcked(witness, r.newMessage(1)); err != nil {
			return "", fmt.Errorf("after %s, another connection was no longer served: %w", v.File, err)
		}
	}
	if len(fails) > 0 {
		return "", fmt.Errorf("%d of %d invalid vectors mishandled: %s", len(fails), n, strings.Join(fails, "; "))
	}
	return fmt.Sprintf("%d invalid vectors closed with their codes; another connection served throughout", n), nil
}

func (r *run) sendVector(v vector, b []byte, codes map[string]wire.CloseCode) error {
	var c *client
	var err error
	if firstFrame(v.File) {
		c, err = r.sendRaw(b)
	} else {
		c, err = r.open(wire.Hello{})
		if err == nil {
			err = c.write(b)
		}
	}
	if err != nil {
		return err
	}
	defer c.close()
	if v.Error == "UNEXPECTED_EOF" {
		// The stream ends inside a frame: nothing may be acknowledged,
		// and the drainer closes.
		if uc, ok := c.nc.(*net.UnixConn); ok {
			_ = uc.CloseWrite()
		}
		for {
			f, err := c.read()
			switch {
			case errors.Is(err, io.EOF) || err != nil && !isTimeout(err):
				return nil
			case err != nil:
				return fmt.Errorf("the drainer kept the connection open after it ended inside a frame: %w", err)
			case f.Type == wire.TypeAck:
				return errors.New("the drainer acknowledged a frame cut short")
			case f.Type == wire.TypeClose:
				return nil
			}
		}
	}
	want, ok := codes[v.Error]
	if !ok {
		return fmt.Errorf("unknown close code %q in the vectors", v.Error)
	}
	return c.expectClose(want)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func checkFrameOrder(_ context.Context, r *run) (string, error) {
	c, err := r.open(wire.Hello{})
	if err != nil {
		return "", err
	}
	defer c.close()
	m := r.newMessage(1)
	if err := r.sendAcked(c, m); err != nil {
		return "", err
	}
	// The same frame id again: not increasing.
	b, err := wire.AppendData(nil, r.frame, records(r.newMessage(1)), c.welcome.Limits())
	if err != nil {
		return "", err
	}
	if err := c.write(b); err != nil {
		return "", err
	}
	return "a repeated frame id refused", c.expectClose(wire.CodeFrameOrder)
}

func checkFrameTooLarge(_ context.Context, r *run) (string, error) {
	c, err := r.open(wire.Hello{})
	if err != nil {
		return "", err
	}
	defer c.close()
	b, err := wire.AppendData(nil, r.nextFrame(), records(r.newMessage(1)), c.welcome.Limits())
	if err != nil {
		return "", err
	}
	// A header announcing one byte more than the granted limit; the body
	// never comes, so the drainer must refuse on the length alone.
	binary.BigEndian.PutUint32(b, c.welcome.MaxFrameBytes+1)
	if err := c.write(b[:wire.HeaderLen]); err != nil {
		return "", err
	}
	return fmt.Sprintf("a %d-byte frame refused on its length", c.welcome.MaxFrameBytes+1), c.expectClose(wire.CodeFrameTooLarge)
}

func checkDataBeforeHello(_ context.Context, r *run) (string, error) {
	b, err := wire.AppendData(nil, r.nextFrame(), records(r.newMessage(1)), wire.Limits{})
	return r.refusedFirst(b, err, wire.CodeHandshakeRequired, "DATA before HELLO refused")
}

func checkDelivery(_ context.Context, r *run) (string, error) {
	c, err := r.open(wire.Hello{})
	if err != nil {
		return "", err
	}
	defer c.close()
	ms := r.newMessages(30)
	for i := 0; i < len(ms); i += 3 {
		if err := r.sendAcked(c, ms[i:i+3]...); err != nil {
			return "", err
		}
	}
	return r.checkOutputOrAcks(ms, "10 frames of 3 messages acknowledged")
}

// checkOutputOrAcks checks the output when there is one, or says that only
// the acknowledgements were checked.
func (r *run) checkOutputOrAcks(ms []message, acks string) (string, error) {
	if r.opts.Out == "" {
		return acks + " (output not checked: no --out)", nil
	}
	d, err := r.checkOutput(ms...)
	if err != nil {
		return "", err
	}
	return acks + "; " + d, nil
}

// checkFullWindow fills the granted window without reading an ACK, then
// expects them all.
func checkFullWindow(_ context.Context, r *run) (string, error) {
	c, err := r.open(wire.Hello{Window: 8})
	if err != nil {
		return "", err
	}
	defer c.close()
	w := int(c.welcome.Window)
	ms := r.newMessages(w)
	var last uint64
	for _, m := range ms {
		last = r.nextFrame()
		r.markSent(m)
		if err := c.send(last, m.recs); err != nil {
			return "", err
		}
	}
	if err := c.waitAck(last); err != nil {
		return "", err
	}
	r.markAcked(ms...)
	return r.checkOutputOrAcks(ms, fmt.Sprintf("%d frames in flight (the whole window) acknowledged", w))
}

// checkResend re-sends messages already acknowledged, on a new connection,
// as a sink does after a reconnect: the drainer acknowledges them and
// writes nothing more.
func checkResend(_ context.Context, r *run) (string, error) {
	c, err := r.open(wire.Hello{})
	if err != nil {
		return "", err
	}
	ms := r.newMessages(6)
	err = r.sendAcked(c, ms...)
	c.close()
	if err != nil {
		return "", err
	}
	d, err := r.open(wire.Hello{})
	if err != nil {
		return "", err
	}
	defer d.close()
	if err := r.sendAcked(d, ms[:3]...); err != nil {
		return "", err
	}
	if err := r.sendAcked(d, ms[3:]...); err != nil {
		return "", err
	}
	if r.opts.Out == "" {
		return "", skipError{"needs the drainer's output (--out) to see duplicates"}
	}
	return r.checkOutput(ms...)
}

// checkSameMessageTwice sends one message in two frames back to back.
func checkSameMessageTwice(_ context.Context, r *run) (string, error) {
	c, err := r.open(wire.Hello{})
	if err != nil {
		return "", err
	}
	defer c.close()
	m := r.newMessage(2)
	r.markSent(m)
	first, second := r.nextFrame(), r.nextFrame()
	if err := c.send(first, m.recs); err != nil {
		return "", err
	}
	if err := c.send(second, m.recs); err != nil {
		return "", err
	}
	if err := c.waitAck(second); err != nil {
		return "", err
	}
	r.markAcked(m)
	if r.opts.Out == "" {
		return "", skipError{"needs the drainer's output (--out) to see duplicates"}
	}
	return r.checkOutput(m)
}

func checkConcurrent(_ context.Context, r *run) (string, error) {
	const conns, frames = 4, 25
	var wg sync.WaitGroup
	errs := make([]error, conns)
	var all []message
	var mu sync.Mutex
	for i := range conns {
		wg.Go(func() {
			c, err := r.open(wire.Hello{Instance: fmt.Sprintf("sluice-conformance-%d", i)})
			if err != nil {
				errs[i] = err
				return
			}
			defer c.close()
			for range frames {
				m := r.newMessage(2)
				mu.Lock()
				all = append(all, m)
				mu.Unlock()
				r.markSent(m)
				id := r.nextFrame()
				if err := c.sendAcked(id, m.recs); err != nil {
					errs[i] = fmt.Errorf("connection %d: %w", i, err)
					return
				}
				r.markAcked(m)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return "", err
	}
	return r.checkOutputOrAcks(all, fmt.Sprintf("%d connections × %d frames acknowledged", conns, frames))
}

// checkSlowReader: a connection that does not read its ACKs must not hold
// up another one.
func checkSlowReader(_ context.Context, r *run) (string, error) {
	slow, err := r.open(wire.Hello{Window: 4})
	if err != nil {
		return "", err
	}
	defer slow.close()
	var slowMsgs []message
	var last uint64
	for range slow.welcome.Window {
		m := r.newMessage(1)
		slowMsgs = append(slowMsgs, m)
		r.markSent(m)
		last = r.nextFrame()
		if err := slow.send(last, m.recs); err != nil {
			return "", err
		}
	}
	fast, err := r.open(wire.Hello{})
	if err != nil {
		return "", err
	}
	defer fast.close()
	ms := r.newMessages(10)
	for _, m := range ms {
		if err := r.sendAcked(fast, m); err != nil {
			return "", fmt.Errorf("while another connection read no ACKs: %w", err)
		}
	}
	if err := slow.waitAck(last); err != nil {
		return "", fmt.Errorf("the slow reader's ACKs: %w", err)
	}
	r.markAcked(slowMsgs...)
	return r.checkOutputOrAcks(append(ms, slowMsgs...), "10 frames acknowledged on one connection while another read nothing")
}

func checkCloseNormal(_ context.Context, r *run) (string, error) {
	c, err := r.open(wire.Hello{})
	if err != nil {
		return "", err
	}
	defer c.close()
	if err := r.sendAcked(c, r.newMessage(1)); err != nil {
		return "", err
	}
	if err := c.write(wire.AppendClose(nil, wire.Close{Code: wire.CodeNormal, Reason: "conformance: done"})); err != nil {
		return "", err
	}
	for {
		f, err := c.read()
		switch {
		case errors.Is(err, io.EOF):
			return "the drainer ended the session after CLOSE NORMAL", nil
		case err != nil && isTimeout(err):
			return "", fmt.Errorf("the drainer kept the connection open for %v after CLOSE NORMAL", r.opts.Timeout)
		case err != nil:
			return "the drainer ended the session after CLOSE NORMAL", nil
		case f.Type == wire.TypeClose && f.Close.Code != wire.CodeNormal:
			return "", fmt.Errorf("the drainer answered CLOSE NORMAL with CLOSE %s (%q)", f.Close.Code, f.Close.Reason)
		}
	}
}

// reCRC recomputes the CRC of the single frame in b after an edit.
func reCRC(b []byte) {
	binary.BigEndian.PutUint32(b[4:], crc32c(b[8:]))
}
