package wire_test

import (
	"bytes"
	"errors"
	"hash/crc32"
	"io"
	"testing"

	"github.com/sluice-dev/sluice/wire"
)

// FuzzReader feeds arbitrary bytes to a Reader, once whole and once in
// short reads of random sizes. It checks that the Reader never panics, fails
// only with a *ProtocolError, io.EOF or io.ErrUnexpectedEOF, that every frame
// it accepts re-encodes to exactly the bytes it was read from, and that short
// reads change nothing.
//
// The seeds in testdata/fuzz/FuzzReader include every test vector (written
// by TestVectors -update) and run with every go test.
func FuzzReader(f *testing.F) {
	var session []byte
	for _, fr := range sampleFrames() {
		f.Add(encode(f, nil, fr))
		session = encode(f, session, fr)
	}
	f.Add(session) // several frames in a row
	f.Fuzz(func(t *testing.T, data []byte) {
		whole, frames, err := readAll(t, wire.NewReader(bytes.NewReader(data)))
		var pe *wire.ProtocolError
		if err != io.EOF && err != io.ErrUnexpectedEOF && !errors.As(err, &pe) {
			t.Fatalf("unexpected error type %T: %v", err, err)
		}
		if !bytes.HasPrefix(data, whole) {
			t.Fatalf("accepted %d frames whose re-encoding is not the input's prefix:\n%x\ninput\n%x", len(frames), whole, data)
		}
		if err == io.EOF && len(whole) != len(data) {
			t.Fatalf("io.EOF after %d of %d bytes", len(whole), len(data))
		}
		seed := uint64(crc32.ChecksumIEEE(data))
		chunked, _, err2 := readAll(t, wire.NewReader(newChunkReader(data, seed, 1+int(seed%61))))
		if !bytes.Equal(chunked, whole) || errKind(err2) != errKind(err) {
			t.Fatalf("short reads: %d bytes of frames then %v; whole: %d bytes then %v", len(chunked), err2, len(whole), err)
		}
	})
}
