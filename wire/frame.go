package wire

import "github.com/sluice-dev/sluice/record"

// Version is the protocol version this package speaks, and the only one:
// MinVersion and MaxVersion of a Hello it builds are both Version, and a
// server built on it answers a HELLO whose range does not include Version
// with CLOSE UNSUPPORTED_VERSION. Version 2 added the stream incarnation
// (epoch) to DATA's stream table and the stream positions to HELLO
// (docs/protocol.md, section 7).
const Version = 2

// Sizes and limits of protocol version 2 (docs/protocol.md, section 8).
const (
	// HeaderLen is the size of the fixed frame header: length u32, crc u32,
	// type u8, flags u8.
	HeaderLen = 10
	// DefaultMaxFrameBytes is the default limit on a frame body: 4 MiB.
	DefaultMaxFrameBytes = 4 << 20
	// DefaultMaxRecords is the default limit on records in one DATA frame.
	DefaultMaxRecords = 65536
	// MaxHandshakeBytes is the body limit a server applies to the first frame
	// of a connection, before it knows the peer speaks this protocol, and
	// the smallest max_frame_bytes a WELCOME may grant. A HELLO, stream
	// positions included, is never larger.
	MaxHandshakeBytes = 4096
	// HardMaxFrameBytes is the largest frame body any peer may accept.
	HardMaxFrameBytes = 1<<31 - 1
	// MaxStreamsPerFrame is the largest stream table of a DATA frame.
	MaxStreamsPerFrame = 65535
	// MaxPositions is the largest stream position table of a HELLO. The
	// whole HELLO body must also fit in MaxHandshakeBytes: 64 positions do
	// with stream names of up to 40 bytes and any instance name.
	MaxPositions = 64
	// MaxStreamLen is the longest stream name, in bytes.
	MaxStreamLen = 255
	// MaxIdentityLen is the longest instance or server identity, in bytes.
	MaxIdentityLen = 255
	// MaxReasonLen is the longest CLOSE reason text, in bytes.
	MaxReasonLen = 1024
	// RecordOverhead is the encoded size of a record without its payload:
	// stream index u16, seq u64, index u32, length u32.
	RecordOverhead = 18
)

// Magic opens every HELLO body.
const Magic = "SLUICE"

// FrameType is the type byte of a frame header.
type FrameType uint8

// The frame types of protocol version 2 (the same as in version 1).
const (
	TypeHello   FrameType = 0x01 // client → server, first frame
	TypeWelcome FrameType = 0x02 // server → client, answer to HELLO
	TypeData    FrameType = 0x03 // client → server, a batch of records
	TypeAck     FrameType = 0x04 // server → client, cumulative acknowledgement
	TypeClose   FrameType = 0x05 // either side, last frame
)

// String returns the type's protocol name, e.g. "DATA".
func (t FrameType) String() string {
	switch t {
	case TypeHello:
		return "HELLO"
	case TypeWelcome:
		return "WELCOME"
	case TypeData:
		return "DATA"
	case TypeAck:
		return "ACK"
	case TypeClose:
		return "CLOSE"
	}
	return "TYPE_" + hexByte(uint8(t))
}

func hexByte(b uint8) string {
	const digits = "0123456789abcdef"
	return "0x" + string([]byte{digits[b>>4], digits[b&15]})
}

// Limits bound what a side accepts (Reader) or produces (AppendData).
// A zero field means the default.
type Limits struct {
	MaxFrameBytes int // largest frame body; zero means DefaultMaxFrameBytes
	MaxRecords    int // most records in a DATA frame; zero means DefaultMaxRecords
}

func (l Limits) frameBytes() int {
	if l.MaxFrameBytes <= 0 {
		return DefaultMaxFrameBytes
	}
	return min(l.MaxFrameBytes, HardMaxFrameBytes)
}

func (l Limits) records() int {
	if l.MaxRecords <= 0 {
		return DefaultMaxRecords
	}
	return l.MaxRecords
}

// Hello is the client's first frame.
type Hello struct {
	MinVersion    uint16 // lowest version the client speaks, >= 1
	MaxVersion    uint16 // highest version the client speaks, >= MinVersion
	MaxFrameBytes uint32 // DATA body size the client would like to send; 0: no preference
	Window        uint32 // unacknowledged frames the client would like in flight; 0: no preference
	Instance      string // producer instance identity, 1..MaxIdentityLen bytes
	// Positions is where the client's queue stands, per stream incarnation
	// it is about to send records from, at connect time: at most
	// MaxPositions entries, each (Stream, Epoch) at most once. Only a
	// HELLO with MaxVersion >= 2 has the table (the layout of version 1
	// ends with Instance); a nil and an empty table encode alike and
	// decode as nil.
	Positions []StreamPosition
}

// StreamPosition is the state of one stream incarnation in the client's
// queue when it connects. A server compares it with what it has committed
// (CheckPositions): a LastSeq below the highest sequence committed for the
// same Stream and Epoch means the queue went back within one incarnation,
// and the new messages that reuse those sequences would be dropped as
// duplicates.
//
// It is its own type, rather than a record.MsgID with Seq set to the last
// sequence, because it names no message: LastSeq is 0 for an empty stream,
// and it is compared, never deduplicated by.
type StreamPosition struct {
	Stream string // the stream's name, 1..MaxStreamLen bytes, as in record.ID
	Epoch  uint64 // the stream's incarnation, as in record.ID; 0: the client cannot tell
	// LastSeq is the stream's last sequence in the queue (JetStream: the
	// stream's, not a consumer's, last sequence), read at connect time,
	// after every message the client will re-send was fetched: so it is at
	// least the sequence of every record the client has sent or will send
	// from this incarnation, unless the queue lost messages.
	LastSeq uint64
}

// Welcome is the server's answer to an acceptable Hello. Its values bind
// the client for the rest of the session.
type Welcome struct {
	Version       uint16 // the chosen protocol version
	MaxFrameBytes uint32 // largest frame body the server accepts, >= MaxHandshakeBytes
	MaxRecords    uint32 // most records per DATA frame, >= 1
	Window        uint32 // most unacknowledged DATA frames in flight, >= 1
	Server        string // server identity, 0..MaxIdentityLen bytes
}

// Limits returns the limits the client must respect when encoding DATA.
func (w Welcome) Limits() Limits {
	return Limits{MaxFrameBytes: int(min(w.MaxFrameBytes, HardMaxFrameBytes)), MaxRecords: int(w.MaxRecords)}
}

// Data is a DATA frame: a batch of records under a frame id. Each record's
// ID travels whole: Stream and Epoch in the frame's stream table, Seq and
// Index with the record.
type Data struct {
	FrameID uint64 // >= 1, strictly increasing on a connection
	Records []record.Record
}

// Ack is a cumulative acknowledgement: every DATA frame with FrameID <= UpTo
// sent on the connection is durable.
type Ack struct {
	UpTo uint64
}

// Close ends a session.
type Close struct {
	Code   CloseCode
	Reason string // for logs; at most MaxReasonLen bytes
}

// Frame is one decoded frame: Type says which of the other fields is set.
type Frame struct {
	Type    FrameType
	Hello   Hello   // TypeHello
	Welcome Welcome // TypeWelcome
	Data    Data    // TypeData
	Ack     Ack     // TypeAck
	Close   Close   // TypeClose
}
