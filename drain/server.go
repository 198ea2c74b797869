package drain

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sluice-dev/sluice/fault"
	"github.com/sluice-dev/sluice/internal/backoff"
	"github.com/sluice-dev/sluice/ledger"
	"github.com/sluice-dev/sluice/obs"
	"github.com/sluice-dev/sluice/record"
	"github.com/sluice-dev/sluice/wire"
)

// writeBefore is hit before each chunk of lines is written to the output; a
// delay there makes a slow drainer, an error closes the connection.
var writeBefore = fault.Register("drain.write.before", "drainer: before writing a chunk of received records to the output (delay: a slow drainer; error/close: drop the connection)")

// beforeAccept is hit before each Accept; a delay there leaves connections
// waiting in the listen backlog.
var beforeAccept = fault.Register("drain.accept.before", "drainer: before accepting the next connection (delay: connections wait in the listen backlog)")

// flushInterval bounds how long written lines may sit in the output buffer.
const flushInterval = 100 * time.Millisecond

// acceptBackoff paces retries after a failed Accept (EMFILE and the like).
var acceptBackoff = backoff.Policy{Min: 5 * time.Millisecond, Max: time.Second}

// Server is the reference drainer: it listens on a Unix socket, reads
// records from any number of connections at once and writes them to files
// or stdout. Create it with New, then Listen and Serve; Close (or the end of
// Serve's context) shuts it down.
type Server struct {
	opts   Options
	log    *slog.Logger
	m      *metrics
	handle func(*conn)  // reads one connection until it ends; chosen by Options.Framing
	own    wire.Welcome // acked: the server's side of the handshake

	// commitReqs hands acked frames to the committer. Connections send on
	// it; shutdown closes it once every connection has ended.
	commitReqs chan *pending
	// admits hands HELLO rewind checks to the committer (acked).
	admits chan *admission

	// ctx is cancelled when shutdown begins: it cuts injected delays short.
	ctx    context.Context
	cancel context.CancelFunc

	done     chan struct{} // closed when shutdown begins
	failed   chan struct{} // closed by fail
	failOnce sync.Once
	failErr  error // set once, before failed is closed

	closeOnce sync.Once
	closeErr  error // set inside closeOnce

	wg sync.WaitGroup // connection handlers and the flusher (the committer has its own done channel)

	mu       sync.Mutex
	out      *output            // guarded by mu; set by Listen, then immutable
	cm       *committer         // guarded by mu; acked: set by Listen, then immutable
	ln       net.Listener       // guarded by mu; set by Listen
	sockInfo os.FileInfo        // guarded by mu; the socket file Listen created
	conns    map[*conn]struct{} // guarded by mu; open connections
	closing  bool               // guarded by mu; shutdown has begun
	sealed   bool               // guarded by mu; shutdown has set the read deadlines: no more connections
	serving  bool               // guarded by mu; Serve was called
	accepted chan struct{}      // guarded by mu; closed when Serve's accept loop returns; nil before
	nextID   uint64             // guarded by mu

	errLogs obs.LimitedLog // by reason
}

// conn is one accepted connection, owned by its handler goroutine.
type conn struct {
	nc  net.Conn
	id  uint64
	log *slog.Logger

	dmu    sync.Mutex // serialises read-deadline changes with shutdown's
	stopAt time.Time  // guarded by dmu; shutdown's read deadline, zero before

	stamped []byte // lines framing with WriteReceived: the chunk with its prefixes; owned by the lines writer
}

// setReadDeadline sets the read deadline to t (zero: none), but never later
// than shutdown's.
func (c *conn) setReadDeadline(t time.Time) {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	if !c.stopAt.IsZero() && (t.IsZero() || t.After(c.stopAt)) {
		t = c.stopAt
	}
	c.nc.SetReadDeadline(t)
}

// stopBy sets shutdown's read deadline.
func (c *conn) stopBy(t time.Time) {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	c.stopAt = t
	c.nc.SetReadDeadline(t)
}

// stopping reports whether shutdown's read deadline has passed.
func (c *conn) stopping() bool {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	return !c.stopAt.IsZero() && !time.Now().Before(c.stopAt)
}

// New checks opts and returns a Server that is not yet listening. Errors
// wrap ErrInvalidOptions.
func New(opts Options) (*Server, error) {
	opts, err := opts.WithDefaults()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		opts:   opts,
		log:    opts.Logger.With(obs.KeyComponent, "drain"),
		m:      newMetrics(opts.Registerer),
		ctx:    ctx,
		cancel: cancel,
		done:   make(chan struct{}),
		failed: make(chan struct{}),
		conns:  map[*conn]struct{}{},
	}
	switch opts.Framing {
	case wire.FramingLines:
		s.handle = s.handleLines
	case wire.FramingAcked:
		s.handle = s.handleAcked
		s.own = wire.Welcome{Server: opts.ServerID, MaxFrameBytes: uint32(opts.MaxFrameBytes)}
		s.commitReqs = make(chan *pending, maxBatch)
		s.admits = make(chan *admission)
	}
	return s, nil
}

// Addr returns the socket path the Server listens (or will listen) on.
func (s *Server) Addr() string { return s.opts.Socket }

// Listen prepares the output and creates the socket with Options.SocketMode.
// A socket file left by a drainer that is gone is removed; if something
// answers on the path Listen fails with ErrInUse, and if the path is not a
// socket with ErrNotSocket, leaving the file alone. Listen after Close
// returns ErrClosed.
func (s *Server) Listen() error {
	s.mu.Lock()
	closing, listening := s.closing, s.ln != nil
	s.mu.Unlock()
	switch {
	case closing:
		return ErrClosed
	case listening:
		return fmt.Errorf("drain: Listen called twice on %s", s.opts.Socket)
	}
	var (
		out *output
		cm  *committer
	)
	if s.opts.Framing == wire.FramingAcked {
		cm = &committer{s: s, reqs: s.commitReqs, admits: s.admits, done: make(chan struct{}),
			inBatch: map[record.MsgID]struct{}{}, inFrame: map[record.MsgID]struct{}{}}
		lopts := ledger.Options{DedupSpans: s.opts.DedupSpans, JournalBytes: s.opts.JournalBytes, Logger: s.log}
		stateDir := s.opts.Out
		if s.opts.Store != nil {
			stateDir = s.opts.StateDir
		}
		if stateDir == "-" {
			cm.l = ledger.NewMemory(lopts)
		} else {
			if err := os.MkdirAll(stateDir, ledger.DirPerm); err != nil {
				return fmt.Errorf("drain: create output directory: %w", err)
			}
			l, err := ledger.Open(stateDir, lopts)
			if err != nil {
				return err
			}
			cm.l = l
			s.m.dedupSpans.Set(float64(l.Entries()))
			s.logFences(l)
		}
		if s.opts.Store != nil {
			if err := s.opts.Store.Recover(cm.l.Point()); err != nil {
				cm.l.Close()
				return fmt.Errorf("drain: recover the store to the last commit (%s, %d): %w", cm.l.Point().File, cm.l.Point().Length, err)
			}
			cm.store = s.opts.Store
		}
	}
	abandon := func() {
		if cm != nil {
			cm.l.Close()
		}
	}
	switch {
	case s.opts.Store != nil: // no output of the drainer's own
	case s.opts.Out == "-":
		out = newStdout(s.opts.Stdout)
	default:
		var err error
		if out, err = newDirOutput(s.opts.Out, s.opts.RotateBytes); err != nil {
			abandon()
			return err
		}
		out.onNewFile = s.onNewFile
	}
	ln, fi, err := listenSocket(s.opts.Socket, s.opts.SocketMode, func(msg string, args ...any) { s.log.Info(msg, args...) })
	if err != nil {
		abandon()
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing || s.ln != nil { // Close or another Listen ran meanwhile
		ln.Close()
		removeSocket(s.opts.Socket, fi)
		abandon()
		if s.closing {
			return ErrClosed
		}
		return fmt.Errorf("drain: Listen called twice on %s", s.opts.Socket)
	}
	s.out, s.ln, s.sockInfo = out, ln, fi
	if cm != nil {
		cm.out = out
		s.cm = cm
		go cm.run() // owned by the Server: shutdown closes its channel and waits
	}
	return nil
}

// onNewFile counts and logs output files; called under the output's lock.
func (s *Server) onNewFile(name string, rotated bool) {
	if rotated {
		s.m.rotated.Inc()
		s.log.Debug("output file rotated", obs.KeyFile, name)
		return
	}
	s.log.Debug("output file opened", obs.KeyFile, name)
}

// Serve accepts connections, one goroutine each, until ctx is done, Close
// is called or the output fails; it then shuts the Server down (see Close)
// and returns once that has finished. It returns nil after a requested
// shutdown, the output's error if writing failed, ErrClosed if Close ran
// before, and ErrServing on a second call. Serve calls Listen if it was not
// called yet.
func (s *Server) Serve(ctx context.Context) error {
	s.mu.Lock()
	switch {
	case s.closing:
		s.mu.Unlock()
		return ErrClosed
	case s.serving:
		s.mu.Unlock()
		return ErrServing
	}
	s.serving = true
	listening := s.ln != nil
	s.mu.Unlock()
	if !listening {
		if err := s.Listen(); err != nil {
			return err
		}
	}
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		s.shutdown()
		return s.result()
	}
	ln := s.ln
	s.accepted = make(chan struct{})
	lines := s.opts.Framing == wire.FramingLines // acked output is flushed by each commit
	if lines {
		s.wg.Add(1)
	}
	s.mu.Unlock()
	if lines {
		go s.flusher()
	}

	watched := make(chan struct{})
	go func() { // owned by Serve, which waits for it
		defer close(watched)
		select {
		case <-ctx.Done():
		case <-s.failed:
		case <-s.done:
			return
		}
		s.shutdown()
	}()
	s.acceptLoop(ln)
	close(s.accepted)
	s.shutdown() // waits if the watcher (or Close) started it
	<-watched
	return s.result()
}

func (s *Server) result() error {
	select {
	case <-s.failed:
		return s.failErr
	default:
		return nil
	}
}

// acceptLoop accepts connections until shutdown begins, then takes in the
// connections still waiting in the listen backlog (see shutdown) and
// returns.
func (s *Server) acceptLoop(ln net.Listener) {
	failures := 0 // failed Accepts in a row
	for {
		beforeAccept.Hit(s.ctx) // only delays are meaningful here
		if s.shuttingDown() {
			s.acceptBacklog(ln)
			return
		}
		nc, err := ln.Accept()
		if err != nil {
			if s.shuttingDown() {
				s.acceptBacklog(ln)
				return
			}
			if errors.Is(err, net.ErrClosed) {
				s.fail(fmt.Errorf("drain: listener on %s closed unexpectedly: %w", s.opts.Socket, err))
				return
			}
			failures++
			wait := acceptBackoff.Delay(failures)
			s.logLimited("accept", slog.LevelWarn, "accepting a connection failed; retrying", obs.KeyErr, err, obs.KeyRetryIn, wait, obs.KeyAttempts, failures)
			backoff.Sleep(s.ctx, wait) // s.ctx ends when shutdown begins
			continue
		}
		failures = 0
		s.register(nc)
	}
}

// acceptBacklog accepts, without waiting, every connection that completed
// before shutdown removed the socket file: closing the listener would reset
// them and lose what their peers already sent.
func (s *Server) acceptBacklog(ln net.Listener) {
	ul, ok := ln.(*net.UnixListener)
	if !ok {
		return
	}
	rc, err := ul.SyscallConn()
	if err != nil {
		return
	}
	var fds []int
	rc.Control(func(fd uintptr) { // the listener is non-blocking: EAGAIN when empty
		for len(fds) < unix.SOMAXCONN {
			nfd, _, err := unix.Accept4(int(fd), unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK)
			if err == unix.EINTR || err == unix.ECONNABORTED {
				continue
			}
			if err != nil {
				return
			}
			fds = append(fds, nfd)
		}
	})
	for _, fd := range fds {
		f := os.NewFile(uintptr(fd), s.opts.Socket)
		nc, err := net.FileConn(f)
		f.Close()
		if err != nil {
			s.log.Warn("taking in a waiting connection at shutdown failed; its data is lost", obs.KeyErr, err)
			continue
		}
		s.register(nc)
	}
	if len(fds) > 0 {
		s.log.Info("took in connections waiting at shutdown", "count", len(fds))
	}
}

// register starts a handler goroutine for nc, or closes nc if shutdown has
// already set the final read deadlines.
func (s *Server) register(nc net.Conn) {
	s.mu.Lock()
	if s.sealed {
		s.mu.Unlock()
		nc.Close()
		return
	}
	s.nextID++
	c := &conn{nc: nc, id: s.nextID}
	c.log = s.log.With(obs.KeyConn, c.id)
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	go s.serveConn(c)
}

// serveConn runs the framing's handler on c and cleans up after it.
func (s *Server) serveConn(c *conn) {
	defer s.wg.Done()
	s.m.open.Inc() // before conns: never a connection counted but neither open nor finished
	s.m.conns.Inc()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		c.nc.Close()
		s.m.open.Dec()
		c.log.Debug("connection closed")
	}()
	if err := s.checkPeer(c); err != nil {
		s.m.refused.Inc()
		s.connError(c, ReasonPeerUID, err)
		if s.opts.Framing == wire.FramingAcked {
			ac := &ackedConn{conn: c, s: s}
			ac.wmu.Lock()
			ac.sendCloseLocked(wire.Close{Code: wire.CodeUnauthorized, Reason: err.Error()})
			ac.wmu.Unlock()
			c.linger()
		}
		return
	}
	c.log.Debug("connection accepted")
	s.handle(c)
}

// checkPeer returns nil if c's peer may send, by Options.PeerUIDs and
// PeerGIDs.
func (s *Server) checkPeer(c *conn) error {
	if len(s.opts.PeerUIDs) == 0 && len(s.opts.PeerGIDs) == 0 {
		return nil
	}
	uc, ok := c.nc.(*net.UnixConn)
	if !ok {
		return fmt.Errorf("%w: cannot read the credentials of a %T", ErrPeerNotAllowed, c.nc)
	}
	rc, err := uc.SyscallConn()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrPeerNotAllowed, err)
	}
	var cred *unix.Ucred
	var credErr error
	if err := rc.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		credErr = err
	}
	if credErr != nil {
		return fmt.Errorf("%w: reading SO_PEERCRED: %w", ErrPeerNotAllowed, credErr)
	}
	if slices.Contains(s.opts.PeerUIDs, cred.Uid) || slices.Contains(s.opts.PeerGIDs, cred.Gid) {
		return nil
	}
	return fmt.Errorf("%w: uid %d gid %d (pid %d) is not among the allowed uids %v or gids %v; add it to the drainer's allowed peers or run the writer as an allowed user",
		ErrPeerNotAllowed, cred.Uid, cred.Gid, cred.Pid, s.opts.PeerUIDs, s.opts.PeerGIDs)
}

// flusher flushes the output at least every flushInterval, so lines are
// never held back in the buffer indefinitely.
func (s *Server) flusher() {
	defer s.wg.Done()
	t := time.NewTicker(flushInterval)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
			if err := s.out.flush(); err != nil {
				s.fail(err)
				return
			}
		}
	}
}

// fail records the first fatal error (the output cannot be written) and
// makes Serve shut down and return it.
func (s *Server) fail(err error) {
	s.failOnce.Do(func() {
		s.failErr = err
		s.log.Error("drainer failing: shutting down", obs.KeyErr, err)
		close(s.failed)
	})
}

// connError counts and logs (rate-limited) why c is being closed.
func (s *Server) connError(c *conn, reason string, err error) {
	s.m.connErrors.WithLabelValues(reason).Inc()
	s.logLimitedWith(c.log, reason, slog.LevelWarn, "closing connection", obs.KeyReason, reason, obs.KeyErr, err)
}

func (s *Server) logLimited(kind string, level slog.Level, msg string, args ...any) {
	s.logLimitedWith(s.log, kind, level, msg, args...)
}

func (s *Server) logLimitedWith(l *slog.Logger, kind string, level slog.Level, msg string, args ...any) {
	s.errLogs.Log(l, kind, level, msg, args...)
}

// Close shuts the Server down: it stops accepting, removes the socket file,
// lets each connection deliver what is already in flight (reading for at
// most Options.DrainTimeout more), then flushes and closes the output. It
// waits for every goroutine the Server started, is idempotent and safe to
// call concurrently with Serve, and returns the output's error, if any.
func (s *Server) Close() error {
	return s.shutdown()
}

// shutdown runs the shutdown once; concurrent callers wait for it.
//
// In flow order: mark shutdown begun (Serve and Listen refuse from now on,
// injected delays end); remove the socket file, so no new connection can
// arrive; wake Serve's accept loop, which takes in the connections still in
// the listen backlog and returns; close the listener; give every connection
// a read deadline DrainTimeout away, so each reads what is in flight and
// ends; wait for the handlers; close the output.
func (s *Server) shutdown() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closing = true
		close(s.done)
		s.cancel()
		ln, fi, out, accepted, cm := s.ln, s.sockInfo, s.out, s.accepted, s.cm
		s.mu.Unlock()
		var errs []error
		if ln != nil {
			errs = append(errs, removeSocket(s.opts.Socket, fi))
			if accepted != nil {
				if ul, ok := ln.(*net.UnixListener); ok {
					ul.SetDeadline(time.Now()) // wakes a blocked Accept
				}
				<-accepted
			}
			ln.Close()
		}
		s.mu.Lock()
		s.sealed = true
		deadline := time.Now().Add(s.opts.DrainTimeout)
		for c := range s.conns {
			c.stopBy(deadline)
		}
		s.mu.Unlock()
		s.wg.Wait()
		if cm != nil { // every connection has ended: nothing more to commit
			close(s.commitReqs)
			<-cm.done
		}
		if out != nil {
			errs = append(errs, out.close())
		}
		s.closeErr = errors.Join(errs...)
		s.log.Debug("drainer stopped")
	})
	return s.closeErr
}
