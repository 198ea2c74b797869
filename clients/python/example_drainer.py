"""Example drainer: each record as one line of OUT, durably, exactly once.
Usage: python3 example_drainer.py SOCKET OUT   (dedup state: OUT.dedup)"""
import os, sys
import sluice_drain

sock, out_path = sys.argv[1], sys.argv[2]
state = sluice_drain.DedupState(out_path + ".dedup")  # what was committed, and where OUT ended then
out = open(out_path, "ab")
sluice_drain.fsync_dir(out_path)                       # the file's creation is durable too
out.truncate(state.commit_point or 0)                  # cut back what a crash left uncommitted

def on_batch(batch):
    new = state.fresh(batch.records)                   # drop records already committed
    out.write(b"".join(r.data + b"\n" for r in new))
    out.flush(); os.fsync(out.fileno())                # 1. the records are durable,
    state.commit(new, os.fstat(out.fileno()).st_size)  # 2. then recorded with the commit point,
    batch.ack()                                        # 3. and only then acknowledged

sluice_drain.serve(sock, on_batch, dedup=state)
