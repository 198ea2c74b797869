package wire

import (
	"errors"
	"fmt"
)

// Errors returned by the Append functions when a frame cannot be encoded.
// The Reader wraps the same sentinels in a *ProtocolError when it meets the
// corresponding violation in its input, so errors.Is works on both sides.
var (
	// ErrFrameTooLarge means a frame body would exceed, or exceeds, the
	// maximum frame size (Limits.MaxFrameBytes).
	ErrFrameTooLarge = errors.New("frame too large")
	// ErrTooManyRecords means a DATA frame would hold, or holds, more records
	// than Limits.MaxRecords.
	ErrTooManyRecords = errors.New("too many records in frame")
	// ErrTooManyStreams means a DATA frame would need more than
	// MaxStreamsPerFrame distinct (stream, epoch) table entries, or a HELLO
	// has more than MaxPositions stream positions.
	ErrTooManyStreams = errors.New("too many distinct streams in frame")
	// ErrBadPositions means a HELLO's stream position table lists one
	// (stream, epoch) twice, or is not empty in a HELLO of the version-1
	// layout (MaxVersion < 2), which has no table.
	ErrBadPositions = errors.New("invalid stream position table")
	// ErrBadString means a string field is too long, empty where it must not
	// be, or not valid UTF-8.
	ErrBadString = errors.New("invalid string field")
	// ErrZeroFrameID means a DATA frame has frame id 0, which is reserved.
	ErrZeroFrameID = errors.New("frame id 0 is reserved")
)

// Errors of the session checks (ServerState, ClientState) for mistakes of
// the side that calls them, as opposed to the peer's *ProtocolError.
var (
	// ErrBadAck means an acknowledgement is lower than a previous one or
	// beyond the last frame received. A client receiving such an ACK gets a
	// *ProtocolError with CodeBadAck that wraps it.
	ErrBadAck = errors.New("acknowledgement out of range")
	// ErrFrameOrder means a DATA frame id is not greater than the previous
	// one on the connection.
	ErrFrameOrder = errors.New("frame id not increasing")
	// ErrWindowFull means a DATA frame would exceed the window granted in
	// WELCOME, or no window was granted yet.
	ErrWindowFull = errors.New("window full")
	// ErrStreamRewound means a client's stream position is below what the
	// server committed for the same stream incarnation (see CheckPositions).
	// A *RewoundError unwraps to it.
	ErrStreamRewound = errors.New("stream rewound within one incarnation")
)

// CloseCode is the reason code of a CLOSE frame (docs/protocol.md, section 5).
// Its high byte groups codes: 0x00 normal, 0x01 handshake (the pairing or
// its state needs an operator: retrying cannot help until something
// changes), 0x02 framing, 0x03 session, 0x04 the sender's own failure.
type CloseCode uint16

// The close codes of protocol version 2: those of version 1 and
// CodeStreamRewound.
const (
	CodeNormal             CloseCode = 0x0000 // orderly end, no error
	CodeGoingAway          CloseCode = 0x0001 // sender shutting down or restarting
	CodeBadMagic           CloseCode = 0x0100 // HELLO magic is not "SLUICE"
	CodeUnsupportedVersion CloseCode = 0x0101 // no protocol version in common
	CodeHandshakeRequired  CloseCode = 0x0102 // first frame was not HELLO / WELCOME
	CodeBadHandshake       CloseCode = 0x0103 // handshake values unacceptable
	CodeUnauthorized       CloseCode = 0x0104 // peer credentials not allowed
	CodeStreamRewound      CloseCode = 0x0105 // a stream position is below what the server committed (version 2)
	CodeFrameTooLarge      CloseCode = 0x0200 // length field above the limit
	CodeBadChecksum        CloseCode = 0x0201 // CRC-32C mismatch
	CodeBadFlags           CloseCode = 0x0202 // reserved flag bit set
	CodeUnknownType        CloseCode = 0x0203 // frame type unknown
	CodeMalformed          CloseCode = 0x0204 // body does not follow its layout
	CodeTooManyRecords     CloseCode = 0x0205 // record count above the limit
	CodeUnexpectedFrame    CloseCode = 0x0300 // frame type not allowed in this direction or state
	CodeFrameOrder         CloseCode = 0x0301 // DATA frame id not increasing
	CodeBadAck             CloseCode = 0x0302 // ACK for a frame never sent, or going backwards
	CodeWindowExceeded     CloseCode = 0x0303 // too many unacknowledged frames
	CodeTimeout            CloseCode = 0x0304 // handshake or frame not completed in time, or no ACK progress in time
	CodeInternal           CloseCode = 0x0400 // the sender failed; retry later
)

var codeNames = map[CloseCode]string{
	CodeNormal:             "NORMAL",
	CodeGoingAway:          "GOING_AWAY",
	CodeBadMagic:           "BAD_MAGIC",
	CodeUnsupportedVersion: "UNSUPPORTED_VERSION",
	CodeHandshakeRequired:  "HANDSHAKE_REQUIRED",
	CodeBadHandshake:       "BAD_HANDSHAKE",
	CodeUnauthorized:       "UNAUTHORIZED",
	CodeStreamRewound:      "STREAM_REWOUND",
	CodeFrameTooLarge:      "FRAME_TOO_LARGE",
	CodeBadChecksum:        "BAD_CHECKSUM",
	CodeBadFlags:           "BAD_FLAGS",
	CodeUnknownType:        "UNKNOWN_TYPE",
	CodeMalformed:          "MALFORMED",
	CodeTooManyRecords:     "TOO_MANY_RECORDS",
	CodeUnexpectedFrame:    "UNEXPECTED_FRAME",
	CodeFrameOrder:         "FRAME_ORDER",
	CodeBadAck:             "BAD_ACK",
	CodeWindowExceeded:     "WINDOW_EXCEEDED",
	CodeTimeout:            "TIMEOUT",
	CodeInternal:           "INTERNAL",
}

// String returns the code's protocol name, e.g. "BAD_CHECKSUM", or
// "CODE_0x1234" for a code unknown to this version.
func (c CloseCode) String() string {
	if s, ok := codeNames[c]; ok {
		return s
	}
	return fmt.Sprintf("CODE_0x%04x", uint16(c))
}

// Known reports whether c is a close code of protocol version 2. A receiver
// treats an unknown code like CodeInternal.
func (c CloseCode) Known() bool {
	_, ok := codeNames[c]
	return ok
}

// ProtocolError is a violation of the protocol by the peer. Code is what the
// receiver sends in its CLOSE frame before closing the connection (see
// CloseFor); Msg says which check failed. Err, when set, is one of this
// package's sentinels (ErrFrameTooLarge, ErrTooManyRecords, ErrBadString...).
type ProtocolError struct {
	Code CloseCode
	Msg  string
	Err  error
}

// Error returns "wire: <CODE>: <msg>".
func (e *ProtocolError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("wire: %s: %s: %v", e.Code, e.Msg, e.Err)
	}
	return fmt.Sprintf("wire: %s: %s", e.Code, e.Msg)
}

// Unwrap returns the underlying sentinel, if any.
func (e *ProtocolError) Unwrap() error { return e.Err }

func protoErr(code CloseCode, msg string) *ProtocolError {
	return &ProtocolError{Code: code, Msg: msg}
}

// CloseFor returns the CLOSE frame a side sends after err ended its session:
// a *ProtocolError (anywhere in err's chain) gives its own code and message;
// nil gives CodeNormal; anything else gives CodeInternal with err's text.
// After a *PeerClosedError nothing is sent at all: the peer has gone.
func CloseFor(err error) Close {
	if err == nil {
		return Close{Code: CodeNormal}
	}
	if pe, ok := errors.AsType[*ProtocolError](err); ok {
		return Close{Code: pe.Code, Reason: pe.Error()}
	}
	return Close{Code: CodeInternal, Reason: err.Error()}
}
