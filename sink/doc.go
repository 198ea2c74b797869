// Package sink writes sluice's output frames to the drainer's Unix socket.
//
// A Writer holds one shared connection for all pipeline workers and replaces
// it safely: this package exists because of the classic ingest bug in which
// one worker reconnects the shared socket while another is about to write to
// the old descriptor (see DESIGN.md, promise 1).
//
// # Leases
//
// The current connection lives in a lease: the net.Conn, its generation, a
// reference count and a retired flag. A writer takes a reference to the
// current lease under the writers' lock (Writer.mu), writes its whole frame
// under the lease's own write lock, and drops the reference. A reconnect
// swaps Writer.cur under Writer.mu and marks the old lease retired; the old
// net.Conn is closed only when its reference count reaches zero, so no write
// ever goes to a closed or recycled descriptor. The connector goroutine owns
// one reference for as long as a lease is current and drops it when it
// retires the lease.
//
// A writer whose write fails retires the lease only if it is still the
// current generation, so a stale writer never retires or closes a fresh
// connection. One goroutine, the connector, dials: writers that find no
// connection wait for it (that wait is the pipeline's backpressure).
// Requested reconnects (Reconnect, MaxConnAge) dial the new connection first
// and swap afterwards, so writers never wait for them.
//
// # Lock order
//
//	lease.wmu  →  Writer.mu  →  Writer.win.mu
//
// A writer holds lease.wmu across its Write (the lock exists to serialise
// that I/O, so frames never interleave) and may take Writer.mu under it to
// retire the lease after a failure. Writer.mu is never held across I/O, and
// lease.wmu is never acquired while holding Writer.mu. Writer.win.mu (the
// acked window) is taken under Writer.mu by install, fail and Close, and
// alone everywhere else; nothing is acquired while holding it, and it is
// never held across I/O (only across SetReadDeadline, which does none).
//
// # Framing
//
// conn.go and lease.go manage connections and know nothing of framing.
// lines.go implements the "lines" framing: a frame is its records' bytes,
// each followed by '\n', written with one Write call; a frame is delivered
// once written. acked.go implements the "acked" framing of
// docs/protocol.md: after a HELLO/WELCOME handshake on each connection,
// frames go into a bounded window (frames and bytes; Send waits while it is
// full), a per-connection flusher writes them in frame id order through the
// same leases, and a per-connection ack reader settles them when the
// drainer acknowledges them. Frames still in the window when a connection
// fails are re-sent, in order and with their ids, before any newer frame on
// the next connection; no acknowledgement progress for AckTimeout replaces
// the connection (reason "ack_timeout").
package sink
