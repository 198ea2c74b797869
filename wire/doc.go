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
// ServerState and ClientState check the session rules on top of the
// framing: handshake first, increasing frame ids, the window, acknowledgement
// bounds. Accept and CheckWelcome, which they use, implement the version and
// limit negotiation of the handshake, so that both sides apply the same rules;
// CheckPositions is the server's rewind check of the client's stream
// positions (a queue that went back within one incarnation of a stream).
//
// The package speaks protocol version 2 only (Version). Records travel with
// their whole record.ID, the stream's incarnation (Epoch) included, so a
// drainer can tell a recreated stream's sequence 1 from the old one's.
//
// The package knows nothing about connections, reconnects or durability: it
// is a leaf that the sink and the drainer both build on. A server's loop is:
//
//	rd := wire.NewReader(conn)
//	rd.Limits.MaxFrameBytes = wire.MaxHandshakeBytes
//	st := wire.ServerState{Committed: ledger.Committed} // the rewind check
//	f, err := rd.ReadFrame()              // then st.Hello(f, own) → WELCOME, or CLOSE CloseFor(err)
//	rd.Limits = welcome.Limits()
//	for {
//		f, err := rd.ReadFrame()          // *ProtocolError → send CloseFor(err), close
//		err = st.Receive(f)               // DATA: write out, dedup by RecordID
//		ack, err := st.Ack(upTo)          // after fsync: conn.Write(wire.AppendAck(nil, ack))
//	}
package wire
