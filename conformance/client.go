package conformance

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/sluice-dev/sluice/record"
	"github.com/sluice-dev/sluice/wire"
)

// client is one producer connection to the drainer under test, built on
// package wire the way sluice's sink uses it.
type client struct {
	nc      net.Conn
	rd      *wire.Reader
	hello   wire.Hello
	st      wire.ClientState
	welcome wire.Welcome
	buf     []byte
	timeout time.Duration
}

// dial connects to path. It does not send anything.
func dial(path string, timeout time.Duration) (*client, error) {
	nc, err := net.DialTimeout("unix", path, timeout)
	if err != nil {
		return nil, fmt.Errorf("connect to the drainer at %s: %w", path, err)
	}
	rd := wire.NewReader(nc)
	rd.Limits = wire.Limits{MaxFrameBytes: wire.MaxHandshakeBytes}
	return &client{nc: nc, rd: rd, timeout: timeout}, nil
}

// open connects and completes a handshake with h; zero fields of h get
// this suite's defaults.
func open(path string, timeout time.Duration, h wire.Hello) (*client, error) {
	c, err := dial(path, timeout)
	if err != nil {
		return nil, err
	}
	if err := c.handshake(h); err != nil {
		c.close()
		return nil, err
	}
	return c, nil
}

func (c *client) close() { c.nc.Close() }

// handshake sends h and reads the answer, which must be a valid WELCOME.
func (c *client) handshake(h wire.Hello) error {
	if h.MinVersion == 0 {
		h.MinVersion, h.MaxVersion = wire.Version, wire.Version
	}
	if h.Instance == "" {
		h.Instance = "sluice-conformance"
	}
	c.hello = h
	b, err := wire.AppendHello(nil, h)
	if err != nil {
		return fmt.Errorf("encode HELLO: %w", err)
	}
	if err := c.write(b); err != nil {
		return err
	}
	f, err := c.read()
	if err != nil {
		return fmt.Errorf("waiting for WELCOME: %w", err)
	}
	if c.welcome, err = c.st.Welcome(h, f); err != nil {
		return fmt.Errorf("answer to HELLO: %w", err)
	}
	return nil
}

func (c *client) write(b []byte) error {
	_ = c.nc.SetWriteDeadline(time.Now().Add(c.timeout))
	if _, err := c.nc.Write(b); err != nil {
		return fmt.Errorf("write to the drainer: %w", err)
	}
	return nil
}

func (c *client) read() (wire.Frame, error) {
	_ = c.nc.SetReadDeadline(time.Now().Add(c.timeout))
	return c.rd.ReadFrame()
}

// send writes DATA frame id with recs.
func (c *client) send(id uint64, recs []record.Record) error {
	if err := c.st.Sent(id); err != nil {
		return err
	}
	var err error
	if c.buf, err = wire.AppendData(c.buf[:0], id, recs, c.welcome.Limits()); err != nil {
		return fmt.Errorf("encode DATA %d: %w", id, err)
	}
	return c.write(c.buf)
}

// waitAck reads until an ACK covers id. A CLOSE is a *wire.PeerClosedError.
func (c *client) waitAck(id uint64) error {
	for {
		f, err := c.read()
		if err != nil {
			return fmt.Errorf("waiting for the ACK of frame %d: %w", id, err)
		}
		up, err := c.st.Receive(f)
		if err != nil {
			return fmt.Errorf("waiting for the ACK of frame %d: %w", id, err)
		}
		if up >= id {
			return nil
		}
	}
}

// sendAcked sends frame id and waits for its ACK.
func (c *client) sendAcked(id uint64, recs []record.Record) error {
	if err := c.send(id, recs); err != nil {
		return err
	}
	return c.waitAck(id)
}

// expectClose reads frames until a CLOSE, which must have code want; ACKs
// before it are allowed.
func (c *client) expectClose(want wire.CloseCode) error {
	for {
		f, err := c.read()
		if pc, ok := errors.AsType[*wire.PeerClosedError](err); ok {
			f, err = wire.Frame{Type: wire.TypeClose, Close: pc.Close}, nil
		}
		if err != nil {
			return fmt.Errorf("want CLOSE %s, got %w", want, err)
		}
		switch f.Type {
		case wire.TypeClose:
			if f.Close.Code != want {
				return fmt.Errorf("want CLOSE %s, got CLOSE %s (%q)", want, f.Close.Code, f.Close.Reason)
			}
			return nil
		case wire.TypeAck:
		default:
			return fmt.Errorf("want CLOSE %s, got a %v frame", want, f.Type)
		}
	}
}
