"""`vcall bench handoff`: handing 720p frames between processes, shared-memory ring vs pickling.

A writer process hands frames to a reader process at ``--fps`` and the reader measures, per
frame, the time from the start of the hand-off to holding the frame as a numpy array:

- ``shm_ring``: vcall's way. The frame is already in the ring's slot (the capture stage renders
  into it); the hand-off is commit (descriptor in the slot header + eventfd write) and, in the
  reader, wake-up + newest descriptor + a view of the slot.
- ``shm_ring_copy_in``: the same, plus copying the frame into the slot first (a producer that
  cannot write in place).
- ``mp_queue_pickle``: ``multiprocessing.Queue.put(ndarray)`` / ``get()``: pickling, a pipe
  write and read of 2.7 MB, unpickling.

Prints p50/p95/p99 in ms and CPU of writer+reader; ``--json FILE`` writes them.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import time
from multiprocessing.connection import Connection
from typing import Any

import numpy as np
import psutil

from benchmarks.cli import write_json
from pipeline.ipc.ring import Ring, Ts
from pipeline.ipc.shm import SegmentSet
from pipeline.sources.pattern import render_into

FORK = multiprocessing.get_context("fork")


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WxH, got {text!r}") from None
    return w, h


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--resolution", type=_size, default=(1280, 720), help="WxH (1280x720)")
    parser.add_argument("--frames", type=int, default=150, help="frames per method (150)")
    parser.add_argument("--fps", type=float, default=30.0, help="hand-off rate (30)")
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON")


def _frame(width: int, height: int) -> np.ndarray:
    image = np.empty((height, width, 3), dtype=np.uint8)
    render_into(image, 1, time.monotonic_ns())
    return image


def _pace(start: float, i: int, fps: float) -> None:
    delay = start + i / fps - time.monotonic()
    if delay > 0:
        time.sleep(delay)


# -- shared-memory ring -----------------------------------------------------------------------
def _ring_writer(ring: Ring, frames: int, fps: float, copy_in: bool, size: tuple[int, int]) -> None:
    width, height = size
    source = _frame(width, height)
    writer = ring.writer()
    start = time.monotonic()
    for i in range(frames):
        _pace(start, i, fps)
        dst = writer.begin_array(width, height)
        if copy_in:
            t0 = time.monotonic_ns()
            np.copyto(dst, source)
        else:
            dst[0, 0, 0] = i & 0xFF  # the producer wrote the frame in place
            t0 = time.monotonic_ns()
        writer.commit(
            frame_id=i + 1, nbytes=dst.nbytes, width=width, height=height, stamps={Ts.CAPTURE: t0}
        )


def _ring_reader(ring: Ring, frames: int, out: Connection) -> None:
    reader = ring.reader(0)
    latencies: list[int] = []
    while True:
        if not reader.wait(2.0):
            break
        desc = reader.latest()
        if desc is None:
            continue
        image = reader.array(desc)
        _ = int(image[0, 0, 0])  # touch it: the frame is usable here
        latencies.append(time.monotonic_ns() - desc.stamp(Ts.CAPTURE))
        if desc.frame_id == frames:
            break
    out.send((latencies, reader.dropped))


# -- multiprocessing queue ----------------------------------------------------------------------
def _queue_writer(queue: Any, frames: int, fps: float, size: tuple[int, int]) -> None:
    source = _frame(*size)
    start = time.monotonic()
    for i in range(frames):
        _pace(start, i, fps)
        queue.put((i + 1, time.monotonic_ns(), source))
    queue.close()
    queue.join_thread()


def _queue_reader(queue: Any, frames: int, out: Connection) -> None:
    latencies: list[int] = []
    while True:
        frame_id, t0, image = queue.get(timeout=5.0)
        _ = int(image[0, 0, 0])
        latencies.append(time.monotonic_ns() - t0)
        if frame_id == frames:
            break
    out.send((latencies, 0))


def _measure(name: str, writer: Any, reader: Any) -> dict[str, Any]:
    recv, send = FORK.Pipe(duplex=False)
    procs = [FORK.Process(target=reader[0], args=(*reader[1:], send), daemon=True)]
    procs.append(FORK.Process(target=writer[0], args=writer[1:], daemon=True))
    for p in procs:
        p.start()
    ps = [psutil.Process(p.pid) for p in procs if p.pid is not None]
    t_start = time.monotonic()
    latencies, dropped = recv.recv()
    elapsed = time.monotonic() - t_start
    cpu = 0.0
    for proc in ps:
        try:
            times = proc.cpu_times()
            cpu += times.user + times.system
        except psutil.Error:
            pass
    for p in procs:
        p.join(10)
        if p.is_alive():
            p.kill()
            p.join()
    values = sorted(v / 1e6 for v in latencies)

    def pct(q: float) -> float:
        return round(float(values[min(len(values) - 1, round(q / 100 * (len(values) - 1)))]), 3)

    return {
        "method": name,
        "frames": len(values),
        "dropped": dropped,
        "p50_ms": pct(50),
        "p95_ms": pct(95),
        "p99_ms": pct(99),
        "mean_ms": round(statistics.fmean(values), 3),
        "cpu_percent_of_one_core": round(100 * cpu / elapsed, 1),
    }


def run(args: argparse.Namespace) -> int:
    width, height = args.resolution
    frame_bytes = width * height * 3
    results: list[dict[str, Any]] = []
    segments = SegmentSet()
    try:
        for name, copy_in in (("shm_ring", False), ("shm_ring_copy_in", True)):
            ring = Ring.create(segments, f"h{len(results)}", n_slots=4, capacity=frame_bytes)
            results.append(
                _measure(
                    name,
                    (_ring_writer, ring, args.frames, args.fps, copy_in, (width, height)),
                    (_ring_reader, ring, args.frames),
                )
            )
            ring.close()
    finally:
        segments.close()
    queue = FORK.Queue(maxsize=4)
    results.append(
        _measure(
            "mp_queue_pickle",
            (_queue_writer, queue, args.frames, args.fps, (width, height)),
            (_queue_reader, queue, args.frames),
        )
    )
    queue.close()
    queue.join_thread()
    print(
        f"frame hand-off between processes, {width}x{height} BGR ({frame_bytes / 1e6:.1f} MB), "
        f"{args.frames} frames at {args.fps:g} fps "
        f"(load {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs, shared machine)"
    )
    print(f"{'method':<20}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'mean ms':>9}{'CPU %':>8}")
    for r in results:
        print(
            f"{r['method']:<20}{r['p50_ms']:>9.3f}{r['p95_ms']:>9.3f}{r['p99_ms']:>9.3f}"
            f"{r['mean_ms']:>9.3f}{r['cpu_percent_of_one_core']:>8.1f}"
        )
    if args.json:
        doc = {
            "benchmark": "handoff",
            "resolution": [width, height],
            "frames": args.frames,
            "fps": args.fps,
            "host": {"cpus": os.cpu_count(), "loadavg": [round(x, 2) for x in os.getloadavg()]},
            "results": results,
        }
        write_json(args.json, doc)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.handoff", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
