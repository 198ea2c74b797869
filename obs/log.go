package obs

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// Attribute keys shared by every component's logs.
const (
	KeyComponent = "component"
	KeyErr       = "err"
	KeyReason    = "reason"
	KeyPath      = "path"
	KeyPoint     = "point"  // a fault point's name
	KeyAction    = "action" // a fault action, as fault.Action.String writes it
	KeyRemote    = "remote" // an admin request's remote address
)

// NewLogger returns a logger writing to w in format "text" or "json" at level
// "debug", "info", "warn" or "error".
func NewLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	o := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "", "text":
		return slog.New(slog.NewTextHandler(w, o)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, o)), nil
	default:
		return nil, fmt.Errorf("log format %q: want text or json", format)
	}
}
