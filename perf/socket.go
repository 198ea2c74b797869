package perf

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// socketWrite is the size of each write in the raw socket measurement.
const socketWrite = 64 << 10

// ServeSocketReader is the reader half of the raw socket measurement (the
// hidden "sluice bench-reader" subcommand): it listens on the Unix socket
// path, accepts one connection, reads it to EOF with 64 KiB reads counting
// bytes and newlines, and prints "<bytes> <lines>" on out.
func ServeSocketReader(path string, out io.Writer) error {
	_ = os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("bench-reader: listen %s: %w", path, err)
	}
	defer ln.Close()
	c, err := ln.Accept()
	if err != nil {
		return fmt.Errorf("bench-reader: accept: %w", err)
	}
	defer c.Close()
	buf := make([]byte, socketWrite)
	var n, lines int64
	for {
		k, err := c.Read(buf)
		n += int64(k)
		lines += int64(bytes.Count(buf[:k], []byte{'\n'}))
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("bench-reader: read: %w", err)
		}
	}
	_, err = fmt.Fprintf(out, "%d %d\n", n, lines)
	return err
}

// SocketResult is one raw socket measurement.
type SocketResult struct {
	Records int64
	Bytes   int64
	Elapsed time.Duration
}

// RecordsPerSec is the record rate.
func (r SocketResult) RecordsPerSec() float64 { return float64(r.Records) / r.Elapsed.Seconds() }

// MBPerSec is the byte rate in MB/s (10^6 bytes).
func (r SocketResult) MBPerSec() float64 { return float64(r.Bytes) / 1e6 / r.Elapsed.Seconds() }

// RawSocket measures a Unix stream socket between this process (the writer)
// and a reader process (exe bench-reader): records lines of recordSize bytes
// (newline included), written as many whole records as fit in 64 KiB per
// write. The time runs from the connection until the reader has read
// everything and reported it.
func RawSocket(ctx context.Context, exe, dir string, records int64, recordSize int) (SocketResult, error) {
	if recordSize < 2 || recordSize > socketWrite {
		return SocketResult{}, fmt.Errorf("%w: record size %d", ErrBadOptions, recordSize)
	}
	path := filepath.Join(dir, "raw.sock")
	cmd := exec.CommandContext(ctx, exe, "bench-reader", "--socket", path)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		return SocketResult{}, fmt.Errorf("perf: start %s bench-reader: %w", exe, err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	fail := func(err error) (SocketResult, error) {
		_ = cmd.Process.Kill()
		<-waited
		return SocketResult{}, err
	}

	var conn *net.UnixConn
	for deadline := time.Now().Add(10 * time.Second); ; {
		c, err := net.Dial("unix", path)
		if err == nil {
			conn = c.(*net.UnixConn)
			break
		}
		if time.Now().After(deadline) {
			return fail(fmt.Errorf("perf: bench-reader did not listen on %s within 10s: %v (%s)", path, err, strings.TrimSpace(stderr.String())))
		}
		select {
		case err := <-waited:
			return SocketResult{}, fmt.Errorf("perf: bench-reader exited at start: %v: %s", err, strings.TrimSpace(stderr.String()))
		case <-time.After(5 * time.Millisecond):
		}
	}

	// One buffer of whole records, written again and again.
	per := socketWrite / recordSize
	line := bytes.Repeat([]byte{'x'}, recordSize)
	line[0], line[recordSize-2], line[recordSize-1] = '"', '"', '\n'
	buf := bytes.Repeat(line, per)

	start := time.Now()
	left := records
	for left > 0 {
		k := min(int64(per), left)
		if _, err := conn.Write(buf[:k*int64(recordSize)]); err != nil {
			conn.Close()
			return fail(fmt.Errorf("perf: raw socket write: %w", err))
		}
		left -= k
	}
	if err := conn.CloseWrite(); err != nil {
		conn.Close()
		return fail(fmt.Errorf("perf: raw socket close: %w", err))
	}
	var err error
	select {
	case err = <-waited:
	case <-ctx.Done():
		conn.Close()
		return fail(ctx.Err())
	}
	elapsed := time.Since(start)
	conn.Close()
	if err != nil {
		return SocketResult{}, fmt.Errorf("perf: bench-reader: %v: %s", err, strings.TrimSpace(stderr.String()))
	}
	var gotBytes, gotLines int64
	if _, err := fmt.Fscan(bufio.NewReader(&stdout), &gotBytes, &gotLines); err != nil {
		return SocketResult{}, fmt.Errorf("perf: bench-reader output %q: %v", stdout.String(), err)
	}
	if gotLines != records || gotBytes != records*int64(recordSize) {
		return SocketResult{}, fmt.Errorf("%w: bench-reader read %d bytes, %d lines; want %d, %d", ErrIncomplete, gotBytes, gotLines, records*int64(recordSize), records)
	}
	return SocketResult{Records: records, Bytes: gotBytes, Elapsed: elapsed}, nil
}
