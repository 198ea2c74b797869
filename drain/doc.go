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
// Each connection is read by the handler of Options.Framing (wire.Framing).
// With wire.FramingLines, every complete line is a record. Lines are
// handled in chunks: everything up to the last newline of a read is
// written to the output as one unit,
// under the output's lock, so lines from different connections never
// interleave. A partial line left when a connection ends (the peer died
// mid-record) is discarded and counted in sluice_drain_torn_lines_total. A
// line longer than Options.MaxLine closes that connection only.
//
// # Acked framing
//
// With Options.Framing wire.FramingAcked each connection speaks the
// protocol of docs/protocol.md (package wire): HELLO/WELCOME, then DATA
// frames that the drainer acknowledges, cumulatively and in frame order,
// only once their records are durable. Records are deduplicated by message
// identity (record.MsgID: stream, epoch, seq): the protocol sends all
// records of one message in one frame, so once one frame's records of a
// message are committed, later records with that identity are duplicates,
// dropped and counted in sluice_drain_duplicates_total, and acknowledged
// as durable. A stream of another epoch (created again) is a different
// message space: its sequences are never taken for the old one's.
//
// Group commit: one committer goroutine takes every frame waiting from all
// connections as one batch (at most 1024 frames), drops duplicates, appends
// the rest to the output, fsyncs the output file (and the directory after a
// new file), appends a commit record to the dedup journal and fsyncs it,
// and only then hands the frames back for acknowledgement. One fsync pair
// covers every frame of the batch (sluice_drain_commit_frames,
// sluice_drain_fsync_seconds).
//
// What is committed lives in package ledger: the dedup journal beside the
// output files (ledger.JournalName; a second drainer on the same directory
// fails with ErrOutputInUse), its format, and the recovery rules Listen
// applies through ledger.Open: a torn last journal record is dropped, and
// output written but never committed (a crash between the output write and
// the journal commit) is cut off, so the producer's re-send writes it
// once: no duplicate and no hole. Dedup memory is bounded by
// Options.DedupSpans per stream incarnation; past the bound the oldest
// ranges are forgotten (sluice_drain_dedup_evicted_total), which can
// cause a duplicate, never a loss. The journal is compacted past
// Options.JournalBytes.
//
// With Out "-" records are acknowledged once flushed to stdout, and the
// dedup state lives in memory only.
//
// Output lines are the record payloads, or "stream:seq:index<TAB>payload"
// with Options.WriteIdentity. A newline or carriage return inside a payload
// is written as a space, so one record stays one line (for JSON, sluice's
// payload, that changes no meaning).
//
// Rewinds: a HELLO's stream positions are checked against the ledger on
// the committer goroutine, which owns it (rewind.go). A position below the
// committed sequence of its (stream, epoch) is a queue that went back: the
// connection gets CLOSE STREAM_REWOUND and the incarnation is fenced
// durably (ledger.Fence), so it stays refused after the queue's sequences
// pass the committed one again and across restarts; with
// Options.AcceptRewind the drainer instead forgets the sequences above the
// queue's last one (ledger.Forget) and admits it. Counted in
// sluice_drain_rewinds_total{outcome}.
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
// sluice-<UTC time>Z-<sequence>.jsonl (0600, in a 0700 directory; the
// format is package ledger's), whose name order is their write order;
// ledger.ReadCommitted reads back what was committed. A file is cut at
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
// them on purpose); the committer's ledger.Ledger is its own (the ledger's
// lock is taken only inside its methods, with no drain lock held). Lock
// order: Server.mu before conn.dmu (shutdown); no other two are ever held
// together.
//
// # Fault points
//
//	drain.write.before        before a chunk (lines) or a group commit (acked) is written
//	drain.accept.before       before each Accept
//	drain.commit.after_write  acked: after the output write+fsync, before the journal commit
//	drain.ack.before          acked: before an ACK is sent
package drain
