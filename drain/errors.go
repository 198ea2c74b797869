package drain

import (
	"errors"

	"github.com/sluice-dev/sluice/ledger"
)

// ErrInUse is wrapped by Listen when another process (usually another
// drainer) accepts connections on the socket path. Nothing is removed.
var ErrInUse = errors.New("another drainer is listening on the socket")

// ErrNotSocket is wrapped by Listen when the socket path exists and is not a
// Unix socket. The file is left untouched.
var ErrNotSocket = errors.New("the socket path exists and is not a Unix socket")

// ErrClosed is returned by Listen and Serve once Close has been called.
var ErrClosed = errors.New("drain: server is closed")

// ErrServing is returned by Serve when another Serve call is running or has
// run on the same Server.
var ErrServing = errors.New("drain: Serve was already called on this server")

// ErrInvalidOptions is wrapped by New for options it cannot run with.
var ErrInvalidOptions = errors.New("invalid drain options")

// ErrLineTooLong is the reason a connection is closed when one of its lines
// exceeds Options.MaxLine.
var ErrLineTooLong = errors.New("line longer than the maximum")

// ErrPeerNotAllowed is the reason a connection is closed when its peer's
// user id is not in Options.PeerUIDs (nor its group id in Options.PeerGIDs).
var ErrPeerNotAllowed = errors.New("peer user id not allowed")

// ErrOutputInUse is wrapped by Listen when another drainer with the acked
// framing holds the output directory's dedup journal. It is
// ledger.ErrInUse, so errors.Is matches either.
var ErrOutputInUse = ledger.ErrInUse

// ErrSlowPeer is the reason an acked connection is closed when a frame (or
// the HELLO) does not arrive complete within Options.FrameTimeout.
var ErrSlowPeer = errors.New("peer too slow: no complete frame in time")

// ErrAckTimeout is the reason an acked connection is closed when an ACK
// cannot be written within Options.AckWriteTimeout: the peer does not read.
var ErrAckTimeout = errors.New("peer does not read its acknowledgements")
