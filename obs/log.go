package obs

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// Attribute keys shared by every component's logs: one set, so that a key
// means the same thing in every line sluice writes. Parts log with these
// constants, never with their own spelling of a key.
const (
	KeyComponent = "component"
	KeyErr       = "err"
	KeyReason    = "reason"
	KeyHint      = "hint"   // what the operator can do about it
	KeyPath      = "path"   // a file or socket path
	KeyPoint     = "point"  // a fault point's name
	KeyAction    = "action" // a fault action, as fault.Action.String writes it
	KeyRemote    = "remote" // an admin request's remote address

	KeyURL      = "url"      // a queue URL, credentials redacted
	KeyStream   = "stream"   // a queue stream name
	KeySubject  = "subject"  // a queue subject
	KeySeq      = "seq"      // a message's stream sequence
	KeyMessages = "messages" // a count of queue messages
	KeyRecords  = "records"  // a count of records
	KeyBytes    = "bytes"    // a count of bytes
	KeyFile     = "file"     // an output or dump file name

	KeyFraming    = "framing"         // the socket framing, lines or acked
	KeySocket     = "socket"          // the drainer's socket path
	KeyConn       = "conn"            // a drainer connection's number
	KeyGen        = "generation"      // a sink connection's generation
	KeyAttempts   = "failed_attempts" // failures in a row before this line
	KeyDowntime   = "downtime"        // how long no connection was usable
	KeyCode       = "code"            // a protocol CLOSE code
	KeyPeerReason = "peer_reason"     // the reason text the peer sent with CLOSE
	KeySuppressed = "suppressed"      // log lines of this kind dropped by rate limiting since the last one
	KeyTimeout    = "timeout"         // a configured time limit
	KeyRetryIn    = "retry_in"        // the wait before the next attempt
	KeyDelivered  = "delivered"       // how many times the queue delivered a message

	KeyConsumer          = "consumer"            // a durable consumer's name
	KeyEpoch             = "epoch"               // a stream incarnation (record.MsgID.Epoch)
	KeyLastSeq           = "last_seq"            // the queue's last sequence of a stream (a HELLO stream position)
	KeyCommitted         = "committed"           // the highest sequence a drainer committed of a stream incarnation
	KeyLimit             = "limit"               // a configured bound (the runtime's memory limit)
	KeyDataDir           = "data_dir"            // the embedded server's data directory
	KeyInProcess         = "in_process"          // a connection to the embedded server, without TCP
	KeyReconnects        = "reconnects"          // reconnects of a connection so far
	KeySubjects          = "subjects"            // the subjects a stream captures
	KeyDeadLetterSubject = "dead_letter_subject" // the dead-letter subject
	KeyAckWait           = "ack_wait"            // the consumer's ack wait
	KeyMaxAckPending     = "max_ack_pending"     // the consumer's max ack pending
	KeyMaxBytes          = "max_bytes"           // a stream's byte limit
	KeyMaxAge            = "max_age"             // a stream's age limit
	KeyDiscard           = "discard"             // what a full stream does: new or old
	KeyChanges           = "changes"             // settings changed, as "key old -> new"
	KeyFatal             = "fatal"               // a nats-server log line at fatal level
	KeyPending           = "pending"             // queue messages not yet delivered (a consumer's num_pending)
	KeyAckPending        = "ack_pending"         // queue messages delivered, not yet acknowledged
	KeyRedelivered       = "redelivered"         // unacknowledged queue messages delivered more than once
	KeyStored            = "stored"              // messages a stream holds
	KeyOldestAge         = "oldest_unacked_age"  // how long the oldest unacknowledged message has waited

	KeyDir     = "dir"     // a directory (the flight recorder's dumps)
	KeyWindow  = "window"  // a window: the flight recorder's, or the acked framing's granted frames
	KeyWorkers = "workers" // the pipeline's worker count
	KeyOut     = "out"     // the drainer's output directory or "-"
	KeySignal  = "signal"  // the signal that started or aborted shutdown

	KeyInstance      = "instance"        // the producer identity sent in HELLO
	KeyServer        = "server"          // the drainer identity sent in WELCOME
	KeyVersion       = "version"         // a protocol or file-format version
	KeyFromVersion   = "from_version"    // the version a file was written in
	KeyFrameID       = "frame_id"        // an acked DATA frame's id
	KeyFrameBytes    = "frame_bytes"     // an encoded frame's size
	KeyMaxFrameBytes = "max_frame_bytes" // the largest frame body a drainer accepts
	KeyMaxRecords    = "max_records"     // the most records a drainer accepts in one frame
	KeyUnacked       = "unacked_frames"  // frames sent and not yet acknowledged
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
