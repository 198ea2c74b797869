package wire

import "fmt"

// DefaultWindow is the window a server grants when neither side asks for a
// particular one: 64 unacknowledged DATA frames.
const DefaultWindow = 64

// Accept is the server's half of the handshake (docs/protocol.md, section
// 6). Given the client's HELLO and a description of the server in own, it
// returns the WELCOME to send. In own, MaxFrameBytes, MaxRecords and Window
// are the server's limits (zero: DefaultMaxFrameBytes, DefaultMaxRecords,
// DefaultWindow) and Server is its identity; own.Version is not used, since
// this package speaks Version only.
//
// It grants the client's wishes for frame size and window when they are
// within the server's limits, and the limits otherwise. When the HELLO is
// unacceptable it returns a *ProtocolError with CodeUnsupportedVersion (its
// range does not include Version; the message names the versions both sides
// speak) or CodeBadHandshake, for the server to send as CLOSE. It does not
// look at h.Positions: that is CheckPositions' part, which ServerState.Hello
// runs after it.
func Accept(h Hello, own Welcome) (Welcome, error) {
	if h.MinVersion == 0 || h.MaxVersion < h.MinVersion {
		return Welcome{}, protoErr(CodeBadHandshake, fmt.Sprintf("HELLO version range %d..%d is empty", h.MinVersion, h.MaxVersion))
	}
	if Version < h.MinVersion || Version > h.MaxVersion {
		return Welcome{}, protoErr(CodeUnsupportedVersion, fmt.Sprintf("client speaks versions %d..%d, server speaks versions %d..%d", h.MinVersion, h.MaxVersion, Version, Version))
	}
	w := Welcome{
		Version:       Version,
		MaxFrameBytes: own.MaxFrameBytes,
		MaxRecords:    own.MaxRecords,
		Window:        own.Window,
		Server:        own.Server,
	}
	if w.MaxFrameBytes == 0 {
		w.MaxFrameBytes = DefaultMaxFrameBytes
	}
	w.MaxFrameBytes = min(max(w.MaxFrameBytes, MaxHandshakeBytes), HardMaxFrameBytes)
	if h.MaxFrameBytes != 0 && h.MaxFrameBytes < w.MaxFrameBytes {
		w.MaxFrameBytes = max(h.MaxFrameBytes, MaxHandshakeBytes)
	}
	if w.MaxRecords == 0 {
		w.MaxRecords = DefaultMaxRecords
	}
	if w.Window == 0 {
		w.Window = DefaultWindow
	}
	if h.Window != 0 && h.Window < w.Window {
		w.Window = h.Window
	}
	return w, nil
}

// CheckWelcome is the client's check of the server's answer to its HELLO h
// (docs/protocol.md, section 6): the chosen version must be in h's range and
// be Version, the only one this package's codec speaks, and the limits
// usable. It returns nil or a *ProtocolError with CodeBadHandshake, for the
// client to send as CLOSE.
func CheckWelcome(h Hello, w Welcome) error {
	switch {
	case w.Version < h.MinVersion || w.Version > h.MaxVersion:
		return protoErr(CodeBadHandshake, fmt.Sprintf("WELCOME chose version %d outside %d..%d", w.Version, h.MinVersion, h.MaxVersion))
	case w.Version != Version:
		return protoErr(CodeBadHandshake, fmt.Sprintf("WELCOME chose version %d, this client speaks version %d only", w.Version, Version))
	case w.MaxFrameBytes < MaxHandshakeBytes || w.MaxFrameBytes > HardMaxFrameBytes:
		return protoErr(CodeBadHandshake, fmt.Sprintf("WELCOME max_frame_bytes %d outside %d..%d", w.MaxFrameBytes, MaxHandshakeBytes, HardMaxFrameBytes))
	case w.MaxRecords == 0:
		return protoErr(CodeBadHandshake, "WELCOME max_records is 0")
	case w.Window == 0:
		return protoErr(CodeBadHandshake, "WELCOME window is 0")
	}
	return nil
}
