"""The measurement loop: start the stacks, warm them up, run interleaved rounds of wrk, collect and summarise.

Fairness rules (bench/README.md explains why each one matters):
- per core: every server process pinned to CPU 0, wrk (one thread) pinned to CPU 1, one worker per stack;
- each (stack, connection mode) is warmed up once, then measured in `rounds` rounds; each round visits the stacks in a
  rotated order, so a burst of outside load hits different stacks in different rounds instead of one stack in all;
- besides requests per second (wall clock) each run records the CPU time the stack used, so requests per CPU-second
  stays comparable when other work on the machine steals time from the server's core.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench import machine, procs, stats, wrk
from bench.stacks import BASELINE, PER_CORE, SCALING_WORKERS_PER_CORE, SUITE, Context, Stack, scaling_env

MODES = ("keep-alive", "close")


@dataclass(frozen=True)
class Plan:
    """How long and how often to measure; the smoke run shrinks the times, never the rules."""

    duration_s: int = 8
    warmup_s: int = 2
    rounds: int = 3
    connections: int = 64
    server_cpus: str = "0"
    load_cpus: str = "1"
    scaling_cpus: str = "0,1"
    scaling: tuple[float, ...] = SCALING_WORKERS_PER_CORE
    modes: tuple[str, ...] = MODES

    @classmethod
    def smoke(cls) -> Plan:
        """A few seconds per stack: enough to prove every stack starts, serves and is parsed, not to rank them."""
        return cls(duration_s=2, warmup_s=1, rounds=1, connections=16, scaling=(1,))


def log(message: str) -> None:
    """Progress on stderr, so a 10-minute run never looks stuck."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def rotate(items: list[Any], by: int) -> list[Any]:
    """Rotate items left by `by`, so that round r starts with the r-th stack."""
    if not items:
        return []
    by %= len(items)
    return items[by:] + items[:by]


def measure(running: procs.Running, argv: list[str], duration_s: int, server_cpus: list[int]) -> dict[str, Any]:
    """One wrk run against a running stack, with the stack's CPU time, the CPUs' load and its memory after."""
    cpu_before = running.cpu_seconds()
    jiffies_before = [procs.busy_jiffies(c) for c in server_cpus]
    started = time.monotonic()
    result = wrk.run(argv, duration_s)
    wall = time.monotonic() - started
    cpu_used = running.cpu_seconds() - cpu_before
    jiffies_after = [procs.busy_jiffies(c) for c in server_cpus]
    busy_cpus = sum(
        (after[0] - before[0]) / max(1, after[1] - before[1])
        for before, after in zip(jiffies_before, jiffies_after, strict=True)
    )
    dead = running.exited()
    if dead:
        raise procs.StartError(f"died during the run: {', '.join(dead)}")
    server_share = cpu_used / wall
    return {
        **result.as_dict(),
        "server_cpu_share": server_share,
        "requests_per_cpu_s": result.requests / cpu_used if cpu_used > 0 else None,
        # Busy time of the server's CPUs not spent by the server: other work (wrk too, when it shares them).
        "other_cpu_share": max(0.0, busy_cpus - server_share),
        "worker_rss_mib": running.worker_rss_mib(),
        "stack_pss_mib": running.stack_pss_mib(),
        "workers": len(running.worker_pids()),
        "pids": running.all_pids(),
        "loadavg_1m": machine.loadavg()[0],
    }


@dataclass
class Cell:
    """One row of a table: a stack (or a scaling point) in one connection mode, and its rounds."""

    section: str
    stack: str
    label: str
    kind: str
    mode: str
    workers_per_core: float | None = None
    error: str | None = None
    preload: bool = False  # a scaling point with PRELOAD=on

    def __post_init__(self) -> None:
        self.rounds: list[dict[str, Any]] = []


def _cpus(spec: str) -> list[int]:
    return [int(c) for c in spec.split(",")]


def _run_section(
    section: str,
    entries: list[tuple[Stack, Context, float | None]],
    plan: Plan,
    *,
    server_cpus: str,
    load_cpus: str | None,
    threads: int,
    pythons_ready: Callable[[Stack], bool],
    raw: Path,
) -> list[Cell]:
    """Start every entry's stack, warm each mode, run the interleaved rounds, stop them all."""
    cells: dict[tuple[int, str], Cell] = {}
    running: dict[int, procs.Running] = {}
    for index, (stack, ctx, wpc) in enumerate(entries):
        for mode in plan.modes:
            cells[index, mode] = Cell(
                section, stack.key, stack.label, stack.kind, mode, wpc, preload=ctx.env.get("PRELOAD") == "on"
            )
        if not pythons_ready(stack):
            for mode in plan.modes:
                cells[index, mode].error = "its venv could not be built"
            continue
        try:
            log(f"{section}: starting {stack.key}" + (f" (WORKERS_PER_CORE={wpc:g})" if wpc else ""))
            running[index] = procs.start(stack.build(ctx), server_cpus, raw / f"{section}-{index}-{stack.key}.log")
        except (procs.StartError, OSError) as error:
            log(f"{section}: {stack.key} did not start: {error}")
            for mode in plan.modes:
                cells[index, mode].error = f"did not start: {str(error).splitlines()[0]}"
    try:
        order = [i for i in range(len(entries)) if i in running]
        for index in order:
            for mode in plan.modes:
                argv = _wrk_argv(running[index], mode, plan, plan.warmup_s, load_cpus, threads)
                _guarded(cells[index, mode], wrk.run, argv, plan.warmup_s)
        for round_no in range(plan.rounds):
            modes = plan.modes if round_no % 2 == 0 else tuple(reversed(plan.modes))
            for index in rotate(order, round_no):
                for mode in modes:
                    cell = cells[index, mode]
                    if cell.error:
                        continue
                    argv = _wrk_argv(running[index], mode, plan, plan.duration_s, load_cpus, threads)
                    outcome = _guarded(cell, measure, running[index], argv, plan.duration_s, _cpus(server_cpus))
                    if outcome is not None:
                        cell.rounds.append(outcome)
                        log(
                            f"{section} round {round_no + 1}/{plan.rounds} {cell.stack:<18} {mode:<10} "
                            f"{outcome['requests_per_s']:>9.0f} req/s  p99 {outcome['latency_p99_s'] * 1e3:6.1f} ms  "
                            f"cpu {outcome['server_cpu_share']:.2f}  other {outcome['other_cpu_share']:.2f}"
                        )
    finally:
        for run in running.values():
            procs.stop(run)
    return list(cells.values())


def _guarded(cell: Cell, action: Callable[..., Any], *args: Any) -> Any:
    """Run one wrk action; a failure marks the cell (the report shows it) instead of ending the whole benchmark."""
    try:
        return action(*args)
    except (wrk.WrkParseError, procs.StartError, OSError) as error:
        cell.error = str(error).splitlines()[0]
        log(f"{cell.section}: {cell.stack} {cell.mode}: {cell.error}")
        return None


def _wrk_argv(
    running: procs.Running, mode: str, plan: Plan, duration_s: int, cpus: str | None, threads: int
) -> list[str]:
    return wrk.command(
        running.launch.url,
        duration_s=duration_s,
        connections=plan.connections,
        threads=threads,
        close=mode == "close",
        cpus=cpus,
    )


def summarize(cells: list[Cell]) -> list[dict[str, Any]]:
    """Turn cells into report rows: rounds, summary, and ratios.

    The ratios are to uWSGI+nginx for the per-core rows, and to the suite's one-worker-per-core figure for scaling.
    """
    rows = []
    for cell in cells:
        row = {**{k: v for k, v in vars(cell).items() if k != "rounds"}, "rounds": cell.rounds}
        row["summary"] = stats.summarize(cell.rounds) if cell.rounds else None
        rows.append(row)
    for row in rows:
        reference = BASELINE if row["section"] == "per_core" else SUITE
        base = next(
            (r for r in rows if r["section"] == "per_core" and r["stack"] == reference and r["mode"] == row["mode"]),
            None,
        )
        mine, theirs = row["summary"] or {}, (base or {}).get("summary") or {}
        row["ratio"] = stats.ratio(mine.get("requests_per_s"), theirs.get("requests_per_s"))
        row["ratio_per_cpu"] = stats.ratio(mine.get("requests_per_cpu_s"), theirs.get("requests_per_cpu_s"))
    return rows


def run(
    plan: Plan,
    stacks: tuple[Stack, ...],
    pythons: dict[str, Path],
    rundir: Path,
    *,
    scaling: bool = True,
) -> dict[str, Any]:
    """Run the per-core comparison and the scaling runs; return the results document (not yet written anywhere)."""
    started = time.monotonic()
    conditions = machine.describe()
    shutil.rmtree(rundir, ignore_errors=True)
    raw = rundir / "logs"
    raw.mkdir(parents=True)

    def ready(stack: Stack) -> bool:
        return stack.venv is None or stack.venv in pythons

    def context(stack: Stack, index: int, env: dict[str, str] | None = None) -> Context:
        stack_dir = rundir / f"{index}-{stack.key}"
        stack_dir.mkdir(parents=True, exist_ok=True)
        stack_dir.chmod(0o755)
        return Context(procs.free_port(), stack_dir, pythons, env or {})

    per_core = [(stack, context(stack, i), None) for i, stack in enumerate(stacks)]
    cells = _run_section(
        "per_core",
        per_core,
        plan,
        server_cpus=plan.server_cpus,
        load_cpus=plan.load_cpus,
        threads=1,
        pythons_ready=ready,
        raw=raw,
    )
    suite = next((s for s in PER_CORE if s.key == SUITE), None)
    if scaling and plan.scaling and suite is not None:
        # Each point with PRELOAD off and on, side by side: the memory a worker adds either way (report.py).
        points = [(wpc, preload) for preload in (False, True) for wpc in plan.scaling]
        entries = [
            (suite, context(suite, 100 + i, scaling_env(wpc, preload)), wpc) for i, (wpc, preload) in enumerate(points)
        ]
        cells += _run_section(
            "scaling",
            entries,
            plan,
            server_cpus=plan.scaling_cpus,
            load_cpus=None,
            threads=len(_cpus(plan.scaling_cpus)),
            pythons_ready=ready,
            raw=raw,
        )
    conditions["loadavg_end"] = machine.loadavg()
    return {
        "schema": 1,
        "machine": conditions,
        "plan": asdict(plan),
        "rows": summarize(cells),
        "elapsed_s": round(time.monotonic() - started, 1),
    }
