package drain_test

import (
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/record"
	"github.com/sluice-dev/sluice/wire"
)

// ackedClient is a minimal acked producer built on package wire, for tests.
type ackedClient struct {
	t     testing.TB
	nc    net.Conn
	rd    *wire.Reader
	hello wire.Hello
	st    wire.ClientState
	w     wire.Welcome
	buf   []byte
}

// dialAcked connects to path and completes the handshake as instance.
func dialAcked(t testing.TB, path, instance string) *ackedClient {
	t.Helper()
	a, err := tryDialAcked(path, instance)
	if err != nil {
		t.Fatal(err)
	}
	a.t = t
	t.Cleanup(func() { a.nc.Close() })
	return a
}

func tryDialAcked(path, instance string) (*ackedClient, error) {
	return tryDialAckedAt(path, instance, nil)
}

// tryDialAckedAt connects to path and completes the handshake as instance,
// with stream positions ps in the HELLO.
func tryDialAckedAt(path, instance string, ps []wire.StreamPosition) (*ackedClient, error) {
	nc, err := net.Dial("unix", path)
	if err != nil {
		return nil, err
	}
	a := &ackedClient{nc: nc, rd: wire.NewReader(nc)}
	a.hello = wire.Hello{MinVersion: wire.Version, MaxVersion: wire.Version, Instance: instance, Positions: ps}
	b, err := wire.AppendHello(nil, a.hello)
	if err != nil {
		nc.Close()
		return nil, err
	}
	if _, err := nc.Write(b); err != nil {
		nc.Close()
		return nil, err
	}
	nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	f, err := a.rd.ReadFrame()
	if err == nil {
		a.w, err = a.st.Welcome(a.hello, f)
	}
	nc.SetReadDeadline(time.Time{})
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("handshake: %w", err)
	}
	return a, nil
}

// send writes DATA frame id with recs.
func (a *ackedClient) send(id uint64, recs []record.Record) error {
	if err := a.st.Sent(id); err != nil {
		return err
	}
	return a.sendUnchecked(id, recs)
}

// sendUnchecked writes DATA frame id without the client's window check.
func (a *ackedClient) sendUnchecked(id uint64, recs []record.Record) error {
	var err error
	a.buf, err = wire.AppendData(a.buf[:0], id, recs, a.w.Limits())
	if err != nil {
		return err
	}
	_, err = a.nc.Write(a.buf)
	return err
}

// readAck reads the next frame, which must be an ACK, and returns its up_to.
// A CLOSE gives a *wire.PeerClosedError.
func (a *ackedClient) readAck(timeout time.Duration) (uint64, error) {
	a.nc.SetReadDeadline(time.Now().Add(timeout))
	defer a.nc.SetReadDeadline(time.Time{})
	f, err := a.rd.ReadFrame()
	if err != nil {
		return 0, err
	}
	return a.st.Receive(f)
}

// waitAck reads ACKs until one covers id.
func (a *ackedClient) waitAck(id uint64) {
	a.t.Helper()
	for {
		up, err := a.readAck(30 * time.Second)
		if err != nil {
			a.t.Fatalf("waiting for ACK %d: %v", id, err)
		}
		if up >= id {
			return
		}
	}
}

// sendAcked sends frame id and waits for its ACK.
func (a *ackedClient) sendAcked(id uint64, recs []record.Record) {
	a.t.Helper()
	if err := a.send(id, recs); err != nil {
		a.t.Fatalf("send frame %d: %v", id, err)
	}
	a.waitAck(id)
}

// readClose reads frames until a CLOSE and returns it; ACKs are skipped.
func readClose(t testing.TB, nc net.Conn) wire.Close {
	t.Helper()
	rd := wire.NewReader(nc)
	nc.SetReadDeadline(time.Now().Add(30 * time.Second))
	for {
		f, err := rd.ReadFrame()
		if err != nil {
			t.Fatalf("reading until CLOSE: %v", err)
		}
		switch f.Type {
		case wire.TypeClose:
			return f.Close
		case wire.TypeWelcome, wire.TypeAck:
		default:
			t.Fatalf("unexpected %v frame from the drainer", f.Type)
		}
	}
}

// readCloseAfterHandshake is readClose for an ackedClient.
func (a *ackedClient) readClose() wire.Close {
	a.t.Helper()
	a.nc.SetReadDeadline(time.Now().Add(30 * time.Second))
	defer a.nc.SetReadDeadline(time.Time{})
	for {
		f, err := a.rd.ReadFrame()
		if err != nil {
			a.t.Fatalf("reading until CLOSE: %v", err)
		}
		if f.Type == wire.TypeClose {
			return f.Close
		}
		if f.Type != wire.TypeAck {
			a.t.Fatalf("unexpected %v frame from the drainer", f.Type)
		}
	}
}

// msg returns the n records of message seq of stream.
func msg(stream string, seq uint64, n int) []record.Record {
	recs := make([]record.Record, n)
	for i := range recs {
		recs[i] = record.Record{
			ID:   record.ID{Stream: stream, Seq: seq, Index: uint32(i)},
			Data: fmt.Appendf(nil, `{"s":%q,"seq":%d,"i":%d}`, stream, seq, i),
		}
	}
	return recs
}

// msgs concatenates the records of messages first..last of stream, n each.
func msgs(stream string, first, last uint64, n int) []record.Record {
	var recs []record.Record
	for seq := first; seq <= last; seq++ {
		recs = append(recs, msg(stream, seq, n)...)
	}
	return recs
}

// lines returns the payloads of recs, as ReadCommitted returns them.
func lines(recs ...[]record.Record) []string {
	var out []string
	for _, rs := range recs {
		for _, r := range rs {
			out = append(out, string(r.Data))
		}
	}
	return out
}

// isPeerClose reports whether err is a CLOSE from the drainer with code.
func isPeerClose(err error, code wire.CloseCode) bool {
	var pc *wire.PeerClosedError
	return errors.As(err, &pc) && pc.Close.Code == code
}
