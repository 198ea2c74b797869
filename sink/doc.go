// Package sink writes sluice's output frames to the drainer's Unix socket.
//
// A Writer holds one shared connection for all pipeline workers and replaces
// it safely: this package exists because of the classic ingest bug in which
// one worker reconnects the shared socket while another is about to write to
// the old descriptor (see DESIGN.md, promise 1).
//
// # Shape
//
// The package is a connection core and two framings behind the unexported
// framing interface (framing.go), the way net/http keeps HTTP/2 behind its
// alternate transport:
//
//   - the core (writer.go, lease.go, connector.go) dials, runs the
//     framing's handshake, installs and retires leases, counts references,
//     checks generations, backs off (internal/backoff) and counts reconnects
//     by reason. It knows no framing: it calls framing's handshake, start,
//     send, end and close, and keeps the framing's per-connection state in
//     one opaque field of the lease (lease.fs);
//   - lines.go is the "lines" framing: a frame is its records' bytes, each
//     followed by '\n', written with one Write call; a frame is delivered
//     once written. Each connection has a reader that only notices a
//     drainer that went away;
//   - acked.go is the "acked" framing of docs/protocol.md: a HELLO/WELCOME
//     handshake on each connection, then frames go into a bounded window
//     (frames and bytes; Send waits while it is full), a per-connection
//     flusher writes them in frame id order through the core's leases, and a
//     per-connection ack reader settles them when the drainer acknowledges
//     them. Frames still in the window when a connection fails are re-sent,
//     in order and with their ids, before any newer frame on the next
//     connection; no acknowledgement progress for AckTimeout replaces the
//     connection (reason "ack_timeout"). A connection the sink ends on
//     purpose gets CLOSE NORMAL (replaced) or GOING_AWAY (Close) once its
//     last writer let go.
//
// # Leases
//
// The current connection lives in a lease: the net.Conn, its generation, a
// reference count and a retired flag. A writer takes a reference to the
// current lease under the core's lock (Writer.mu), writes its whole frame
// under the lease's own write lock (lease.wmu), and drops the reference. A
// reconnect swaps Writer.cur under Writer.mu and marks the old lease retired;
// the old connection is ended only when its reference count reaches zero
// (framing.end, then Close), so no write ever goes to a closed or recycled
// descriptor. The connector goroutine owns one reference for as long as a
// lease is current and drops it when it retires the lease.
//
// A writer whose write fails retires the lease only if it is still the
// current generation, so a stale writer never retires or closes a fresh
// connection. One goroutine, the connector, dials: writers that find no
// connection wait for it (that wait is the pipeline's backpressure).
// Requested reconnects (Reconnect, MaxConnAge) dial the new connection first
// and swap afterwards, so writers never wait for them.
//
// The connection's state is one status (writer.go documents its values and
// transitions): idle, connecting, connected, replacing, broken,
// reconnecting, closed.
//
// # Locks
//
// There are three kinds of lock: Writer.mu (the core's state and the
// leases' reference counts), lease.wmu (one per connection: serialises the
// writes to it) and acked.win.mu (the acked framing's window and the
// per-connection state in ackedConn). No two of them are ever held at once,
// so there is no lock order to keep: code holding one takes none of the
// others, and calls no framing method, no Options.Notify and no Send's done.
//
// lease.wmu is held across the Write of a frame (the lock exists to
// serialise that I/O, so frames never interleave), including a delay
// injected at sink.write.before. Writer.mu and acked.win.mu are never held
// across I/O; they are held across SetWriteDeadline and SetReadDeadline,
// which only arm timers. A Send's done is called with no lock of the sink
// held (acked: runSettled), so it may take the caller's own locks; it must
// still not block, since it runs on the sink's goroutines.
package sink
