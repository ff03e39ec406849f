"""How long the commands that do not train take to start: `ace-rl --help`, `ace-rl report --help`, `ace-rl sweep
--status DIR`, `ace-rl export --help`, `ace-rl train --help`, and whether each imports PyTorch.

Each command runs ``--repeats`` times in a fresh interpreter (after one untimed warm-up run, so that the file cache
is warm for every checkout alike); the table gives the median wall time. ``--source DIR`` measures another checkout
of ace-rl (for example the commit before a change, made with `git worktree add /tmp/before COMMIT`), imported from
DIR instead of the installed ace-rl, so that the two are measured in the same run on the same machine:

    python benchmarks/startup.py --source /tmp/before --repeats 7
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
# Prints whether torch was imported once the command is done (the command's own exit is kept).
# ACE_RL_SOURCE: import ace_rl from that checkout, not from the editable install (whose import hook would win).
RUNNER = (
    "import os, sys, atexit\n"
    "source = os.environ.get('ACE_RL_SOURCE')\n"
    "if source:\n"
    "    sys.meta_path[:] = [f for f in sys.meta_path if not type(f).__module__.startswith('__editable__')]\n"
    "    sys.path.insert(0, source)\n"
    "atexit.register(lambda: print('TORCH_IMPORTED=%s' % ('torch' in sys.modules), file=sys.stderr))\n"
    "from ace_rl.cli import main\n"
    "print('ACE_RL_FROM=%s' % os.path.dirname(os.path.dirname(sys.modules['ace_rl'].__file__)), file=sys.stderr)\n"
    "main(sys.argv[1:])\n"
)


def make_sweep(directory: Path, source: Path) -> Path:
    """A finished one-run sweep to point `sweep --status` at (made once, with the checkout under test)."""
    out = directory / "sweep"
    command = [
        sys.executable,
        "-c",
        RUNNER,
        "sweep",
        "--out",
        str(out),
        "--env",
        "Pendulum-v1",
        "--seed",
        "0",
        "--preset",
        "small",
        "--total-steps",
        "200",
        "--start-steps",
        "100",
        "--batch-size",
        "32",
        "--hidden-size",
        "32",
        "--eval-every",
        "200",
        "--eval-episodes",
        "1",
    ]
    subprocess.run(command, check=True, capture_output=True, env=_environment(source), timeout=900)
    return out


def _environment(source: Path) -> dict[str, str]:
    return {**os.environ, "ACE_RL_SOURCE": str(source)}


def time_command(args: list[str], source: Path, repeats: int) -> tuple[float, bool]:
    """Median seconds of ``repeats`` runs, and whether the command imported torch."""
    environment = _environment(source)
    timings = []
    imported_torch = False
    for attempt in range(repeats + 1):
        started = time.perf_counter()
        result = subprocess.run([sys.executable, "-c", RUNNER, *args], capture_output=True, text=True, env=environment)
        elapsed = time.perf_counter() - started
        imported_torch = "TORCH_IMPORTED=True" in result.stderr
        if f"ACE_RL_FROM={source}\n" not in result.stderr:
            raise RuntimeError(f"ace-rl {' '.join(args)} did not run from {source}: {result.stderr[-500:]}")
        if attempt:  # the first run warms the file cache
            timings.append(elapsed)
    return statistics.median(timings), imported_torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=None, help="another checkout to measure beside this one")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    checkouts = {"this checkout": REPO}
    if args.source is not None:
        checkouts = {f"{args.source}": args.source.resolve(), **checkouts}
    scratch = Path(tempfile.mkdtemp(prefix="ace-rl-startup-"))
    try:
        sweep = make_sweep(scratch, REPO)
        commands = {
            "ace-rl --help": ["--help"],
            "ace-rl report --help": ["report", "--help"],
            "ace-rl sweep --status DIR": ["sweep", "--status", str(sweep)],
            "ace-rl export --help": ["export", "--help"],
            "ace-rl train --help": ["train", "--help"],
        }
        rows = []
        for name, source in checkouts.items():
            for command, argv in commands.items():
                seconds, torch_imported = time_command(argv, source, args.repeats)
                rows.append(
                    {"checkout": name, "command": command, "median_seconds": seconds, "imports_torch": torch_imported}
                )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"{'checkout':<28} {'command':<28} {'median s':>9}  imports torch")
    for row in rows:
        print(f"{row['checkout']:<28} {row['command']:<28} {row['median_seconds']:>9.2f}  {row['imports_torch']}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    output = RESULTS / "startup.json"
    output.write_text(json.dumps({"repeats": args.repeats, "cpus": os.cpu_count(), "rows": rows}, indent=2) + "\n")
    print(f"written to {output}")


if __name__ == "__main__":
    main()
