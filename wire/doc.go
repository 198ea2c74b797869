// Package wire is sluice's `acked` socket protocol: the frames a producer
// (sluice's sink) and a drainer exchange over a Unix stream socket, their
// byte encoding, and the handshake rules. docs/protocol.md is the
// specification; testdata/vectors holds byte-exact examples of it.
//
// Encoding is append-style: AppendHello, AppendWelcome, AppendData, AppendAck
// and AppendClose add one complete frame to a byte slice and allocate nothing
// beyond the slice's growth. Decoding is done by a Reader, which reads one
// frame at a time from an io.Reader, enforces the configured Limits and
// reports every violation as a *ProtocolError carrying the CloseCode that the
// receiver sends back in its CLOSE frame.
//
// The package knows nothing about connections, reconnects or durability: it
// is a leaf that the sink and the drainer both build on. Accept and
// CheckWelcome implement the version and limit negotiation of the handshake
// so that both sides apply the same rules.
package wire
