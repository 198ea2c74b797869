"""Tests of sluice_drain: every test vector of wire/testdata/vectors, a real
server on a Unix socket, the dedup state, and the example drainer killed
with SIGKILL. Run: python3 -m unittest -v (in clients/python)."""

import binascii
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import sluice_drain as sd

if not os.environ.get("SLUICE_DRAIN_LOG"):  # the tests provoke every error; SLUICE_DRAIN_LOG=1 shows the logs
    import logging
    logging.getLogger("sluice_drain").setLevel(logging.CRITICAL)

HERE = os.path.dirname(os.path.abspath(__file__))
VECTORS = os.path.join(HERE, "..", "..", "wire", "testdata", "vectors")
EPOCH = 1767225600000000000


def load_vectors():
    with open(os.path.join(VECTORS, "vectors.json")) as f:
        return json.load(f)["vectors"]


def vector_bytes(name):
    with open(os.path.join(VECTORS, name), "rb") as f:
        return f.read()


def from_js(fr):
    """The frame object described by a vectors.json 'frame'."""
    t = fr["type"]
    if t == "HELLO":
        h = fr["hello"]
        ps = None
        if "positions" in h:
            ps = [sd.Position(p["stream"], int(p["epoch"]), p["last_seq"]) for p in h["positions"] or []]
        return sd.Hello(h["min_version"], h["max_version"], h["max_frame_bytes"], h["window"], h["instance"], ps)
    if t == "WELCOME":
        w = fr["welcome"]
        return sd.Welcome(w["version"], w["max_frame_bytes"], w["max_records"], w["window"], w["server"])
    if t == "DATA":
        d = fr["data"]
        return sd.Data(d["frame_id"], [sd.Record(r["stream"], int(r["epoch"]), r["seq"], r["index"], r["data"].encode())
                                       for r in d["records"] or []])
    if t == "ACK":
        return sd.Ack(fr["ack"]["up_to"])
    if t == "CLOSE":
        c = fr["close"]
        return sd.Close(c["code"], c["reason"])
    raise AssertionError("unknown frame type " + t)


def dedup_with(committed):
    state = sd.DedupState(None)
    for c in committed or []:
        state.commit([sd.Record(c["stream"], int(c["epoch"]), c["highest_seq"], 0, b"")], None)
    return state


class VectorTest(unittest.TestCase):
    def test_every_file_is_described(self):
        described = {v["file"] for v in load_vectors()}
        files = {f for f in os.listdir(VECTORS) if f.endswith(".bin")}
        self.assertEqual(files, described)

    def test_vectors(self):
        vs = load_vectors()
        self.assertGreater(len(vs), 20)
        for v in vs:
            with self.subTest(v["file"]):
                b = vector_bytes(v["file"])
                self.assertEqual(binascii.hexlify(b).decode(), v["hex"], "file bytes differ from vectors.json")
                dec = sd.Decoder()
                dec.feed(b)
                if "frame" not in v:
                    if v["error"] == "UNEXPECTED_EOF":
                        self.assertIsNone(dec.next())
                        self.assertGreater(dec.pending(), 0, "a truncated frame must be seen as truncated")
                        continue
                    with self.assertRaises(sd.ProtocolError) as cm:
                        while dec.next() is not None:
                            pass
                        self.fail("no error; stream ended cleanly")
                    self.assertEqual(cm.exception.code, v["code"], "%s: got %s" % (v["error"], cm.exception))
                    self.assertEqual(sd.Code.name(cm.exception.code), v["error"])
                    continue
                got = dec.next()
                self.assertIsNotNone(got)
                self.assertIsNone(dec.next())
                self.assertEqual(dec.pending(), 0, "bytes after the frame")
                want = from_js(v["frame"])
                self.assertEqual(got, want)
                self.assertEqual(sd.encode(want), b, "encoding the fields of vectors.json")
                self.assertEqual("answer" in v, isinstance(got, sd.Hello))
                if "answer" in v:
                    ans = sd.answer_hello(got, dedup_with(v.get("committed")), server="drain@host-a")
                    want_ans = from_js(v["answer"]["frame"])
                    if isinstance(want_ans, sd.Welcome):
                        self.assertEqual(binascii.hexlify(sd.encode(ans)).decode(), v["answer"]["hex"])
                    else:
                        self.assertIsInstance(ans, sd.Close)
                        self.assertEqual(ans.code, want_ans.code, ans.reason)
                        if ans.code == sd.Code.STREAM_REWOUND:
                            for part in ('"INGEST"', str(EPOCH), "is 120", "up to 319"):
                                self.assertIn(part, ans.reason)

    def test_crc32c_check_value(self):
        self.assertEqual(sd.crc32c(b"123456789"), 0xE3069283)

    def test_decoder_byte_by_byte(self):
        b = vector_bytes("hello.bin") + vector_bytes("data_two_epochs.bin") + vector_bytes("close.bin")
        dec, got = sd.Decoder(), []
        for i in range(len(b)):
            dec.feed(b[i:i + 1])
            f = dec.next()
            if f is not None:
                got.append(type(f).__name__)
        self.assertEqual(got, ["Hello", "Data", "Close"])
        self.assertEqual(dec.pending(), 0)

    def test_limits(self):
        data = vector_bytes("data.bin")
        dec = sd.Decoder(max_frame_bytes=len(data) - 11)
        dec.feed(data)
        with self.assertRaises(sd.ProtocolError) as cm:
            dec.next()
        self.assertEqual(cm.exception.code, sd.Code.FRAME_TOO_LARGE)
        dec = sd.Decoder(max_records=1)
        dec.feed(data)
        with self.assertRaises(sd.ProtocolError) as cm:
            dec.next()
        self.assertEqual(cm.exception.code, sd.Code.TOO_MANY_RECORDS)


class Peer:
    """A producer's side of a connection, driven by hand."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        try:
            self.sock.connect(path)
        except OSError:
            self.sock.close()
            raise
        self.dec = sd.Decoder(max_frame_bytes=sd.MAX_HANDSHAKE_BYTES)

    def send(self, b):
        self.sock.sendall(b if isinstance(b, bytes) else sd.encode(b))

    def read(self):
        """The next frame, or None at end of stream."""
        while True:
            f = self.dec.next()
            if f is not None:
                return f
            data = self.sock.recv(65536)
            if not data:
                return None
            self.dec.feed(data)

    def hello(self, positions=(), window=64):
        self.send(sd.Hello(2, 2, 0, window, "test-peer", list(positions)))
        w = self.read()
        assert isinstance(w, sd.Welcome), w
        return w

    def close(self):
        self.sock.close()


def hello(positions=(), window=64):
    return sd.Hello(2, 2, 0, window, "test-peer", list(positions))


class ServerTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="sd")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.path = os.path.join(self.dir, "s.sock")
        self.batches = []
        self.auto_ack = True

    def start(self, dedup=None, **kw):
        def on_batch(b):
            self.batches.append(b)
            if self.auto_ack:
                b.ack()
        self.srv = sd.Server(self.path, on_batch, dedup=dedup, name="drain@host-a", close_wait=0.5, **kw)
        t = self.serving = threading.Thread(target=self.srv.serve_forever, daemon=True)
        t.start()
        self.addCleanup(t.join, 10)
        self.addCleanup(self.srv.close)

    def peer(self):
        p = Peer(self.path)
        self.addCleanup(p.close)
        return p

    def expect_close(self, p, code):
        f = p.read()
        self.assertIsInstance(f, sd.Close)
        self.assertEqual(sd.Code.name(f.code), sd.Code.name(code), f.reason)
        self.assertIsNone(p.read(), "the server must close after its CLOSE")

    def test_session_with_vectors(self):
        self.start()
        p = self.peer()
        p.send(vector_bytes("hello.bin"))
        self.assertEqual(sd.encode(p.read()), vector_bytes("welcome.bin"))
        p.send(vector_bytes("data.bin"))
        self.assertEqual(sd.encode(p.read()), vector_bytes("ack.bin"))
        [b] = self.batches
        self.assertEqual([(r.stream, r.epoch, r.seq, r.index, r.data) for r in b.records],
                         [("INGEST", EPOCH, 42, 0, b'{"a":1}'), ("INGEST", EPOCH, 42, 1, b"{}")])
        self.assertEqual(b.instance, "sink-1")
        p.send(vector_bytes("close_normal.bin"))
        self.assertIsNone(p.read())

    def test_invalid_vectors_close_with_their_code_and_server_keeps_serving(self):
        self.start()
        keep = self.peer()  # an open session that must outlive every bad one
        keep.hello()
        for v in load_vectors():
            if "frame" in v:
                continue
            with self.subTest(v["file"]):
                p = self.peer()
                handshake = v["file"].startswith("hello") or v["file"] in ("bad_magic.bin", "http_get.bin")
                if not handshake:
                    p.hello()
                p.send(vector_bytes(v["file"]))
                if v["error"] == "UNEXPECTED_EOF":
                    p.sock.shutdown(socket.SHUT_WR)
                    self.assertIsNone(p.read(), "a truncated frame gets no CLOSE: the peer is gone")
                else:
                    self.expect_close(p, v["code"])
        keep.send(sd.Data(1, [sd.Record("S", 1, 1, 0, b"x")]))
        self.assertEqual(keep.read(), sd.Ack(1))
        self.assertEqual(self.batches[-1].records[0].data, b"x")
        self.assertEqual(len(self.batches), 1, "no record of a bad frame may be delivered")

    def test_session_rules(self):
        self.start()
        cases = [
            ("DATA before HELLO", [vector_bytes("data.bin")], False, sd.Code.HANDSHAKE_REQUIRED),
            ("second HELLO", [sd.encode(hello())], True, sd.Code.UNEXPECTED_FRAME),
            ("ACK from the client", [vector_bytes("ack.bin")], True, sd.Code.UNEXPECTED_FRAME),
            ("WELCOME from the client", [vector_bytes("welcome.bin")], True, sd.Code.UNEXPECTED_FRAME),
            ("frame ids not increasing", [sd.encode(sd.Data(5, [])), sd.encode(sd.Data(5, []))], True, (sd.Ack(5), sd.Code.FRAME_ORDER)),
            ("empty version range", [sd.encode(sd.Hello(3, 2, 0, 0, "x", []))], False, sd.Code.BAD_HANDSHAKE),
            ("version 1 only", [vector_bytes("hello_v1.bin")], False, sd.Code.UNSUPPORTED_VERSION),
        ]
        for name, frames, do_hello, code in cases:
            with self.subTest(name):
                p = self.peer()
                if do_hello:
                    p.hello()
                for f in frames:
                    p.send(f)
                if isinstance(code, tuple):  # frames before the bad one are acknowledged first
                    self.assertEqual(p.read(), code[0])
                    code = code[1]
                self.expect_close(p, code)

    def test_granted_limits_are_enforced(self):
        self.start(max_frame_bytes=4096, max_records=1)
        p = self.peer()
        w = p.hello()
        self.assertEqual((w.max_frame_bytes, w.max_records), (4096, 1))
        p.send(vector_bytes("data.bin"))  # two records
        self.expect_close(p, sd.Code.TOO_MANY_RECORDS)
        p = self.peer()
        p.hello()
        p.send(sd.Data(1, [sd.Record("S", 1, 1, 0, b"x" * 4096)]))
        self.expect_close(p, sd.Code.FRAME_TOO_LARGE)
        self.assertEqual(self.batches, [])

    def test_frame_started_and_not_finished(self):
        self.start(frame_timeout=0.2)
        p = self.peer()
        p.hello()
        p.send(vector_bytes("data.bin")[:20])
        self.expect_close(p, sd.Code.TIMEOUT)

    def test_window(self):
        self.start(window=2)
        self.auto_ack = False
        p = self.peer()
        w = p.hello(window=8)
        self.assertEqual(w.window, 2, "the server's limit wins over a larger wish")
        p.send(sd.Data(1, []))
        p.send(sd.Data(2, []))
        p.send(sd.Data(3, []))
        self.expect_close(p, sd.Code.WINDOW_EXCEEDED)

    def test_acks_in_frame_order_whenever_acked(self):
        self.start()
        self.auto_ack = False
        p = self.peer()
        p.hello()
        for i in (1, 2, 3):
            p.send(sd.Data(i, [sd.Record("S", 1, i, 0, b"r")]))
            deadline = time.time() + 10
            while sum(len(b.frame_ids) for b in self.batches) < i and time.time() < deadline:
                time.sleep(0.01)
        ids = [b.frame_ids for b in self.batches]
        self.assertEqual(sum(ids, []), [1, 2, 3])
        self.batches[2].ack()  # the last one first: nothing may be acknowledged yet
        self.batches[0].ack()
        self.assertEqual(p.read(), sd.Ack(1), "frame 2 is not durable yet")
        self.batches[1].ack()
        self.assertEqual(p.read(), sd.Ack(3))

    def test_rewind_check_refuses_and_remembers(self):
        path = os.path.join(self.dir, "dedup.json")
        state = sd.DedupState(path)
        state.commit([sd.Record("INGEST", EPOCH, 319, 0, b"")], 0)
        self.start(dedup=state)
        p = self.peer()
        p.send(vector_bytes("hello_rewound.bin"))
        self.expect_close(p, sd.Code.STREAM_REWOUND)
        # Once refused, always refused, even when the queue caught up, and
        # after a restart, until the operator resets the stream.
        for reload in (False, True):
            s = sd.DedupState(path) if reload else state
            ans = sd.answer_hello(hello([sd.Position("INGEST", EPOCH, 400)]), s)
            self.assertIsInstance(ans, sd.Close)
            self.assertEqual(ans.code, sd.Code.STREAM_REWOUND)
        p = self.peer()
        p.hello([sd.Position("INGEST", EPOCH + 1, 1)])  # a new incarnation passes
        state.forget("INGEST", EPOCH, 120)
        self.assertEqual(state.highest("INGEST", EPOCH), 0)
        p = self.peer()
        p.hello([sd.Position("INGEST", EPOCH, 120)])

    def test_shutdown_sends_going_away(self):
        self.start()
        p = self.peer()
        p.hello()
        self.srv.close()
        self.expect_close(p, sd.Code.GOING_AWAY)
        self.serving.join(10)
        self.assertFalse(os.path.exists(self.path), "the socket file is removed at shutdown")

    def test_stale_socket_is_replaced(self):
        stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stale.bind(self.path)
        stale.close()  # the file stays; nothing answers on it
        self.start()
        self.peer().hello()

    def test_live_socket_is_not_replaced(self):
        self.start()
        self.assertEqual(os.stat(self.path).st_mode & 0o777, 0o600, "the socket is owner-only")
        with self.assertRaises(OSError):
            sd.Server(self.path, lambda b: None)
        notsock = os.path.join(self.dir, "file")
        open(notsock, "w").close()
        with self.assertRaises(FileExistsError):
            sd.Server(notsock, lambda b: None)


class DedupTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="sd")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.path = os.path.join(self.dir, "state")

    def rec(self, seq, index=0, stream="S", epoch=1, frame=1):
        return sd.Record(stream, epoch, seq, index, b"", frame)

    def test_commit_survives_reload(self):
        s = sd.DedupState(self.path)
        self.assertIsNone(s.commit_point)
        s.commit([self.rec(1), self.rec(2), self.rec(5), self.rec(7, stream="T", epoch=EPOCH)], {"file": "a", "len": 10})
        r = sd.DedupState(self.path)
        self.assertEqual(r.commit_point, {"file": "a", "len": 10})
        got = [r.is_committed("S", 1, q) for q in range(1, 7)]
        self.assertEqual(got, [True, True, False, False, True, False])
        self.assertTrue(r.is_committed("T", EPOCH, 7))
        self.assertFalse(r.is_committed("T", EPOCH + 1, 7), "another epoch is another message space")
        self.assertEqual(r.highest("S", 1), 5)
        self.assertIsNone(r.highest("S", 2))
        self.assertFalse(os.path.exists(self.path + ".tmp"))
        with open(self.path) as f:
            self.assertIn('"epoch":"%d"' % EPOCH, f.read(), "epochs are strings: they exceed 2^53")

    def test_fresh(self):
        s = sd.DedupState(None)
        s.commit([self.rec(1)], None)
        recs = [self.rec(1), self.rec(2, 0), self.rec(2, 1), self.rec(3, frame=1), self.rec(3, frame=2), self.rec(0), self.rec(0)]
        got = [(r.seq, r.index, r.frame_id) for r in s.fresh(recs)]
        self.assertEqual(got, [(2, 0, 1), (2, 1, 1), (3, 0, 1), (0, 0, 1), (0, 0, 1)],
                         "committed messages and a second frame's copy are dropped; seq 0 never is")
        self.assertEqual(s.duplicates, 2)

    def test_ranges_merge_and_bound(self):
        s = sd.DedupState(None, max_ranges=2)
        for q in (3, 1, 2):
            s.commit([self.rec(q)], None)
        seqs = s._seqs[("S", 1)]
        self.assertEqual((seqs.low, seqs.los), (3, []), "contiguous sequences fold into the low-water mark")
        for q in (10, 20, 30):
            s.commit([self.rec(q)], None)
        self.assertEqual(s.forgotten, 1)
        self.assertFalse(s.is_committed("S", 1, 10), "the lowest range is forgotten: a duplicate later, never a loss")
        self.assertTrue(s.is_committed("S", 1, 2), "the low-water mark is never raised over a gap nor lost")
        self.assertEqual(s.highest("S", 1), 30)
        self.assertFalse(s.is_committed("S", 1, 4))

    def test_foreign_file_is_refused(self):
        with open(self.path, "w") as f:
            f.write("{not json")
        with self.assertRaises(ValueError) as cm:
            sd.DedupState(self.path)
        self.assertIn(self.path, str(cm.exception))


class ExampleCrashTest(unittest.TestCase):
    """The example drainer killed with SIGKILL between writing and recording
    (simulated: bytes written after the last commit point), restarted, and
    sent the unacknowledged frame again: each record once in the output."""

    def test_kill_and_resend(self):
        d = tempfile.mkdtemp(prefix="sd")
        self.addCleanup(shutil.rmtree, d, True)
        sock, out = os.path.join(d, "s.sock"), os.path.join(d, "out.jsonl")

        def start():
            proc = subprocess.Popen([sys.executable, os.path.join(HERE, "example_drainer.py"), sock, out])
            self.addCleanup(proc.kill)
            deadline = time.time() + 10
            while time.time() < deadline:
                try:
                    p = Peer(sock)
                    self.addCleanup(p.close)
                    p.hello()
                    return proc, p
                except OSError:
                    time.sleep(0.05)
            self.fail("example drainer did not start listening on " + sock)

        proc, p = start()
        f1 = sd.Data(1, [sd.Record("S", 1, 1, 0, b'{"n":1}'), sd.Record("S", 1, 1, 1, b'{"n":2}')])
        f2 = sd.Data(2, [sd.Record("S", 1, 2, 0, b'{"n":3}')])
        p.send(f1)
        self.assertEqual(p.read(), sd.Ack(1))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        with open(out, "ab") as f:  # written, never recorded: the crash came in between
            f.write(b'{"n":3}\n{"n":')
        proc, p = start()
        p.send(f1)  # re-sent: its ACK was received, but a producer may re-send anyway
        p.send(f2)
        while p.read() != sd.Ack(2):
            pass
        with open(out, "rb") as f:
            self.assertEqual(f.read(), b'{"n":1}\n{"n":2}\n{"n":3}\n')
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(p.read(), sd.Close(sd.Code.GOING_AWAY, "drainer shutting down"))
        self.assertEqual(proc.wait(10), 0)


if __name__ == "__main__":
    unittest.main()
