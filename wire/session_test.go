package wire_test

import (
	"errors"
	"net"
	"path/filepath"
	"testing"

	"github.com/sluice-dev/sluice/record"
	"github.com/sluice-dev/sluice/wire"
)

func helloFrame() wire.Frame {
	return wire.Frame{Type: wire.TypeHello, Hello: wire.Hello{MinVersion: 2, MaxVersion: 2, Window: 2, Instance: "c",
		Positions: []wire.StreamPosition{{Stream: "S", Epoch: 7, LastSeq: 100}}}}
}

func dataFrame(id uint64) wire.Frame {
	return wire.Frame{Type: wire.TypeData, Data: wire.Data{FrameID: id, Records: []record.Record{{ID: record.ID{Stream: "S", Epoch: 7, Seq: id}}}}}
}

func closeFrame(code wire.CloseCode) wire.Frame {
	return wire.Frame{Type: wire.TypeClose, Close: wire.Close{Code: code, Reason: "bye"}}
}

func TestServerState(t *testing.T) {
	t.Run("handshake required", func(t *testing.T) {
		var s wire.ServerState
		if _, err := s.Hello(dataFrame(1), wire.Welcome{}); errKind(err) != "HANDSHAKE_REQUIRED" {
			t.Fatalf("DATA first: %v", err)
		}
		if err := s.Receive(dataFrame(1)); errKind(err) != "HANDSHAKE_REQUIRED" {
			t.Fatalf("Receive before Hello: %v", err)
		}
		var pc *wire.PeerClosedError
		if _, err := s.Hello(closeFrame(wire.CodeGoingAway), wire.Welcome{}); !errors.As(err, &pc) || pc.Close.Code != wire.CodeGoingAway {
			t.Fatalf("CLOSE first: %v", err)
		}
	})
	t.Run("unsupported version", func(t *testing.T) {
		for _, r := range [][2]uint16{{1, 1}, {3, 4}} {
			var s wire.ServerState
			h := helloFrame()
			h.Hello.MinVersion, h.Hello.MaxVersion = r[0], r[1]
			if _, err := s.Hello(h, wire.Welcome{}); errKind(err) != "UNSUPPORTED_VERSION" {
				t.Fatalf("versions %d..%d: got %v", r[0], r[1], err)
			}
			if err := s.Receive(dataFrame(1)); errKind(err) != "HANDSHAKE_REQUIRED" {
				t.Fatalf("Receive after a refused HELLO: %v", err)
			}
		}
	})
	t.Run("session", func(t *testing.T) {
		var s wire.ServerState
		w, err := s.Hello(helloFrame(), wire.Welcome{Window: 10})
		if err != nil || w.Window != 2 {
			t.Fatalf("Hello: %+v, %v", w, err)
		}
		if _, err := s.Hello(helloFrame(), wire.Welcome{}); errKind(err) != "UNEXPECTED_FRAME" {
			t.Fatalf("second HELLO: %v", err)
		}
		for _, f := range []wire.Frame{helloFrame(), {Type: wire.TypeAck}, {Type: wire.TypeWelcome}} {
			if err := s.Receive(f); errKind(err) != "UNEXPECTED_FRAME" {
				t.Fatalf("%v after handshake: %v", f.Type, err)
			}
		}
		if err := s.Receive(dataFrame(5)); err != nil {
			t.Fatal(err)
		}
		if err := s.Receive(dataFrame(5)); errKind(err) != "FRAME_ORDER" {
			t.Fatalf("repeated id: %v", err)
		}
		if err := s.Receive(dataFrame(9)); err != nil {
			t.Fatal(err)
		}
		if err := s.Receive(dataFrame(10)); errKind(err) != "WINDOW_EXCEEDED" {
			t.Fatalf("third frame in a window of 2: %v", err)
		}
		if _, err := s.Ack(10); !errors.Is(err, wire.ErrBadAck) {
			t.Fatalf("ack beyond the last frame: %v", err)
		}
		if a, err := s.Ack(5); err != nil || a.UpTo != 5 || s.Unacked() != 1 {
			t.Fatalf("Ack(5): %+v, %v, unacked %d", a, err, s.Unacked())
		}
		if _, err := s.Ack(4); !errors.Is(err, wire.ErrBadAck) {
			t.Fatalf("ack going back: %v", err)
		}
		if err := s.Receive(dataFrame(10)); err != nil {
			t.Fatalf("window reopened: %v", err)
		}
		if _, err := s.Ack(10); err != nil || s.Unacked() != 0 {
			t.Fatalf("Ack(10): %v, unacked %d", err, s.Unacked())
		}
		var pc *wire.PeerClosedError
		if err := s.Receive(closeFrame(wire.CodeNormal)); !errors.As(err, &pc) || pc.Close.Reason != "bye" {
			t.Fatalf("CLOSE: %v", err)
		}
	})
}

func TestClientState(t *testing.T) {
	h := helloFrame().Hello
	welcome := wire.Frame{Type: wire.TypeWelcome, Welcome: wire.Welcome{Version: 2, MaxFrameBytes: 1 << 20, MaxRecords: 10, Window: 2}}
	t.Run("handshake", func(t *testing.T) {
		var c wire.ClientState
		if err := c.Sent(1); !errors.Is(err, wire.ErrWindowFull) || c.CanSend() {
			t.Fatalf("Sent before WELCOME: %v", err)
		}
		if _, err := c.Welcome(h, wire.Frame{Type: wire.TypeAck}); errKind(err) != "HANDSHAKE_REQUIRED" {
			t.Fatalf("ACK first: %v", err)
		}
		var pc *wire.PeerClosedError
		if _, err := c.Welcome(h, closeFrame(wire.CodeUnsupportedVersion)); !errors.As(err, &pc) || pc.Close.Code != wire.CodeUnsupportedVersion {
			t.Fatalf("CLOSE first: %v", err)
		}
		bad := welcome
		bad.Welcome.Window = 0
		if _, err := c.Welcome(h, bad); errKind(err) != "BAD_HANDSHAKE" {
			t.Fatalf("window 0: %v", err)
		}
		if _, err := c.Receive(wire.Frame{Type: wire.TypeAck}); errKind(err) != "HANDSHAKE_REQUIRED" {
			t.Fatalf("Receive before WELCOME: %v", err)
		}
	})
	t.Run("session", func(t *testing.T) {
		var c wire.ClientState
		if _, err := c.Welcome(h, welcome); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Welcome(h, welcome); errKind(err) != "UNEXPECTED_FRAME" {
			t.Fatalf("second WELCOME: %v", err)
		}
		ack := func(n uint64) wire.Frame { return wire.Frame{Type: wire.TypeAck, Ack: wire.Ack{UpTo: n}} }
		if up, err := c.Receive(ack(0)); err != nil || up != 0 {
			t.Fatalf("ACK 0 before any DATA: %v", err)
		}
		if _, err := c.Receive(ack(1)); errKind(err) != "BAD_ACK" || !errors.Is(err, wire.ErrBadAck) {
			t.Fatalf("ACK for a frame never sent: %v", err)
		}
		for _, id := range []uint64{3, 4} {
			if err := c.Sent(id); err != nil {
				t.Fatal(err)
			}
		}
		if err := c.Sent(5); !errors.Is(err, wire.ErrWindowFull) || c.CanSend() {
			t.Fatalf("third frame in a window of 2: %v", err)
		}
		if up, err := c.Receive(ack(3)); err != nil || up != 3 || c.Unacked() != 1 || !c.CanSend() {
			t.Fatalf("ACK 3: %d, %v, unacked %d", up, err, c.Unacked())
		}
		if err := c.Sent(4); !errors.Is(err, wire.ErrFrameOrder) {
			t.Fatalf("repeated id: %v", err)
		}
		if _, err := c.Receive(ack(2)); errKind(err) != "BAD_ACK" {
			t.Fatalf("ACK going back: %v", err)
		}
		if _, err := c.Receive(ack(3)); err != nil {
			t.Fatalf("repeated ACK: %v", err)
		}
		if _, err := c.Receive(dataFrame(1)); errKind(err) != "UNEXPECTED_FRAME" {
			t.Fatalf("DATA from the server: %v", err)
		}
	})
}

// TestSession_UnixSocket runs a whole session, client and server each with
// its Reader and state, over a real Unix socket: handshake, a window's worth
// of DATA, cumulative acks, and CLOSE.
func TestSession_UnixSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	const frames = 50
	got := make(chan []record.ID, 1)
	srvErr := make(chan error, 1)
	go func() {
		srvErr <- func() error {
			conn, err := ln.Accept()
			if err != nil {
				return err
			}
			defer conn.Close()
			rd := wire.NewReader(conn)
			rd.Limits.MaxFrameBytes = wire.MaxHandshakeBytes
			// The drainer has committed S of epoch 3 up to frames/2 before,
			// and S of an older epoch beyond the client's position.
			s := wire.ServerState{Committed: committedMap{{"S", 3}: frames / 2, {"S", 2}: 10 * frames}.get}
			f, err := rd.ReadFrame()
			if err != nil {
				return err
			}
			w, err := s.Hello(f, wire.Welcome{Window: 4, Server: "test"})
			if err != nil {
				return err
			}
			b, _ := wire.AppendWelcome(nil, w)
			if _, err := conn.Write(b); err != nil {
				return err
			}
			rd.Limits = w.Limits()
			var ids []record.ID
			for {
				f, err := rd.ReadFrame()
				if err != nil {
					return err
				}
				if err := s.Receive(f); err != nil {
					var pc *wire.PeerClosedError
					if errors.As(err, &pc) && pc.Close.Code == wire.CodeNormal {
						got <- ids
						return nil
					}
					return err
				}
				for _, r := range f.Data.Records {
					ids = append(ids, r.ID)
				}
				// Group commit: acknowledge every second frame.
				if s.Unacked() == 2 {
					a, err := s.Ack(f.Data.FrameID)
					if err != nil {
						return err
					}
					if _, err := conn.Write(wire.AppendAck(nil, a)); err != nil {
						return err
					}
				}
			}
		}()
	}()

	conn, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rd := wire.NewReader(conn)
	rd.Limits.MaxFrameBytes = wire.MaxHandshakeBytes
	h := wire.Hello{MinVersion: 1, MaxVersion: 2, Window: 8, Instance: "test-client",
		Positions: []wire.StreamPosition{{Stream: "S", Epoch: 3, LastSeq: frames}}}
	b, err := wire.AppendHello(nil, h)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write(b); err != nil {
		t.Fatal(err)
	}
	f, err := rd.ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	var c wire.ClientState
	w, err := c.Welcome(h, f)
	if err != nil {
		t.Fatal(err)
	}
	if w.Window != 4 || w.Version != 2 || w.Server != "test" {
		t.Fatalf("WELCOME %+v", w)
	}
	var want []record.ID
	var acked uint64
	for id := uint64(1); id <= frames; id++ {
		for !c.CanSend() {
			f, err := rd.ReadFrame()
			if err != nil {
				t.Fatal(err)
			}
			if acked, err = c.Receive(f); err != nil {
				t.Fatal(err)
			}
		}
		recs := []record.Record{{ID: record.ID{Stream: "S", Epoch: 3, Seq: id, Index: 0}, Data: []byte("{}")}, {ID: record.ID{Stream: "S", Epoch: 3, Seq: id, Index: 1}}}
		want = append(want, recs[0].ID, recs[1].ID)
		b, err := wire.AppendData(nil, id, recs, w.Limits())
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Sent(id); err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	for acked < frames {
		f, err := rd.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		if acked, err = c.Receive(f); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := conn.Write(wire.AppendClose(nil, wire.Close{Code: wire.CodeNormal})); err != nil {
		t.Fatal(err)
	}
	if err := <-srvErr; err != nil {
		t.Fatalf("server: %v", err)
	}
	ids := <-got
	if len(ids) != len(want) {
		t.Fatalf("server got %d records, want %d", len(ids), len(want))
	}
	for i := range ids {
		if ids[i] != want[i] {
			t.Fatalf("record %d: %v, want %v", i, ids[i], want[i])
		}
	}
}
