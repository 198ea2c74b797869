// Command go-drainer is a drainer for sluice's acked framing written with
// package drain: it appends each record's payload as a line to one file,
// fsyncs it before the drainer acknowledges, and keeps the dedup journal in
// a directory beside it.
//
//	go run ./examples/go-drainer SOCKET FILE
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/sluice-dev/sluice/drain"
	"github.com/sluice-dev/sluice/ledger"
	"github.com/sluice-dev/sluice/record"
)

// fileStore appends records to f; its commit point is the file's length.
type fileStore struct {
	f    *os.File
	size int64
}

func (s *fileStore) Recover(p ledger.Point) error { // drop what the journal never recorded
	s.size = p.Length
	return s.f.Truncate(p.Length)
}

func (s *fileStore) Append(r record.Record) error {
	n, err := s.f.WriteAt(append(r.Data, '\n'), s.size)
	s.size += int64(n)
	return err
}

func (s *fileStore) Commit() (ledger.Point, error) {
	return ledger.Point{File: s.f.Name(), Length: s.size}, s.f.Sync()
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: go-drainer SOCKET FILE")
		os.Exit(2)
	}
	f, err := os.OpenFile(os.Args[2], os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	srv, err := drain.New(drain.Options{Socket: os.Args[1], Framing: "acked", Store: &fileStore{f: f}, StateDir: os.Args[2] + ".state"})
	if err == nil {
		err = srv.Listen()
	}
	if err == nil {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		err = srv.Serve(ctx)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
