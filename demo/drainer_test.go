package demo_test

import (
	"context"
	"errors"
	"flag"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sluice-dev/sluice/demo"
	"github.com/sluice-dev/sluice/drain"
	"github.com/sluice-dev/sluice/internal/testkit"
	"github.com/sluice-dev/sluice/wire"
)

// TestMain lets the test binary act as the drainer child ("drain --socket S
// --out O --framing F", as the demo runs it) when DEMO_TEST_DRAINER=1.
func TestMain(m *testing.M) {
	if os.Getenv("DEMO_TEST_DRAINER") == "1" && len(os.Args) > 1 && os.Args[1] == "drain" {
		os.Exit(serveDrainer(os.Args[2:]))
	}
	goleak.VerifyTestMain(m)
}

// serveDrainer runs a real drainer until SIGTERM.
func serveDrainer(args []string) int {
	fs := flag.NewFlagSet("drain", flag.ContinueOnError)
	socket, out, framing := fs.String("socket", "", ""), fs.String("out", "", ""), fs.String("framing", "", "")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	srv, err := drain.New(drain.Options{Socket: *socket, Out: *out, Framing: wire.Framing(*framing)})
	if err != nil {
		return 1
	}
	if err := srv.Listen(); err != nil {
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if err := srv.Serve(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return 1
	}
	return 0
}

func newDrainer(t *testing.T, life context.Context) (*demo.Drainer, string) {
	t.Helper()
	t.Setenv("DEMO_TEST_DRAINER", "1")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := testkit.ShortDir(t)
	sock := filepath.Join(dir, "d.sock")
	return demo.NewDrainer(life, exe, sock, filepath.Join(dir, "out"), filepath.Join(dir, "drain.log")), sock
}

func listening(sock string) bool {
	c, err := net.Dial("unix", sock)
	if err == nil {
		c.Close()
	}
	return err == nil
}

// TestDrainer_OneOwner kills and restarts the drainer child from one
// goroutine while another stops it, as the demo's killer and its shutdown
// do: under -race nothing is shared unguarded, and once Stop returned no
// child runs and none starts again.
func TestDrainer_OneOwner(t *testing.T) {
	d, sock := newDrainer(t, context.Background())
	ctx := context.Background()
	if err := d.Start(ctx); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	restarts := make(chan error, 10)
	wg.Go(func() {
		for range 10 {
			if !d.Kill() {
				return
			}
			if err := d.Start(ctx); err != nil {
				restarts <- err
				return
			}
		}
	})
	wg.Go(d.Stop)
	wg.Wait()
	close(restarts)
	for err := range restarts {
		if !errors.Is(err, demo.ErrStopped) {
			t.Errorf("restart: %v", err)
		}
	}
	if listening(sock) {
		t.Error("a drainer still listens after Stop")
	}
	if err := d.Start(ctx); !errors.Is(err, demo.ErrStopped) {
		t.Errorf("Start after Stop = %v, want ErrStopped", err)
	}
	d.Stop() // idempotent
}

// TestDrainer_LifeEnds: a child cannot outlive its life context.
func TestDrainer_LifeEnds(t *testing.T) {
	life, end := context.WithCancel(context.Background())
	d, sock := newDrainer(t, life)
	if err := d.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	end()
	testkit.WaitFor(t, 15*time.Second, func() error {
		if listening(sock) {
			return errors.New("the drainer still listens")
		}
		return nil
	})
	d.Stop() // waits for the child's exit
}
