package wire

import "fmt"

// Framing is how records travel on the drainer's socket. The sink, the
// drainer and the configuration all use this one type.
type Framing string

// The framings.
const (
	// FramingLines is newline-delimited records, one JSON value a line.
	// Any reader works; a record counts as delivered once its bytes were
	// written to the socket.
	FramingLines Framing = "lines"
	// FramingAcked is this package's protocol (docs/protocol.md): binary
	// frames acknowledged by the drainer once its records are durable.
	FramingAcked Framing = "acked"
)

// Framings lists every framing, for help texts and validation.
var Framings = []Framing{FramingLines, FramingAcked}

// ParseFraming returns the framing named s; "" is FramingLines. Any other
// name is an error that lists the valid ones.
func ParseFraming(s string) (Framing, error) {
	switch Framing(s) {
	case "", FramingLines:
		return FramingLines, nil
	case FramingAcked:
		return FramingAcked, nil
	}
	return "", fmt.Errorf("unknown framing %q: want %q or %q", s, FramingLines, FramingAcked)
}
