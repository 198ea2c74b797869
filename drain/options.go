package drain

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-dev/sluice/ledger"
	"github.com/sluice-dev/sluice/wire"
)

// Defaults for the zero values of Options.
const (
	DefaultRotateBytes  = 64 << 20
	DefaultSocketMode   = os.FileMode(0o600)
	DefaultMaxLine      = 1 << 20
	DefaultDrainTimeout = 500 * time.Millisecond

	DefaultFrameTimeout    = 30 * time.Second
	DefaultAckWriteTimeout = 10 * time.Second
	DefaultDedupSpans      = ledger.DefaultDedupSpans
	DefaultJournalBytes    = ledger.DefaultJournalBytes
)

// maxSocketPath is the longest path a Unix socket address can hold on Linux
// (sun_path is 108 bytes including the terminating NUL).
const maxSocketPath = 107

// Options configures a Server. The zero value of each field means the
// default given in its comment.
type Options struct {
	// Socket is the Unix socket path to listen on. Required. Its directory is
	// created (0700) when missing.
	Socket string
	// Out is a directory for output files, created (0700) when missing, or
	// "-" for Stdout. Required.
	//
	// With the acked framing and a directory, records are fsynced before
	// they are acknowledged and the dedup state is kept durable in the
	// directory's journal (ledger.JournalName), consistent with the output. With
	// "-" (stdout), records are acknowledged once written to stdout, and the
	// dedup state is kept in memory only: a restarted drainer writes again
	// what a sender re-sends.
	Out string
	// Stdout receives the output when Out is "-". Nil: os.Stdout.
	Stdout io.Writer
	// RotateBytes starts a new output file once the current one would pass
	// this size; files are cut only at line boundaries, so a single line
	// longer than RotateBytes gets a file of its own. Zero: 64 MiB.
	RotateBytes int64
	// WriteIdentity (acked framing) prefixes each output line with the
	// record's identity and a tab: "stream:seq:index\t" followed by the
	// payload. False: each line is exactly the record's payload.
	WriteIdentity bool
	// WriteReceived prefixes each output line with the time the drainer
	// received it, in Unix nanoseconds, and a tab, before the identity
	// prefix of WriteIdentity: a latency measurement without polling lag
	// (sluice load uses it when present). In the lines framing that costs a
	// pass over each chunk to find its lines. False: no prefix.
	WriteReceived bool
	// SocketMode is the socket file's permission bits. Zero: 0600.
	SocketMode os.FileMode
	// MaxLine (lines framing) is the longest line (newline excluded) a
	// connection may send; a longer one closes that connection. The
	// configuration's drain.max_line_bytes. Zero: 1 MiB.
	MaxLine int
	// MaxFrameBytes (acked framing) is the largest DATA frame body granted
	// in WELCOME, wire.MaxHandshakeBytes to wire.HardMaxFrameBytes; a larger
	// frame closes the connection (FRAME_TOO_LARGE). The configuration's
	// drain.max_frame_bytes. Zero: wire.DefaultMaxFrameBytes (4 MiB).
	MaxFrameBytes int
	// PeerUIDs, when not empty, admits only peers whose process runs as one
	// of these user ids (checked with SO_PEERCRED); any other connection is
	// closed before it is read. Empty: every peer the socket's mode lets in.
	// When PeerGIDs is set too, a peer is admitted if its uid is in PeerUIDs
	// or its gid is in PeerGIDs. With the acked framing, a refused peer gets
	// a CLOSE frame (UNAUTHORIZED) with the reason first.
	PeerUIDs []uint32
	// PeerGIDs, when not empty, admits peers whose process runs with one of
	// these (primary) group ids; see PeerUIDs. Empty: no check by group.
	PeerGIDs []uint32
	// Framing is the protocol spoken on every connection: with
	// wire.FramingLines any complete line is a record, and bytes after the
	// last newline when a connection ends are discarded as a torn line;
	// with wire.FramingAcked (docs/protocol.md) records are acknowledged
	// once durable and duplicates are dropped by message identity.
	// Empty: wire.FramingLines.
	Framing wire.Framing
	// DrainTimeout is how long shutdown keeps reading data already in flight
	// on each open connection before closing it. Zero: 500ms.
	DrainTimeout time.Duration
	// FrameTimeout (acked framing) bounds the wait for a complete frame
	// once its first byte has arrived, and for the HELLO once the connection
	// is accepted: a slower peer is closed (reason slow_peer, CLOSE
	// TIMEOUT). An idle connection between frames is never timed out.
	// Zero: 30s.
	FrameTimeout time.Duration
	// AckWriteTimeout (acked framing) bounds the writing of one ACK; a
	// peer that does not read its acks for that long is closed (reason
	// ack_write_timeout). Zero: 10s.
	AckWriteTimeout time.Duration
	// DedupSpans (acked framing) bounds the dedup memory: per stream
	// incarnation, the drainer keeps a low-water mark (every sequence up
	// to it is committed) and at most DedupSpans ranges of committed
	// sequences above it, 16 bytes each (up to 32 with slice growth). Past the bound the lowest
	// range is forgotten: a redelivery of one of its messages is written
	// again (a duplicate), never dropped. Zero: 1 Mi ranges.
	DedupSpans int
	// AcceptRewind (acked framing) accepts a rewind of a stream instead of
	// refusing it. A rewind is a producer's HELLO whose position for a
	// stream incarnation is below what the drainer committed of it (the
	// queue lost the tail of its store, or was restored from a backup):
	// its new messages will reuse sequences the drainer holds. By default
	// the drainer refuses the connection with STREAM_REWOUND, records the
	// refusal (ledger.RewindName in the output directory) and refuses that
	// incarnation until a drainer started with AcceptRewind accepts it:
	// that forgets the committed sequences above the queue's last one, so
	// the queue's new messages are written, and lets the producer in. The
	// records of the lost messages stay in the output. Turn it on for one
	// start after a rewind, then off again. False: refuse.
	AcceptRewind bool
	// JournalBytes (acked framing, directory output) is the size past which
	// the dedup journal is compacted into a snapshot. Zero: 64 MiB.
	JournalBytes int64
	// Store (acked framing), when set, receives the records instead of
	// the output files: a drainer in Go that makes records durable its own
	// way (see Store). Out, Stdout, RotateBytes and WriteIdentity are then
	// unused, and StateDir is required. Nil: the output files (or stdout).
	Store Store
	// StateDir (with Store) is the directory of the dedup journal and the
	// rewind fences (created 0700 when missing), or "-" to keep the dedup
	// state in memory only (a restarted drainer writes again what a sender
	// re-sends). Keep it beside the store's data.
	StateDir string
	// ServerID is the identity sent in WELCOME. Empty: "drain@<host>/<pid>".
	ServerID string
	// Logger receives the drainer's logs. Nil: logs are discarded.
	Logger *slog.Logger
	// Registerer receives the drainer's metrics. Nil: a private registry.
	Registerer prometheus.Registerer
}

// WithDefaults returns opts with every zero value replaced by its default,
// or an error wrapping ErrInvalidOptions.
func (opts Options) WithDefaults() (Options, error) {
	bad := func(format string, a ...any) (Options, error) {
		return opts, fmt.Errorf("drain: %w: %s", ErrInvalidOptions, fmt.Sprintf(format, a...))
	}
	if opts.Socket == "" {
		return bad("no socket path: set drain.socket or --socket")
	}
	if len(opts.Socket) > maxSocketPath {
		return bad("socket path %q is %d bytes; Unix socket paths must be at most %d: use a shorter path", opts.Socket, len(opts.Socket), maxSocketPath)
	}
	switch {
	case opts.Store != nil && opts.Framing != wire.FramingAcked:
		return bad("a Store needs the acked framing (Framing %q): only it acknowledges what is durable", wire.FramingAcked)
	case opts.Store != nil && opts.StateDir == "":
		return bad("a Store needs StateDir, the directory of the dedup journal (or - for memory only)")
	case opts.Store == nil && opts.Out == "":
		return bad("no output: set drain.out or --out to a directory, or - for stdout")
	}
	if opts.Stdout == nil {
		opts.Stdout = os.Stdout
	}
	switch {
	case opts.RotateBytes == 0:
		opts.RotateBytes = DefaultRotateBytes
	case opts.RotateBytes < 0:
		return bad("rotate_bytes is %d; it must be positive (or 0 for the default, 64 MiB)", opts.RotateBytes)
	}
	switch {
	case opts.SocketMode == 0:
		opts.SocketMode = DefaultSocketMode
	case opts.SocketMode&^os.ModePerm != 0:
		return bad("socket_mode %#o has bits beyond the permission bits 0777", uint32(opts.SocketMode))
	case opts.SocketMode&0o600 != 0o600:
		return bad("socket_mode %#o does not give the owner read and write; the drainer's own user could not use the socket", uint32(opts.SocketMode))
	}
	switch {
	case opts.MaxLine == 0:
		opts.MaxLine = DefaultMaxLine
	case opts.MaxLine < 0:
		return bad("max line length is %d; it must be positive (or 0 for the default, 1 MiB)", opts.MaxLine)
	}
	switch {
	case opts.MaxFrameBytes == 0:
		opts.MaxFrameBytes = wire.DefaultMaxFrameBytes
	case opts.MaxFrameBytes < wire.MaxHandshakeBytes || opts.MaxFrameBytes > wire.HardMaxFrameBytes:
		return bad("max frame bytes is %d; it must be %d to %d (or 0 for the default, 4 MiB)", opts.MaxFrameBytes, wire.MaxHandshakeBytes, wire.HardMaxFrameBytes)
	}
	switch opts.Framing {
	case "":
		opts.Framing = wire.FramingLines
	case wire.FramingLines, wire.FramingAcked:
	default:
		return bad("unknown framing %q: the drainer speaks %q and %q", opts.Framing, wire.FramingLines, wire.FramingAcked)
	}
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{{"frame timeout", &opts.FrameTimeout, DefaultFrameTimeout}, {"ack write timeout", &opts.AckWriteTimeout, DefaultAckWriteTimeout}} {
		switch {
		case *d.v == 0:
			*d.v = d.def
		case *d.v < 0:
			return bad("%s is %v; it must be positive (or 0 for the default, %v)", d.name, *d.v, d.def)
		}
	}
	switch {
	case opts.DedupSpans == 0:
		opts.DedupSpans = DefaultDedupSpans
	case opts.DedupSpans < 0:
		return bad("dedup spans is %d; it must be positive (or 0 for the default, %d)", opts.DedupSpans, DefaultDedupSpans)
	}
	switch {
	case opts.JournalBytes == 0:
		opts.JournalBytes = DefaultJournalBytes
	case opts.JournalBytes < 0:
		return bad("journal bytes is %d; it must be positive (or 0 for the default, 64 MiB)", opts.JournalBytes)
	}
	if opts.ServerID == "" {
		host, _ := os.Hostname()
		opts.ServerID = fmt.Sprintf("drain@%s/%d", host, os.Getpid())
	}
	if len(opts.ServerID) > wire.MaxIdentityLen {
		opts.ServerID = opts.ServerID[:wire.MaxIdentityLen]
	}
	switch {
	case opts.DrainTimeout == 0:
		opts.DrainTimeout = DefaultDrainTimeout
	case opts.DrainTimeout < 0:
		return bad("drain timeout is %v; it must be positive", opts.DrainTimeout)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return opts, nil
}
