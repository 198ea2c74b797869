// Package drain is sluice's reference drainer: it listens on the Unix socket
// that the sink writes to, reads records from any number of connections at
// once, and writes them to size-rotated files or to stdout
// (`sluice drain --socket PATH --out DIR|-`).
//
// # Socket
//
// Listen creates the socket with owner-only permissions by default, with no
// moment at which the file is more permissive (the mode is set on the
// socket before bind). A socket file that nothing answers on is stale and is
// removed; one that answers belongs to a live drainer and Listen refuses with
// ErrInUse; a path that is not a socket is never touched (ErrNotSocket).
// Options.PeerUIDs can further restrict peers by user id (SO_PEERCRED).
//
// # Framing
//
// Each connection is read by the handler of Options.Framing. With "lines",
// every complete line is a record. Lines are handled in chunks: everything
// up to the last newline of a read is written to the output as one unit,
// under the output's lock, so lines from different connections never
// interleave. A partial line left when a connection ends (the peer died
// mid-record) is discarded and counted in sluice_drain_torn_lines_total. A
// line longer than Options.MaxLine closes that connection only.
//
// # Acked framing
//
// With Options.Framing "acked" each connection speaks the protocol of
// docs/protocol.md (package wire): HELLO/WELCOME, then DATA frames that
// the drainer acknowledges, cumulatively and in frame order, only once
// their records are durable. Records are deduplicated by message identity
// (stream, seq): the protocol sends all records of one message in one
// frame, so once one frame's records of a message are committed, later
// records with that (stream, seq) are duplicates, dropped and counted in
// sluice_drain_duplicates_total, and acknowledged as durable.
//
// Group commit: one committer goroutine takes every frame waiting from all
// connections as one batch (at most 1024 frames), drops duplicates, appends
// the rest to the output, fsyncs the output file (and the directory after a
// new file), appends a commit record to the dedup journal and fsyncs it,
// and only then hands the frames back for acknowledgement. One fsync pair
// covers every frame of the batch (sluice_drain_commit_frames,
// sluice_drain_fsync_seconds).
//
// Dedup journal: JournalName in the output directory, locked with flock
// (a second drainer on the same directory fails with ErrOutputInUse). It is
// a sequence of records, each a u32 body length, a u32 CRC-32C of the body
// and the body (big-endian):
//
//	snapshot  'S' "SLUICEDJ" u16 version(1) point, u32 streams,
//	          streams × (str name, u64 low, u32 n, n × (u64 lo, u64 hi))
//	commit    'C' point, u32 groups, groups × (str stream, u32 n, n × u64 seq)
//	point     str file, u64 length: the output is committed up to length
//	          bytes of file, and fully in every output file named before it
//	str       u16 length, bytes
//
// The journal starts with a snapshot; a commit adds the messages of one
// group commit. On start the drainer replays it, drops a torn last record
// (a commit cut short: never acknowledged), cuts the last committed file
// back to its committed length and removes output files named after it:
// bytes written and not committed (a crash between the output write and
// the journal commit) are not in the output, so the producer's re-send
// writes them once: no duplicate and no hole. A new journal takes every
// output file already there as committed. Past Options.JournalBytes the
// journal is compacted: a snapshot is written to a temporary file, synced
// and renamed over it.
//
// Dedup memory is bounded: per stream, a low-water mark (all sequences up
// to it committed) and at most Options.DedupSpans ranges of committed
// sequences above it (out-of-order completion, or the sparse sequences one
// drainer sees when several sluice instances share a consumer), 16 bytes
// each, up to 32 with slice growth: 16-32 MiB per stream at the default of
// 1 Mi ranges. Past the bound the lowest range is forgotten
// (sluice_drain_dedup_evicted_total): a redelivery of one of its messages
// is written a second time. The bound never raises the low-water mark over
// a gap, so a message is never dropped as a duplicate without having been
// written: the drainer errs on the side of a duplicate, never of a loss.
// There is one entry per stream name; stream names come from the queue's
// streams, and the peer is trusted (socket mode, PeerUIDs).
//
// With Out "-" records are acknowledged once flushed to stdout, and the
// dedup state lives in memory only.
//
// Output lines are the record payloads, or "stream:seq:index<TAB>payload"
// with Options.WriteIdentity. A newline or carriage return inside a payload
// is written as a space, so one record stays one line (for JSON, sluice's
// payload, that changes no meaning).
//
// Bad peers: a malformed handshake or frame, or an oversized one, gets the
// CLOSE code of docs/protocol.md section 9 (sluice_drain_protocol_errors_total
// by code, reason protocol_error); a peer with no complete frame (or HELLO)
// within Options.FrameTimeout after it started one gets CLOSE TIMEOUT
// (slow_peer; an idle connection between frames is not timed out); a peer
// that does not read its ACKs for Options.AckWriteTimeout is dropped
// (ack_write_timeout); a refused peer gets CLOSE UNAUTHORIZED. Only that
// connection ends. Frames received before the bad one are still committed
// and acknowledged first. At shutdown, frames already received are
// committed and acknowledged, then CLOSE GOING_AWAY is sent.
//
// # Output
//
// Records go to stdout or to files named
// sluice-<UTC time>Z-<sequence>.jsonl (0600, in a 0700 directory), whose
// name order is their write order; ReadDir reads them back. A file is cut at
// a line boundary before it would pass Options.RotateBytes, and is synced
// when it is finished. Output is buffered and flushed whenever a connection
// has nothing more waiting, at least every 100ms, and on Close.
//
// # Shutdown
//
// Close, or the end of Serve's context, removes the socket file (no new
// connections), takes in the connections already waiting in the listen
// backlog, lets each connection deliver what is already in flight (reading
// for at most Options.DrainTimeout), then flushes and closes the output.
//
// # Goroutines and locks
//
// Serve's caller owns the accept loop; the Server owns one goroutine per
// connection, the flusher (lines) and the committer (acked, started by
// Listen, stopped by shutdown after every connection ended); each acked
// connection's handler owns its acker goroutine. Close waits for all of
// them. Server.mu guards the connection set and lifecycle flags; output.mu
// serialises all output I/O and is held across it on purpose; conn.dmu
// serialises read-deadline changes with shutdown's; ackedConn.stMu guards
// the session state and ackedConn.wmu serialises socket writes (held across
// them on purpose). Lock order: Server.mu before conn.dmu (shutdown); no
// other two are ever held together.
//
// # Fault points
//
//	drain.write.before        before a chunk (lines) or a group commit (acked) is written
//	drain.accept.before       before each Accept
//	drain.commit.after_write  acked: after the output write+fsync, before the journal commit
//	drain.ack.before          acked: before an ACK is sent
package drain
