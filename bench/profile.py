"""Profile one stack's app worker under load: where its CPU time goes, to explain a gap to a peer.

`python -m bench profile STACK [--mode keep-alive|close] [--duration S] [--native]` starts the stack pinned to CPU 0,
loads it with wrk from CPU 1 and samples the worker with py-spy (from the bench venv, also on CPU 1) in non-blocking
mode, so the profiler does not pause the server it measures. It writes the collapsed stacks (flamegraph input) and
prints the functions with the most samples, by own time and by inclusive time.
"""

from __future__ import annotations

import subprocess
import threading
from collections import Counter
from pathlib import Path

from bench import paths, procs, stacks, wrk
from bench.runner import log


def top_frames(collapsed: str, limit: int = 25) -> tuple[list[tuple[str, int]], list[tuple[str, int]], int]:
    """From py-spy's raw output ("frame;frame;frame COUNT" lines): (own-time top, inclusive top, total samples)."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        total += samples
        frames = stack.split(";")
        own[frames[-1]] += samples
        for frame in set(frames):
            inclusive[frame] += samples
    return own.most_common(limit), inclusive.most_common(limit), total


def run(key: str, mode: str, duration_s: int, pythons: dict[str, Path], native: bool, out: Path) -> Path:
    """Profile `key`'s worker under load; return the collapsed-stacks file."""
    stack = stacks.by_key([key])[0]
    rundir = paths.CACHE / "profile"
    rundir.mkdir(parents=True, exist_ok=True)
    rundir.chmod(0o755)
    running = procs.start(stack.build(stacks.Context(procs.free_port(), rundir, pythons)), "0", rundir / "server.log")
    try:
        workers = running.worker_pids() or [running.popens[0][1].pid]
        argv = wrk.command(
            running.launch.url, duration_s=duration_s + 4, connections=64, threads=1, close=mode == "close", cpus="1"
        )
        load = threading.Thread(target=wrk.run, args=(argv, duration_s + 4), daemon=True)
        load.start()
        out.mkdir(parents=True, exist_ok=True)
        collapsed = out / f"{key}-{mode}.collapsed.txt"
        spy = [
            *("taskset", "-c", "1", str(pythons["peers"].parent / "py-spy"), "record", "--nonblocking", "--format"),
            *("raw", "-r", "200", "-d", str(duration_s), "-o", str(collapsed), "-p", str(workers[0])),
        ]
        log(f"profiling {key} ({mode}) worker {workers[0]} for {duration_s} s")
        subprocess.run([*spy, "--native"] if native else spy, check=True, capture_output=True, timeout=duration_s + 60)
        load.join(timeout=duration_s + 60)
    finally:
        procs.stop(running)
    own, inclusive, total = top_frames(collapsed.read_text())
    print(f"{key} {mode}: {total} samples")
    print("-- own time --")
    for frame, samples in own:
        print(f"{samples / total:6.1%}  {frame}")
    print("-- inclusive --")
    for frame, samples in inclusive:
        print(f"{samples / total:6.1%}  {frame}")
    return collapsed
