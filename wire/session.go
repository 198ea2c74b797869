package wire

import "fmt"

// PeerClosedError reports that the peer ended the session with a CLOSE
// frame. The receiver logs it and closes the connection without sending
// anything more.
type PeerClosedError struct {
	Close Close
}

// Error returns "wire: peer closed: <CODE>: <reason>".
func (e *PeerClosedError) Error() string {
	return fmt.Sprintf("wire: peer closed: %s: %q", e.Close.Code, e.Close.Reason)
}

// ServerState checks the frames a server (drainer) receives on one
// connection against the session rules of docs/protocol.md (handshake first,
// the rewind check, increasing frame ids, the window) and builds its
// acknowledgements. The zero value is a fresh connection that checks no
// stream positions; a drainer sets Committed before the handshake. It is not
// safe for concurrent use.
type ServerState struct {
	// Committed, when set, is asked by Hello for the highest sequence the
	// server committed per stream incarnation of the HELLO's positions
	// (see CheckPositions); nil skips the rewind check.
	Committed Committed

	welcomed bool
	welcome  Welcome
	last     uint64   // id of the last DATA frame received
	acked    uint64   // up_to of the last ACK built
	pending  []uint64 // ids of DATA frames received and not acknowledged, oldest first
}

// Hello checks the connection's first frame, which must be a HELLO, and
// returns the WELCOME to send (see Accept for own). A CLOSE gives a
// *PeerClosedError; any other frame, or a second call, a *ProtocolError with
// CodeHandshakeRequired or CodeUnexpectedFrame; an unacceptable HELLO the
// *ProtocolError of Accept; then, with Committed set, a stream position
// below what the server committed the *ProtocolError of CheckPositions
// (CodeStreamRewound). On any error the handshake has not happened: the
// server sends CloseFor(err) and closes.
func (s *ServerState) Hello(f Frame, own Welcome) (Welcome, error) {
	switch {
	case s.welcomed:
		return Welcome{}, protoErr(CodeUnexpectedFrame, "second HELLO")
	case f.Type == TypeClose:
		return Welcome{}, &PeerClosedError{Close: f.Close}
	case f.Type != TypeHello:
		return Welcome{}, protoErr(CodeHandshakeRequired, f.Type.String()+" before HELLO")
	}
	w, err := Accept(f.Hello, own)
	if err != nil {
		return Welcome{}, err
	}
	if err := CheckPositions(f.Hello.Positions, s.Committed); err != nil {
		return Welcome{}, err
	}
	s.welcomed, s.welcome = true, w
	return w, nil
}

// Receive checks a frame read after the handshake. A DATA frame must have an
// id greater than the previous one (else CodeFrameOrder) and fit in the
// window (else CodeWindowExceeded); a CLOSE gives a *PeerClosedError; any
// other type a *ProtocolError with CodeUnexpectedFrame, or
// CodeHandshakeRequired before Hello succeeded.
func (s *ServerState) Receive(f Frame) error {
	if !s.welcomed {
		if f.Type == TypeClose {
			return &PeerClosedError{Close: f.Close}
		}
		return protoErr(CodeHandshakeRequired, f.Type.String()+" before HELLO")
	}
	switch f.Type {
	case TypeData:
		id := f.Data.FrameID
		if id <= s.last {
			return protoErr(CodeFrameOrder, fmt.Sprintf("DATA frame %d after frame %d", id, s.last))
		}
		if uint64(len(s.pending)) >= uint64(s.welcome.Window) {
			return protoErr(CodeWindowExceeded, fmt.Sprintf("DATA frame %d with %d frames unacknowledged, window %d", id, len(s.pending), s.welcome.Window))
		}
		s.last = id
		s.pending = append(s.pending, id)
		return nil
	case TypeClose:
		return &PeerClosedError{Close: f.Close}
	}
	return protoErr(CodeUnexpectedFrame, f.Type.String()+" from the client")
}

// Ack returns the ACK that tells the client every frame with id <= upTo
// received on this connection is durable, and frees their room in the window.
// upTo must not be lower than the previous ACK nor higher than the last frame
// received: that would be a bug in the server, reported as an error wrapping
// ErrBadAck, and no ACK must be sent.
func (s *ServerState) Ack(upTo uint64) (Ack, error) {
	if upTo < s.acked || upTo > s.last {
		return Ack{}, fmt.Errorf("wire: ack up to %d outside %d..%d: %w", upTo, s.acked, s.last, ErrBadAck)
	}
	s.acked = upTo
	s.pending = dropUpTo(s.pending, upTo)
	return Ack{UpTo: upTo}, nil
}

// Unacked returns the number of DATA frames received and not acknowledged.
func (s *ServerState) Unacked() int { return len(s.pending) }

func dropUpTo(ids []uint64, upTo uint64) []uint64 {
	n := 0
	for n < len(ids) && ids[n] <= upTo {
		n++
	}
	if n == len(ids) {
		return ids[:0] // reuse the array from its start
	}
	return ids[n:]
}

// ClientState checks the frames a client (sluice's sink) receives on one
// connection and tracks its window. The zero value is a fresh connection. It
// is not safe for concurrent use: a sink whose writers and ack reader run on
// different goroutines guards it with a mutex.
type ClientState struct {
	welcomed bool
	welcome  Welcome
	last     uint64   // id of the last DATA frame sent
	acked    uint64   // up_to of the last ACK received
	pending  []uint64 // ids of DATA frames sent and not acknowledged, oldest first
}

// Welcome checks the server's answer to the HELLO h the client sent: the
// first frame must be a WELCOME that CheckWelcome accepts. A CLOSE gives a
// *PeerClosedError (for instance with CodeUnsupportedVersion); any other
// frame a *ProtocolError with CodeHandshakeRequired, or CodeUnexpectedFrame
// on a second call.
func (c *ClientState) Welcome(h Hello, f Frame) (Welcome, error) {
	switch {
	case c.welcomed:
		return Welcome{}, protoErr(CodeUnexpectedFrame, "second WELCOME")
	case f.Type == TypeClose:
		return Welcome{}, &PeerClosedError{Close: f.Close}
	case f.Type != TypeWelcome:
		return Welcome{}, protoErr(CodeHandshakeRequired, f.Type.String()+" before WELCOME")
	}
	if err := CheckWelcome(h, f.Welcome); err != nil {
		return Welcome{}, err
	}
	c.welcomed, c.welcome = true, f.Welcome
	return f.Welcome, nil
}

// CanSend reports whether the handshake is done and the window has room for
// another DATA frame.
func (c *ClientState) CanSend() bool {
	return c.welcomed && uint64(len(c.pending)) < uint64(c.welcome.Window)
}

// Sent records that the DATA frame frameID was written to the connection.
// It fails, recording nothing, before the handshake or when the window is
// full (ErrWindowFull), or when frameID is not greater than the previous one
// (ErrFrameOrder): all bugs in the client, which must not send the frame.
func (c *ClientState) Sent(frameID uint64) error {
	switch {
	case !c.welcomed:
		return fmt.Errorf("wire: DATA frame %d before WELCOME: %w", frameID, ErrWindowFull)
	case frameID <= c.last:
		return fmt.Errorf("wire: DATA frame %d after frame %d: %w", frameID, c.last, ErrFrameOrder)
	case !c.CanSend():
		return fmt.Errorf("wire: DATA frame %d with %d unacknowledged: %w", frameID, len(c.pending), ErrWindowFull)
	}
	c.last = frameID
	c.pending = append(c.pending, frameID)
	return nil
}

// Receive checks a frame read after the handshake. An ACK returns its up_to:
// every frame with an id up to it is durable. An ACK lower than the previous
// one or beyond the last frame sent gives a *ProtocolError with CodeBadAck; a
// CLOSE a *PeerClosedError; any other frame CodeUnexpectedFrame, or
// CodeHandshakeRequired before Welcome succeeded.
func (c *ClientState) Receive(f Frame) (uint64, error) {
	if !c.welcomed {
		if f.Type == TypeClose {
			return 0, &PeerClosedError{Close: f.Close}
		}
		return 0, protoErr(CodeHandshakeRequired, f.Type.String()+" before WELCOME")
	}
	switch f.Type {
	case TypeAck:
		up := f.Ack.UpTo
		if up < c.acked || up > c.last {
			return 0, &ProtocolError{Code: CodeBadAck, Msg: fmt.Sprintf("ACK up to %d, want %d..%d", up, c.acked, c.last), Err: ErrBadAck}
		}
		c.acked = up
		c.pending = dropUpTo(c.pending, up)
		return up, nil
	case TypeClose:
		return 0, &PeerClosedError{Close: f.Close}
	}
	return 0, protoErr(CodeUnexpectedFrame, f.Type.String()+" from the server")
}

// Unacked returns the number of DATA frames sent and not acknowledged.
func (c *ClientState) Unacked() int { return len(c.pending) }
