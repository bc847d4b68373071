"""Command line of the benchmark.

- `python -m bench venvs`: build (or reuse) the stacks' venvs under .cache/bench/
- `python -m bench run [--smoke] [...]`: throughput per core + scaling; writes results.json, .md, throughput.png
- `python -m bench provision`: provisioning times on a lab VM, added to results.json / results.md
- `python -m bench profile STACK`: py-spy profile of a stack's worker under load (where a gap to a peer comes from)
- `python -m bench render`: rewrite results.md and throughput.png from results.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench import paths, report, runner, stacks, venvs
from meinheld_build.build import PATCH_DIR, read_series

PROVISION_OUTCOME = paths.CACHE / "provision" / "outcome.json"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("venvs", help="build the venvs the stacks run from")
    run = sub.add_parser("run", help="measure throughput per core and scaling")
    run.add_argument("--smoke", action="store_true", help="a few seconds per stack: proves the harness, ranks nothing")
    run.add_argument(
        "--only", help="comma-separated stack keys (default: all): " + ", ".join(s.key for s in stacks.PER_CORE)
    )
    run.add_argument("--duration", type=int, help="seconds per measured run")
    run.add_argument("--warmup", type=int, help="seconds of warm-up per stack and mode")
    run.add_argument("--rounds", type=int, help="interleaved rounds")
    run.add_argument("--connections", type=int, help="wrk connections")
    run.add_argument("--no-scaling", action="store_true", help="skip the scaling runs")
    run.add_argument(
        "--baseline",
        "--baseline-series",
        dest="baseline",
        metavar="PATCH",
        help=f"add the {stacks.SUITE_BASELINE} stack: the suite with Meinheld built from meinheld_build/patches/series "
        "cut after PATCH (its number, e.g. 0017, or file name), to compare a change with the build before it",
    )
    run.add_argument("--out", type=Path, default=paths.RESULTS, help="results directory (default bench/results)")
    prov = sub.add_parser("provision", help="fresh converge, idempotent rerun, code-only deploy, image boot times")
    prov.add_argument("--out", type=Path, default=paths.RESULTS)
    prov.add_argument("--strategies", default="linear,mitogen", help="comma-separated: linear (Ansible's), mitogen")
    prov.add_argument("--playbooks", default="suite,reference", help="comma-separated: suite (site.yml), reference")
    prof = sub.add_parser("profile", help="py-spy profile of one stack's worker under wrk load")
    prof.add_argument("stack", choices=[s.key for s in stacks.PER_CORE])
    prof.add_argument("--mode", choices=runner.MODES, default="keep-alive")
    prof.add_argument("--duration", type=int, default=10)
    prof.add_argument("--native", action="store_true", help="include C frames (Meinheld, greenlet, CPython)")
    prof.add_argument("--out", type=Path, default=paths.CACHE / "profiles")
    render = sub.add_parser("render", help="rewrite results.md and the chart from results.json")
    render.add_argument("--out", type=Path, default=paths.RESULTS)
    return p


def _plan(args: argparse.Namespace) -> runner.Plan:
    plan = runner.Plan.smoke() if args.smoke else runner.Plan()
    changes = {
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "rounds": args.rounds,
        "connections": args.connections,
    }
    return replace(plan, **{k: v for k, v in changes.items() if v is not None})


def build_venvs(names: set[str], baseline: str | None = None) -> dict[str, Path]:
    """Build the venvs the chosen stacks need, plus peers (the chart's matplotlib), and the --baseline one if asked."""
    pythons = {name: venvs.ensure(name) for name in sorted((names - {stacks.SUITE_BASELINE}) | {"peers"})}
    if baseline is not None:
        pythons[stacks.SUITE_BASELINE] = venvs.ensure_baseline(baseline)
    return pythons


def baseline_series(value: str | None, patch_dir: Path = PATCH_DIR) -> dict[str, Any] | None:
    """What --baseline names: the series' last patch and its length; a value naming no patch exits with why."""
    if value is None:
        return None
    try:
        last = venvs.resolve_patch(patch_dir, value)
    except ValueError as error:
        raise SystemExit(f"python -m bench run: {error}") from None
    series = read_series(patch_dir)
    return {"last_patch": last.name, "patches": series.index(last) + 1, "of": len(series)}


def write(results: dict[str, Any], out: Path, peers_python: Path | None) -> None:
    """results.json, results.md and (with the bench venv) throughput.png in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    report.write_json(results, out / "results.json")
    chart = None
    if peers_python is not None:
        argv = [str(peers_python), "-m", "bench.chart", str(out / "results.json"), str(out / "throughput.png")]
        subprocess.run(argv, cwd=paths.REPO, check=True)
        chart = "throughput.png"
    (out / "results.md").write_text(report.markdown(results, chart))


def latest_provision(previous: Path) -> dict[str, Any]:
    """The last provisioning figures measured here: they take a VM and minutes, so `run` does not redo them."""
    if PROVISION_OUTCOME.exists():
        return json.loads(PROVISION_OUTCOME.read_text())
    if previous.exists():
        earlier = json.loads(previous.read_text()).get("provision")
        if earlier:
            return earlier
    return {"status": "not run", "reason": "`make bench-provision` has not run on this machine"}


def _run(args: argparse.Namespace) -> None:
    baseline = baseline_series(args.baseline)
    extra = (stacks.baseline_stack(baseline["last_patch"]),) if baseline else ()
    try:
        chosen = stacks.by_key(args.only.split(",") if args.only else None, extra)
    except ValueError as error:
        raise SystemExit(f"python -m bench run: {error}") from None
    pythons = build_venvs({s.venv for s in chosen if s.venv} | {"suite"}, args.baseline)
    rundir = paths.CACHE / ("run-smoke" if args.smoke else "run")
    results = runner.run(_plan(args), chosen, pythons, rundir, scaling=not args.no_scaling)
    results["venvs"] = {name: venvs.describe(python) for name, python in pythons.items()}
    results["smoke"] = bool(args.smoke)
    if baseline:
        results["baseline_series"] = baseline
    build = results["venvs"].get("suite", {}).get("meinheld_build", "")
    if not build.startswith("patched"):  # never let the table call a stock build "patched"
        for row in results["rows"]:
            if row["stack"] == stacks.SUITE:
                row["label"] = "suite: Gunicorn + Meinheld (STOCK: patched build not available)"
    results["provision"] = latest_provision(args.out / "results.json")
    shutil.copytree(rundir / "logs", args.out / "raw", dirs_exist_ok=True)
    write(results, args.out, pythons["peers"])
    runner.log(f"wrote {args.out}/results.md, results.json, throughput.png in {results['elapsed_s']:.0f} s")


def _provision(args: argparse.Namespace) -> None:
    from bench import provision  # the lab is imported only when provisioning is asked for

    outcome = provision.run(tuple(args.strategies.split(",")), tuple(args.playbooks.split(",")))
    PROVISION_OUTCOME.parent.mkdir(parents=True, exist_ok=True)
    PROVISION_OUTCOME.write_text(json.dumps(outcome, indent=1) + "\n")
    target = args.out / "results.json"
    if not target.exists():
        print(json.dumps(outcome, indent=1))
        return
    results = json.loads(target.read_text())
    results["provision"] = outcome
    write(results, args.out, None)
    (args.out / "results.md").write_text(report.markdown(results, "throughput.png"))


def main(argv: list[str] | None = None) -> None:
    """Dispatch the subcommand."""
    args = _parser().parse_args(argv)
    if args.command == "venvs":
        for name, python in build_venvs(set(venvs.VENVS)).items():
            print(f"{name}: {python} {json.dumps(venvs.describe(python))}")
    elif args.command == "run":
        _run(args)
    elif args.command == "provision":
        _provision(args)
    elif args.command == "profile":
        from bench import profile  # py-spy lives in the bench venv; only this command needs it

        stack = stacks.by_key([args.stack])[0]
        pythons = build_venvs({stack.venv} if stack.venv else set())
        profile.run(args.stack, args.mode, args.duration, pythons, args.native, args.out)
    elif args.command == "render":
        results = json.loads((args.out / "results.json").read_text())
        write(results, args.out, venvs.ensure("peers"))
    else:  # pragma: no cover - argparse rejects unknown commands
        sys.exit(2)
