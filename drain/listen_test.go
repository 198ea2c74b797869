package drain_test

import (
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/internal/testkit"

	"github.com/sluice-dev/sluice/drain"
)

func newServer(t *testing.T, opts drain.Options) *drain.Server {
	t.Helper()
	if opts.Out == "" {
		opts.Out = "-"
		opts.Stdout = io.Discard
	}
	opts.Logger = quiet
	srv, err := drain.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

func TestListen_StaleSocketRemoved(t *testing.T) {
	path := filepath.Join(testkit.ShortDir(t), "d.sock")
	// A listener that dies without removing its socket file.
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	if fi, err := os.Lstat(path); err != nil || fi.Mode().Type() != os.ModeSocket {
		t.Fatalf("test setup: no stale socket: %v", err)
	}
	r := start(t, drain.Options{Socket: path})
	c := dial(t, path)
	io.WriteString(c, "{}\n")
	c.Close()
	testkit.WaitFor(t, 10*time.Second, func() error {
		if r.Stats().Records != 1 {
			return errors.New("record not drained over the replaced socket")
		}
		return nil
	})
}

func TestListen_LiveDrainerInUse(t *testing.T) {
	first := start(t, drain.Options{})
	before, err := os.Lstat(first.Addr())
	if err != nil {
		t.Fatal(err)
	}
	second := newServer(t, drain.Options{Socket: first.Addr()})
	err = second.Listen()
	if !errors.Is(err, drain.ErrInUse) {
		t.Fatalf("second Listen = %v, want ErrInUse", err)
	}
	t.Logf("error as users see it: %v", err)
	after, err := os.Lstat(first.Addr())
	if err != nil || !os.SameFile(before, after) {
		t.Fatalf("the live drainer's socket was replaced or removed: %v", err)
	}
	// Closing the refused server must not remove the live one's socket.
	second.Close()
	c := dial(t, first.Addr())
	io.WriteString(c, "{}\n")
	c.Close()
	testkit.WaitFor(t, 10*time.Second, func() error {
		if first.Stats().Records != 1 {
			return errors.New("the first drainer stopped working")
		}
		return nil
	})
}

func TestListen_RefusesNonSocket(t *testing.T) {
	for _, tc := range []struct {
		name string
		make func(path string) error
	}{
		{"regular file", func(p string) error { return os.WriteFile(p, []byte("precious"), 0o644) }},
		{"directory", func(p string) error { return os.Mkdir(p, 0o700) }},
		{"symlink", func(p string) error { return os.Symlink("elsewhere", p) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(testkit.ShortDir(t), "d.sock")
			if err := tc.make(path); err != nil {
				t.Fatal(err)
			}
			before, _ := os.Lstat(path)
			err := newServer(t, drain.Options{Socket: path}).Listen()
			if !errors.Is(err, drain.ErrNotSocket) {
				t.Fatalf("Listen = %v, want ErrNotSocket", err)
			}
			t.Logf("error as users see it: %v", err)
			after, err := os.Lstat(path)
			if err != nil || !os.SameFile(before, after) {
				t.Fatalf("the file at the socket path was touched: %v", err)
			}
			if tc.name == "regular file" {
				if b, _ := os.ReadFile(path); string(b) != "precious" {
					t.Fatalf("file contents changed to %q", b)
				}
			}
		})
	}
}

func TestListen_SocketMode(t *testing.T) {
	for _, tc := range []struct {
		name  string
		mode  os.FileMode
		umask int
		want  os.FileMode
	}{
		{"default, permissive umask", 0, 0, 0o600},
		{"default, usual umask", 0, 0o022, 0o600},
		{"group access despite umask", 0o660, 0o077, 0o660},
	} {
		t.Run(tc.name, func(t *testing.T) {
			old := syscall.Umask(tc.umask)
			defer syscall.Umask(old)
			var atBind os.FileMode
			restore := drain.SetAfterBindHook(func(path string) {
				if fi, err := os.Lstat(path); err == nil {
					atBind = fi.Mode().Perm()
				}
			})
			defer restore()
			path := filepath.Join(testkit.ShortDir(t), "d.sock")
			srv := newServer(t, drain.Options{Socket: path, SocketMode: tc.mode})
			if err := srv.Listen(); err != nil {
				t.Fatal(err)
			}
			fi, err := os.Lstat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != tc.want {
				t.Fatalf("socket file mode %v, want socket with %v", fi.Mode(), tc.want)
			}
			// No window: the file was never more permissive than asked.
			if atBind == 0 || atBind&^tc.want != 0 {
				t.Fatalf("socket file had mode %v when created, more permissive than %v (or not seen)", atBind, tc.want)
			}
		})
	}
}
