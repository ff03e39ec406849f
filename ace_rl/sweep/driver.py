"""The driver of a sweep: submits the runs to Ray (seed-major), follows them to their outcomes, records those in
sweep_status.json and the live table, notices a lost cluster, and on SIGINT/SIGTERM has every run checkpoint
and stop. Which runs are to run at all is ace_rl.runstate's answer, as for `ace-rl sweep --status`."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ace_rl.config import TrainConfig, to_json_dict
from ace_rl.rundir import is_locked
from ace_rl.runstate import RunPhase, run_state
from ace_rl.sweep import cluster
from ace_rl.sweep.args import SweepArgs
from ace_rl.sweep.cluster import (
    CLUSTER_ERRORS,
    CLUSTER_LOST_SECONDS,
    INFRASTRUCTURE_ERRORS,
    PROBE_INTERVAL_SECONDS,
    PROBE_SECONDS,
)
from ace_rl.sweep.progress import (
    RunProgress,
    RunRow,
    console,
    load_status,
    observe_run,
    recorded_failure,
    render_table,
    save_status,
    table_state,
)
from ace_rl.sweep.spec import LOGS, RAY_LOG, STATUS_FILE, PlannedRun
from ace_rl.sweep.worker import RunOutcome, execute_run

REFRESH_SECONDS = 1.0  # how often the driver reads the run directories
STOP_GRACE_SECONDS = 600.0  # how long an interrupted sweep waits for its runs to write their checkpoints


@dataclass
class Grid:
    """Every run of the sweep and what the driver knows of each."""

    runs: list[PlannedRun]
    state: dict[str, str] = field(default_factory=dict)
    note: dict[str, str] = field(default_factory=dict)
    progress: dict[str, RunProgress] = field(default_factory=dict)

    def observe(self, run: PlannedRun) -> RunProgress:
        self.progress[run.name] = observe_run(run.run_dir, run.total_steps)
        return self.progress[run.name]

    def rows(self) -> list[RunRow]:
        return [
            RunRow(
                run.name,
                self.state[run.name],
                self.progress[run.name].env_step,
                run.total_steps,
                self.progress[run.name].last_eval,
                self.progress[run.name].last_success,
                self.note.get(run.name, ""),
            )
            for run in self.runs
        ]

    def counts(self) -> str:
        """The runs by state, e.g. `runs: 3 done, 4 failed, 1 running of 8` (the steps alone read 0 / 0 when every
        run failed before its first step)."""
        states = [self.state[run.name] for run in self.runs]
        shown = [f"{states.count(state)} {state}" for state in ("done", "failed", "running") if state in states]
        return f"runs: {', '.join(shown) or 'none started'} of {len(states)}"

    def steps(self) -> tuple[int, int]:
        """Env steps done and to do over the grid; a failed run counts for the steps it reached."""
        done = sum(self.progress[run.name].env_step for run in self.runs)
        total = sum(
            self.progress[run.name].env_step if self.state[run.name] == "failed" else run.total_steps
            for run in self.runs
        )
        return done, total


def classify(runs: list[PlannedRun], out: Path, retry_failed: bool) -> tuple[Grid, list[PlannedRun], dict[str, Any]]:
    """Which runs are done, which failed earlier (left alone unless retry_failed), which are to run. A run that a
    process holds is to run: its worker waits for the lock."""
    status = load_status(out)
    status["runs"] = {name: record for name, record in status["runs"].items() if record.get("state") == "failed"}
    grid = Grid(runs)
    to_run: list[PlannedRun] = []
    for run in runs:
        grid.observe(run)
        failure = None if retry_failed else recorded_failure(status, run.name)
        state = run_state(run.run_dir, run.total_steps, failure=failure, check_lock=False)
        if state.phase is RunPhase.FAILED:
            grid.state[run.name], grid.note[run.name] = "failed", state.failure
            continue
        status["runs"].pop(run.name, None)
        if state.phase is RunPhase.DONE:
            grid.state[run.name] = "done"
        else:
            grid.state[run.name] = "queued"
            to_run.append(run)
    return grid, to_run, status


def run_grid(
    ray: Any,
    args: SweepArgs,
    out: Path,
    grid: Grid,
    to_run: list[PlannedRun],
    status: dict[str, Any],
    configs: dict[str, TrainConfig],
) -> int:
    """Run ``to_run`` on Ray, each with its configuration in ``configs`` (by run name), until every one has an
    outcome or the sweep stops; the sweep's exit status."""
    from rich.live import Live

    terminal = console()
    if not to_run:
        terminal.print(render_table(grid.rows()))
        return finish(out, grid, stopped_by=None)
    # Seed-major order: with fewer slots than runs, every task and algorithm gets its first seeds first.
    seed_position = {seed: index for index, seed in enumerate(dict.fromkeys(run.point["seed"] for run in grid.runs))}
    driver = Driver(ray, args, out, grid, status, configs, terminal)
    driver.waiting = sorted(to_run, key=lambda run: seed_position[run.point["seed"]])
    for run in driver.waiting:
        driver.status["runs"][run.name] = {"state": "queued"}
    driver.submit_waiting()
    driver.save()
    stop = SweepSignals()
    ray_output, raylet_lines = (
        cluster.native_stderr_to(out / LOGS / RAY_LOG),
        cluster.raylet_lines_to(out / LOGS / RAY_LOG),
    )
    with (
        stop.installed(),
        ray_output,
        raylet_lines,
        Live(driver.display(), console=terminal, refresh_per_second=2) as live,
    ):
        while driver.pending:  # submit_waiting refills it after each outcome; waiting runs need a slot in it
            try:
                ready, _ = ray.wait(list(driver.pending), num_returns=1, timeout=REFRESH_SECONDS)
            except (ray.exceptions.RayError, ConnectionError) as error:
                ready, driver.cluster_lost = [], cluster.error_line(error)
            for ref in ready:
                live.console.print(driver.collect(ref), highlight=False, soft_wrap=True)
            driver.check_cluster()
            if driver.cluster_lost is not None:
                driver.leave_unfinished()
                break
            if stop.requested is not None and driver.stopped_by is None:
                live.console.print(driver.stop(stop.requested), highlight=False, soft_wrap=True)
            if stop.count > 1 or driver.stop_overdue():
                driver.abandon()
            driver.submit_waiting()
            driver.mark_started()
            live.update(driver.display())
        for run in grid.runs:
            grid.observe(run)
        live.update(driver.display())
    status.pop("driver_pid", None)
    driver.save(final=True)
    return finish(out, grid, driver.stopped_by, driver.cluster_lost, args.address)


class Driver:
    """The runs in flight on Ray, and what becomes of each: recorded in sweep_status.json and the table."""

    def __init__(
        self,
        ray: Any,
        args: SweepArgs,
        out: Path,
        grid: Grid,
        status: dict[str, Any],
        configs: dict[str, TrainConfig],
        terminal: Any,
    ) -> None:
        from rich.progress import (
            BarColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.ray, self.args, self.out, self.grid, self.status = ray, args, out, grid, status
        # What each worker trains: its run's configuration as config.json holds it, serialised once, here.
        self.configs = {name: to_json_dict(config) for name, config in configs.items()}
        self.remote = ray.remote(execute_run)
        self.pending: dict[Any, PlannedRun] = {}
        self.waiting: list[PlannedRun] = []  # not yet handed to Ray (--max-concurrent), in submission order
        self.resubmitted: dict[str, int] = {}
        self.started_at = time.time()
        self.stopped_by: str | None = None
        self.stop_deadline: float | None = None
        self.cluster_lost: str | None = None  # why the sweep cannot go on: the Ray cluster is gone
        self.head = cluster.head_endpoint(ray, args.address)
        self.head_silent_since: float | None = None
        self.next_probe = 0.0
        self.status_unwritable = False
        self.status["driver_pid"] = os.getpid()
        self.bar = Progress(
            TextColumn("env steps"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.completed:,.0f} / {task.total:,.0f}"),
            TextColumn("{task.fields[runs]}"),
            TimeElapsedColumn(),
            TextColumn("left"),
            TimeRemainingColumn(),
            console=terminal,
        )
        self.bar_task = self.bar.add_task("grid", total=None, runs="")
        self.max_rows = max(5, terminal.size.height - 8) if terminal.is_terminal else None

    def submit_waiting(self) -> None:
        """Hand waiting runs to Ray while fewer than --max-concurrent are in flight (all of them without it: Ray
        then runs as many at once as the cluster's resources allow). A stopping sweep starts none."""
        limit = self.args.max_concurrent
        while self.waiting and self.stopped_by is None and (limit is None or len(self.pending) < limit):
            self.submit(self.waiting.pop(0))

    def submit(self, run: PlannedRun) -> None:
        options = {
            "num_cpus": self.args.threads_per_run,
            "num_gpus": self.args.gpus_per_run,
            "max_retries": self.args.max_retries,
            "retry_exceptions": False,
            "name": f"ace-rl {run.name}",
        }
        log = self.out / LOGS / f"{run.name}.log"
        ref = self.remote.options(**options).remote(run, self.configs[run.name], log)
        self.pending[ref] = run
        self.status["runs"][run.name] = {"state": "queued"}

    def collect(self, ref: Any) -> str:
        """Record the outcome of a finished task; the line to print."""
        run = self.pending.pop(ref)
        outcome = outcome_of(self.ray, ref, run, stopping=self.stopped_by is not None)
        progress = self.grid.observe(run)
        if outcome.state == "lost":
            # The cluster failed, not the run: it stays to do, as it was, and the next ace-rl sweep continues it.
            self.grid.state[run.name] = unfinished_state(run)
            self.status["runs"].pop(run.name, None)
            if self.cluster_lost is None and (outcome.cluster_wide or not self.head_answers()):
                self.cluster_lost = outcome.message
            self.save()
            return (
                f"{self.grid.state[run.name]:<8} {run.name}: {outcome.message} (Ray's failure, not the run's: it continues "
                "on the next ace-rl sweep)"
            )
        if (
            outcome.state == "stopped"
            and self.stopped_by is None
            and self.resubmitted.get(run.name, 0) < self.args.max_retries
        ):
            # Stopped by a signal that did not come from this sweep (a node draining): continue it.
            self.resubmitted[run.name] = self.resubmitted.get(run.name, 0) + 1
            self.submit(run)
            return f"resumed  {run.name}: {outcome.message}"
        self.grid.state[run.name] = outcome.state
        self.grid.note[run.name] = outcome.message if outcome.state == "failed" else ""
        if outcome.state == "failed":
            self.status["runs"][run.name] = {"state": "failed", "error": outcome.message}
        else:
            self.status["runs"].pop(run.name, None)
        self.save()
        return event_line(run, outcome, progress)

    def save(self, final: bool = False) -> None:
        """Write sweep_status.json. A write that fails (a full disk) is said once, and the sweep goes on: the run
        directories hold the runs' progress; the file only adds failures and what is in flight. The final write
        makes room by removing the old file first, so that no run is left marked running."""
        try:
            save_status(self.out, self.status)
            return
        except OSError as error:
            problem = str(error)
        if final:
            try:
                (self.out / STATUS_FILE).unlink(missing_ok=True)
                save_status(self.out, self.status)
                return
            except OSError as error:
                problem = str(error)
        if not self.status_unwritable or final:
            what = (
                "it records no failure now (the next ace-rl sweep runs the failed runs again)"
                if final
                else "the sweep goes on and tries again at each change"
            )
            print(f"ace-rl: warning: {problem}; {what}", file=sys.stderr)
        self.status_unwritable = True

    def head_answers(self) -> bool:
        """Whether the cluster's head accepts a connection (True where its address is not known)."""
        return self.head is None or cluster.answers(*self.head, timeout=PROBE_SECONDS)

    def check_cluster(self) -> None:
        """A head that stops answering for CLUSTER_LOST_SECONDS is a lost cluster (Ray alone would wait a minute,
        then abort this process)."""
        if self.cluster_lost is not None or self.head is None or time.monotonic() < self.next_probe:
            return
        self.next_probe = time.monotonic() + PROBE_INTERVAL_SECONDS
        if self.head_answers():
            self.head_silent_since = None
        elif self.head_silent_since is None:
            self.head_silent_since = time.monotonic()
        elif time.monotonic() - self.head_silent_since > CLUSTER_LOST_SECONDS:
            self.cluster_lost = (
                f"its head at {self.head[0]}:{self.head[1]} has not answered for {CLUSTER_LOST_SECONDS:g} s"
            )

    def leave_unfinished(self) -> None:
        """The cluster is gone: the runs in flight are left as they are (resumable, not failed), without asking Ray."""
        for run in [*self.pending.values(), *self.waiting]:
            self.grid.observe(run)
            self.grid.state[run.name] = unfinished_state(run)
            self.status["runs"].pop(run.name, None)
        self.pending.clear()
        self.waiting.clear()

    def stop(self, signal_name: str) -> str:
        """Ask every run to checkpoint and stop (Ray interrupts running tasks; the trainer's handler checkpoints)."""
        self.stopped_by = signal_name
        for run in self.waiting:  # never started: they stay to do
            self.status["runs"].pop(run.name, None)
        self.waiting.clear()
        running = sum(self.grid.state[run.name] == "running" for run in self.pending.values())
        for ref in self.pending:
            self.ray.cancel(ref, force=False)
        self.stop_deadline = time.monotonic() + STOP_GRACE_SECONDS
        return (
            f"{signal_name}: checkpointing {running} running runs; send it again to stop at once "
            "(they then continue from their last periodic checkpoint)"
        )

    def stop_overdue(self) -> bool:
        return self.stop_deadline is not None and time.monotonic() > self.stop_deadline

    def abandon(self) -> None:
        """Kill the runs still in flight; each continues from its last checkpoint next time."""
        for ref in self.pending:
            self.ray.cancel(ref, force=True)
        for run in [*self.pending.values(), *self.waiting]:
            self.grid.state[run.name] = unfinished_state(run)
            self.status["runs"].pop(run.name, None)
        self.pending.clear()
        self.waiting.clear()

    def mark_started(self) -> None:
        """Queued runs whose directory is locked or was written since the sweep began are running."""
        changed = False
        for run in self.pending.values():
            progress = self.grid.observe(run)
            if self.grid.state[run.name] == "queued" and (
                is_locked(run.run_dir) or progress.modified >= self.started_at
            ):
                self.grid.state[run.name] = "running"
                self.status["runs"][run.name] = {"state": "running"}
                changed = True
        if changed:
            self.save()

    def display(self) -> Any:
        from rich.console import Group

        done_steps, total_steps = self.grid.steps()
        self.bar.update(self.bar_task, completed=done_steps, total=total_steps, runs=self.grid.counts())
        return Group(self.bar, render_table(self.grid.rows(), self.max_rows))


def unfinished_state(run: PlannedRun) -> str:
    """The table's state of a run whose process the sweep stopped or lost: "stopped" when it has a checkpoint to
    continue from, else "queued" (it starts again from env step 0), as `--status` labels it."""
    return table_state(run_state(run.run_dir, run.total_steps, check_lock=False))[0]


def outcome_of(ray: Any, ref: Any, run: PlannedRun, stopping: bool) -> RunOutcome:
    try:
        return ray.get(ref)
    except ray.exceptions.TaskCancelledError:
        return RunOutcome(run.name, unfinished_state(run))
    except ray.exceptions.RayError as error:
        if stopping:
            return RunOutcome(run.name, "stopped")
        kinds = {cls.__name__ for cls in type(error).__mro__}
        if kinds & set(INFRASTRUCTURE_ERRORS) and not isinstance(error, ray.exceptions.RayTaskError):
            return RunOutcome(
                run.name, "lost", cluster.error_line(error), cluster_wide=bool(kinds & set(CLUSTER_ERRORS))
            )
        return RunOutcome(run.name, "failed", cluster.error_line(error))


def event_line(run: PlannedRun, outcome: RunOutcome, progress: RunProgress) -> str:
    evaluation = "" if progress.last_eval is None else f", last eval {progress.last_eval:.1f}"
    if outcome.state == "failed":
        return f"failed   {run.name}: {outcome.message}"
    return f"{outcome.state:<8} {run.name} at env step {progress.env_step:,}{evaluation}"


def finish(
    out: Path,
    grid: Grid,
    stopped_by: str | None,
    cluster_lost: str | None = None,
    address: str | None = None,
) -> int:
    failed = [run.name for run in grid.runs if grid.state[run.name] == "failed"]
    done = sum(grid.state[run.name] == "done" for run in grid.runs)
    unfinished = len(grid.runs) - done - len(failed)
    sys.stdout.flush()  # the table (stdout) before the summary (stderr)
    print(f"sweep {out}: {done} of {len(grid.runs)} runs done", file=sys.stderr)
    again = f"ace-rl sweep --out {out}" + (f" --address {address}" if address else "")
    if cluster_lost is not None:
        where = "once the cluster is back" if address else "(Ray starts again on this machine)"
        print(
            f"ace-rl: error: lost the Ray cluster ({cluster_lost}) with {unfinished} runs unfinished, none of them "
            f"failed{f' ({len(failed)} failed earlier)' if failed else ''}; continue them {where} with: {again}",
            file=sys.stderr,
        )
        return 1
    if stopped_by is not None or unfinished:
        how = f" by {stopped_by}" if stopped_by else ""
        print(f"ace-rl: sweep stopped{how} with {unfinished} runs unfinished; continue with: {again}", file=sys.stderr)
        if stopped_by is None and not failed:
            return 1  # Ray gave up on a run (its worker or node died too often): not done, though not failed either
    if failed:
        print(
            f"ace-rl: error: {len(failed)} of {len(grid.runs)} runs failed: {', '.join(failed)} (errors: ace-rl sweep "
            f"--status {out}; logs in {out / LOGS}; run them again with --retry-failed)",
            file=sys.stderr,
        )
        return 1
    return 0


class SweepSignals:
    """SIGINT and SIGTERM ask the runs to checkpoint and stop; a second one stops them at once."""

    def __init__(self) -> None:
        self.requested: str | None = None
        self.count = 0

    def _handle(self, signum: int, frame: object) -> None:
        self.count += 1
        self.requested = self.requested or signal.Signals(signum).name

    @contextmanager
    def installed(self) -> Iterator[None]:
        previous = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
