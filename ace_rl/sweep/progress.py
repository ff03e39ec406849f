"""What a sweep's runs have done, read from their directories (no channel back from the workers): each run's
progress, sweep_status.json (what the directories cannot tell), the table of runs, and `ace-rl sweep --status`.
A run's state (done, resumable, ...) is ace_rl.runstate's answer; this module only labels it."""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ace_rl.extras import install_hint, missing_modules
from ace_rl.rundir import RunDir, RunLock, is_locked
from ace_rl.runstate import (
    RunPhase,
    RunState,
    checkpoints,
    reached_total_steps,
    run_state,
)
from ace_rl.sweep.args import SweepError
from ace_rl.sweep.spec import SPEC_FILE, STATUS_FILE, load_spec, write_json

EXTRA_HINT = install_hint("sweep")


# --------------------------------------------------------------------------------------------------------------
# One run's progress
# --------------------------------------------------------------------------------------------------------------
@dataclass
class RunProgress:
    env_step: int = 0
    started: bool = False  # the run directory holds a run
    last_eval: float | None = None
    last_success: float | None = None
    modified: float = 0.0  # latest modification time of its logs (seconds since the epoch)


def _last_row(path: Path, tail_bytes: int = 16_384) -> dict[str, str] | None:
    """The last complete row of a CSV log, reading only its end."""
    try:
        with open(path, "rb") as file:
            header = file.readline().decode()
            size = file.seek(0, os.SEEK_END)
            start = max(len(header), size - tail_bytes)
            file.seek(start)
            tail = file.read().decode(errors="replace")
    except OSError:
        return None
    lines = tail.split("\n")
    complete = lines[:-1]  # what follows the last newline may be a row being written
    if start > len(header) and complete:
        complete = complete[1:]  # the first line of the tail may be cut
    for line in reversed(complete):
        if line.strip():
            rows = list(csv.reader(io.StringIO(header + line + "\n")))
            fields = next(csv.reader(io.StringIO(header)), [])
            if len(rows) >= 2 and len(rows[1]) == len(fields):
                return dict(zip(fields, rows[1]))
    return None


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "") else None
    except ValueError:
        return None


def observe_run(run_dir: Path, total_steps: int) -> RunProgress:
    """Progress of a run read from its directory: the latest of its logs and checkpoints."""
    directory = RunDir(run_dir)
    progress = RunProgress(started=directory.is_run())
    if not progress.started:
        return progress
    state_steps = [step for step, _ in checkpoints(run_dir)]
    steps = list(state_steps)
    metrics = _last_row(directory.metrics)
    episodes = _last_row(directory.episodes)
    for row in (metrics, episodes):
        env_step = None if row is None else _number(row.get("env_step"))
        if env_step is not None:
            steps.append(int(env_step))
    progress.env_step = max(steps, default=0)
    if metrics is not None:
        progress.last_eval = _number(metrics.get("eval_return_mean"))
        progress.last_success = _number(metrics.get("eval_success_rate"))
    if reached_total_steps(run_dir, total_steps, state_steps):
        progress.env_step = max(progress.env_step, total_steps)
    mtimes = [
        path.stat().st_mtime for path in (directory.config, directory.metrics, directory.episodes) if path.is_file()
    ]
    progress.modified = max(mtimes, default=0.0)
    return progress


# --------------------------------------------------------------------------------------------------------------
# sweep_status.json: failures and what is in flight
# --------------------------------------------------------------------------------------------------------------
def load_status(out: Path) -> dict[str, Any]:
    try:
        document = json.loads((out / STATUS_FILE).read_text())
        return document if isinstance(document.get("runs"), dict) else {"runs": {}}
    except (OSError, ValueError, AttributeError):
        return {"runs": {}}


def save_status(out: Path, status: dict[str, Any]) -> None:
    status["updated"] = datetime.now().isoformat(timespec="seconds")
    write_json(out / STATUS_FILE, status)


def recorded_failure(status: dict[str, Any], name: str) -> str | None:
    """The error sweep_status.json records for a run that failed; None for any other run."""
    record = status["runs"].get(name, {})
    return str(record.get("error", "")) if record.get("state") == "failed" else None


# --------------------------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------------------------
@dataclass
class RunRow:
    name: str
    state: str  # queued, running, done, failed, stopped (unfinished, resumable from a checkpoint)
    env_step: int
    total_steps: int
    last_eval: float | None = None
    last_success: float | None = None
    note: str = ""


def table_state(state: RunState) -> tuple[str, str]:
    """A run's state as the table shows it, and its note: a run the next sweep continues from a checkpoint is
    stopped; one it starts (again) from env step 0 is queued."""
    if state.phase is RunPhase.FAILED:
        return "failed", state.failure
    if state.phase is RunPhase.RESUMABLE:
        if state.restarts:
            return "queued", "stopped before its first checkpoint: starts again from env step 0"
        return "stopped", "continues from its checkpoint on the next ace-rl sweep"
    if state.phase is RunPhase.FRESH:
        return "queued", ""
    return state.phase.value, ""  # done, running


def status_rows(document: dict[str, Any], out: Path, status: dict[str, Any], sweep_running: bool) -> list[RunRow]:
    """The table of runs as the directories and sweep_status.json tell it, without running anything."""
    rows = []
    for run in document["runs"]:
        total = int(run["config"]["total_steps"])
        run_dir = out / run["name"]
        progress = observe_run(run_dir, total)
        state, note = table_state(run_state(run_dir, total, failure=recorded_failure(status, run["name"])))
        in_flight = sweep_running and status["runs"].get(run["name"], {}).get("state") == "running"
        if in_flight and state in ("queued", "stopped"):
            state, note = "running", ""
        rows.append(
            RunRow(run["name"], state, progress.env_step, total, progress.last_eval, progress.last_success, note)
        )
    return rows


STATE_STYLES = {"queued": "dim", "running": "cyan", "done": "green", "failed": "bold red", "stopped": "yellow"}


def render_table(rows: Sequence[RunRow], max_rows: int | None = None) -> Any:
    from rich.table import Table

    shown = list(rows)
    hidden = 0
    if max_rows is not None and len(shown) > max_rows:
        order = {"running": 0, "failed": 1, "stopped": 2, "queued": 3, "done": 4}
        keep = {id(row) for row in sorted(shown, key=lambda row: order[row.state])[:max_rows]}
        hidden = len(shown) - max_rows
        shown = [row for row in shown if id(row) in keep]
    counts = {state: sum(row.state == state for row in rows) for state in STATE_STYLES}
    caption = ", ".join(f"{count} {state}" for state, count in counts.items() if count)
    if hidden:
        caption += f" ({hidden} rows not shown; ace-rl sweep --status DIR shows all)"
    table = Table(caption=caption, caption_justify="left", expand=False)
    for column in ("run", "state", "env step", "last eval", "note"):
        table.add_column(column, justify="right" if column in ("env step", "last eval") else "left", overflow="fold")
    for row in shown:
        evaluation = "" if row.last_eval is None else f"{row.last_eval:.1f}"
        if row.last_success is not None:
            evaluation += f" (success {row.last_success:.2f})"
        style = STATE_STYLES[row.state]
        table.add_row(
            row.name, f"[{style}]{row.state}[/]", f"{row.env_step:,} / {row.total_steps:,}", evaluation, row.note
        )
    return table


def console() -> Any:
    """Where the table goes: the terminal, or wide lines for logs and pipes (rather than run names folded at 80)."""
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=200)


def require(*modules: str) -> None:
    """Refuse in one line, naming the extra, when a module of the sweep extra is not installed."""
    missing = [{"ray": "Ray"}.get(module, module) for module in missing_modules(*modules)]
    if missing:
        raise SweepError(
            f"ace-rl sweep needs {' and '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not installed; "
            f"install {'it' if len(missing) == 1 else 'them'} with: {EXTRA_HINT}"
        )


def show_status(out: Path) -> int:
    """`ace-rl sweep --status DIR`: print the table; exit status 1 when a run failed."""
    require("rich")
    if not (out / SPEC_FILE).is_file():
        raise SweepError(f"no sweep in {out} ({SPEC_FILE} is missing)")
    document = load_spec(out)
    running = is_locked(out)
    rows = status_rows(document, out, load_status(out), running)
    terminal = console()
    terminal.print(render_table(rows))
    holder = RunLock(out).holder() if running else None
    plan = document.get("plan")
    made_of = f"plan {plan.get('name')}, " if isinstance(plan, dict) else ""
    scale = f"budget scale {document.get('budget_scale', 1.0):g}, " if document.get("budget_scale", 1.0) != 1.0 else ""
    terminal.print(
        f"sweep {out}: {made_of}{scale}" + (f"running (ace-rl sweep pid {holder})" if running else "not running"),
        highlight=False,
    )
    return 1 if any(row.state == "failed" for row in rows) else 0
