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
// connection and the flusher, and Close waits for all of them. Server.mu
// guards the connection set and lifecycle flags; output.mu serialises all
// output I/O and is held across it on purpose. The two are never held
// together, so there is no lock order to keep.
//
// # Fault points
//
//	drain.write.before   before a chunk is written to the output
//	drain.accept.before  before each Accept
package drain
