package drain

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sluice-dev/sluice/obs"
)

// testHookAfterBind, when set, runs right after the socket file is created
// and before its mode is finalised (export_test.go).
var testHookAfterBind func(path string)

// probeTimeout bounds the dial that tells a live socket from a stale one.
const probeTimeout = 2 * time.Second

// socketDirMode is the mode of a socket directory Listen creates.
const socketDirMode = 0o700

// lockTimeout bounds the wait for the socket directory's lock.
const lockTimeout = 10 * time.Second

// listenSocket creates the listening socket at path with mode bits mode.
//
// The socket's own inode is chmod-ed before bind, and Linux creates the file
// with those bits (minus the umask), so there is no moment at which the file
// is more permissive than mode; a chmod after bind then restores bits the
// umask removed. An existing path is handled under an exclusive flock on its
// directory, so two drainers starting together cannot both decide a socket is
// stale and remove each other's: a socket that answers is ErrInUse, one that
// refuses connections is stale and removed, anything else is refused.
func listenSocket(path string, mode os.FileMode, logf func(msg string, args ...any)) (net.Listener, os.FileInfo, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, socketDirMode); err != nil {
		return nil, nil, fmt.Errorf("drain: create socket directory: %w", err)
	}
	unlock, err := lockDir(dir)
	if err != nil {
		return nil, nil, err
	}
	defer unlock()
	if err := clearStale(path, logf); err != nil {
		return nil, nil, err
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("drain: create socket: %w", err)
	}
	f := os.NewFile(uintptr(fd), path) // owns fd from here on
	defer f.Close()                    // net.FileListener dups it
	if err := unix.Fchmod(fd, uint32(mode.Perm())); err != nil {
		return nil, nil, fmt.Errorf("drain: set socket mode before bind: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		if errors.Is(err, unix.EADDRINUSE) {
			return nil, nil, fmt.Errorf("drain: listen on %s: %w: the path was created again while starting; retry", path, ErrInUse)
		}
		return nil, nil, fmt.Errorf("drain: bind socket %s: %w", path, err)
	}
	bound := true
	defer func() {
		if bound { // an error after bind: do not leave a dead socket behind
			os.Remove(path)
		}
	}()
	if testHookAfterBind != nil {
		testHookAfterBind(path)
	}
	if err := os.Chmod(path, mode.Perm()); err != nil {
		return nil, nil, fmt.Errorf("drain: set socket mode: %w", err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, nil, fmt.Errorf("drain: stat new socket: %w", err)
	}
	if err := unix.Listen(fd, unix.SOMAXCONN); err != nil {
		return nil, nil, fmt.Errorf("drain: listen on %s: %w", path, err)
	}
	ln, err := net.FileListener(f)
	if err != nil {
		return nil, nil, fmt.Errorf("drain: listen on %s: %w", path, err)
	}
	bound = false
	return ln, fi, nil
}

// clearStale makes path free for bind: nothing there, or a stale socket that
// it removes. See listenSocket.
func clearStale(path string, logf func(msg string, args ...any)) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("drain: check socket path: %w", err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("drain: listen on %s: %w (it is %s); refusing to replace it: move it away or choose another socket path",
			path, ErrNotSocket, describeType(fi.Mode()))
	}
	c, err := net.DialTimeout("unix", path, probeTimeout)
	if err == nil {
		c.Close()
		return fmt.Errorf("drain: listen on %s: %w (it accepted a connection); stop that drainer first or choose another socket path", path, ErrInUse)
	}
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("drain: remove stale socket %s: %w", path, err)
		}
		logf("removed stale socket left by a drainer that is gone", obs.KeySocket, path)
		return nil
	case errors.Is(err, fs.ErrNotExist):
		return nil // removed meanwhile
	default:
		return fmt.Errorf("drain: listen on %s: cannot tell whether the existing socket is in use (%w); not removing it: check what owns it and remove it if stale", path, err)
	}
}

func describeType(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m.IsRegular():
		return "a regular file"
	case m&fs.ModeSymlink != 0:
		return "a symbolic link"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	default:
		return "a file of type " + m.Type().String()
	}
}

// lockDir takes an exclusive flock on dir until unlock is called. Where the
// file system does not support flock the lock is skipped: it only guards
// against two drainers starting at the same instant.
func lockDir(dir string) (unlock func(), err error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("drain: open socket directory %s: %w", dir, err)
	}
	deadline := time.Now().Add(lockTimeout)
	for {
		err = unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { unix.Close(fd) }, nil // closing the descriptor releases the lock
		}
		if err != unix.EWOULDBLOCK && err != unix.EINTR { // ENOLCK, EOPNOTSUPP: proceed unlocked
			unix.Close(fd)
			return func() {}, nil
		}
		if time.Now().After(deadline) {
			unix.Close(fd)
			return nil, fmt.Errorf("drain: socket directory %s stayed locked for %v (another drainer starting?); retry, or check which process holds a lock on it", dir, lockTimeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// removeSocket removes path if it is still the socket fi describes, so a
// drainer never removes a socket that another one created since.
func removeSocket(path string, fi os.FileInfo) error {
	cur, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("drain: check socket before removing it: %w", err)
	}
	if !os.SameFile(cur, fi) {
		return nil
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("drain: remove socket %s: %w", path, err)
	}
	return nil
}
