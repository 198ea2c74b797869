package drain

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Framings the drainer speaks, for Options.Framing.
const (
	// FramingLines is newline-delimited records: any complete line is a
	// record; bytes after the last newline when a connection ends are
	// discarded as a torn line.
	FramingLines = "lines"
)

// Defaults for the zero values of Options.
const (
	DefaultRotateBytes  = 64 << 20
	DefaultSocketMode   = os.FileMode(0o600)
	DefaultMaxLine      = 1 << 20
	DefaultDrainTimeout = 500 * time.Millisecond
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
	Out string
	// Stdout receives the output when Out is "-". Nil: os.Stdout.
	Stdout io.Writer
	// RotateBytes starts a new output file once the current one would pass
	// this size; files are cut only at line boundaries, so a single line
	// longer than RotateBytes gets a file of its own. Zero: 64 MiB.
	RotateBytes int64
	// SocketMode is the socket file's permission bits. Zero: 0600.
	SocketMode os.FileMode
	// MaxLine is the longest line (newline excluded) a connection may send;
	// a longer one closes that connection. Zero: 1 MiB.
	MaxLine int
	// PeerUIDs, when not empty, admits only peers whose process runs as one
	// of these user ids (checked with SO_PEERCRED); any other connection is
	// closed before it is read. Empty: every peer the socket's mode lets in.
	PeerUIDs []uint32
	// Framing is the protocol spoken on every connection. Empty: "lines".
	Framing string
	// DrainTimeout is how long shutdown keeps reading data already in flight
	// on each open connection before closing it. Zero: 500ms.
	DrainTimeout time.Duration
	// Logger receives the drainer's logs. Nil: logs are discarded.
	Logger *slog.Logger
	// Registerer receives the drainer's metrics. Nil: a private registry.
	Registerer prometheus.Registerer
}

// withDefaults returns opts with every zero value replaced by its default,
// or an error wrapping ErrInvalidOptions.
func (opts Options) withDefaults() (Options, error) {
	bad := func(format string, a ...any) (Options, error) {
		return opts, fmt.Errorf("drain: %w: %s", ErrInvalidOptions, fmt.Sprintf(format, a...))
	}
	if opts.Socket == "" {
		return bad("no socket path: set drain.socket or --socket")
	}
	if len(opts.Socket) > maxSocketPath {
		return bad("socket path %q is %d bytes; Unix socket paths must be at most %d: use a shorter path", opts.Socket, len(opts.Socket), maxSocketPath)
	}
	if opts.Out == "" {
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
	switch opts.Framing {
	case "":
		opts.Framing = FramingLines
	case FramingLines:
	default:
		return bad("unknown framing %q: the drainer speaks %q", opts.Framing, FramingLines)
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
