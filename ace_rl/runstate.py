"""What a run directory is now, and how a run goes on from there: one answer for `train`, `--resume`,
`sweep`, `sweep --status` and `report` (ace_rl.rundir says where its files are; this module says what they mean).

    fresh      no run there yet (no config.json): training starts one, in a directory create_run_dir made
    running    a live process holds the directory's lock (ace_rl.rundir.RunLock); nobody else touches it
    resumable  a run that is not done: it continues from its latest full-state checkpoint (from one at total_steps it
               only writes final.pt) or, stopped before its first one, starts again from env step 0 in place. Nothing
               is deleted but the run's own unusable files, so what is not its output (wandb_id.txt: the same W&B
               run) is kept
    done       it reached its total_steps and wrote its final.pt: final.pt and a full-state checkpoint at total_steps
               (written after final.pt), or final.pt alone where no checkpoint is left. A run a callback stopped
               early (ace_rl.callbacks) is done the same way at the env step it stopped at, as long as it is judged
               against the total it was stopped under (its stopped.json, `StopRecord`); with a larger total it is
               resumable, and continues from there
    failed     whoever ran it recorded why it failed (a sweep, in sweep_status.json) and it was not done since;
               the directory alone never says failed: a run stopped by an error resumes like any other

Reading a state costs a few file-system calls and no PyTorch: sweeps ask it of every run every second.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from datetime import datetime
from enum import Enum
from pathlib import Path

from ace_rl.config import TrainConfig
from ace_rl.rundir import RunDir, RunDirError, RunLock, is_locked, write_atomically


class TrainingStopped(Exception):
    """SIGINT or SIGTERM arrived; a checkpoint was written and the run can be resumed.

    Raised by the training loop (ace_rl.trainer) and so by `ace_rl.train` and `ace_rl.resume`; it lives here, beside
    the states a run goes on from, so that the command line and a sweep's worker name it without loading the loop."""


class RunPhase(str, Enum):
    FRESH = "fresh"
    RUNNING = "running"
    RESUMABLE = "resumable"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True)
class RunState:
    """What one run directory is, and where it would go on from."""

    run_dir: Path
    phase: RunPhase
    checkpoint: Path | None = None  # resumable: its latest full-state checkpoint; None: it restarts from env step 0
    checkpoint_step: int = 0  # the env step of that checkpoint
    failure: str = ""  # failed: the recorded one-line error
    holder: int | None = None  # running: the pid written into the lock

    @property
    def restarts(self) -> bool:
        """A run stopped before its first checkpoint: it starts again from env step 0 in its own directory."""
        return self.phase is RunPhase.RESUMABLE and self.checkpoint is None

    def continuation(self) -> str:
        """How the run goes on, for logs: `resuming from state-....pt (env step N)`, `restarting from ...`."""
        if self.phase is RunPhase.FRESH:
            return "starting"
        if self.restarts:
            return "restarting from env step 0 (stopped before its first checkpoint)"
        if self.checkpoint is not None:
            return f"resuming from {self.checkpoint.name} (env step {self.checkpoint_step})"
        return str(self.phase.value)


def state_step(path: Path) -> int | None:
    """The env step of a full-state checkpoint, from its name (RunDir.state); None for a name it did not write."""
    digits = path.name.removeprefix("state-").removesuffix(".pt")
    return int(digits) if digits.isdigit() else None


def checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """The run's full-state checkpoints and their env steps, oldest first."""
    found = [(state_step(path), path) for path in RunDir(run_dir).states()]
    return [(step, path) for step, path in found if step is not None]


def own_total_steps(run_dir: Path) -> int | None:
    """The total_steps in the run's config.json; None where it cannot be read."""
    try:
        total = json.loads(RunDir(run_dir).config.read_text()).get("total_steps")
    except (OSError, ValueError, AttributeError):
        return None
    return total if isinstance(total, int) else None


@dataclass(frozen=True)
class StopRecord:
    """A run stopped early by a callback: at which env step, under which total, by which callback and why.
    Written (as RUN/stopped.json, data only: it names no code to import) before the run's final.pt."""

    env_step: int
    total_steps: int
    callback: str
    reason: str


def write_stop_record(run_dir: Path, record: StopRecord) -> None:
    text = json.dumps(asdict(record), indent=2) + "\n"
    write_atomically(RunDir(run_dir).stop_record, lambda file: file.write(text.encode()))


def read_stop_record(run_dir: Path) -> StopRecord | None:
    """The run's StopRecord; None where it has none (or an unreadable one, which then says nothing)."""
    try:
        data = json.loads(RunDir(run_dir).stop_record.read_text())
        record = StopRecord(int(data["env_step"]), int(data["total_steps"]), str(data["callback"]), str(data["reason"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return record


def reached_total_steps(run_dir: Path, total_steps: int | None = None, steps: list[int] | None = None) -> bool:
    """Whether the run is done: its final.pt was written at ``total_steps`` (default: its config.json's) or later.

    A run writes final.pt and then its last full-state checkpoint, the only one at or past its total
    (ace_rl.trainer.Trainer.finish), so final.pt with a checkpoint at ``total_steps`` or later is done, and a run
    stopped between its last checkpoint and final.pt is not (`--resume` finishes it). Where no checkpoint is left at
    all (deleted to save space), final.pt alone says done, unless ``total_steps`` extends the run beyond its
    config.json's total. A run a callback stopped counts its stop's env step as its total, judged against the total
    it was stopped under (`StopRecord`). ``steps``: the env steps of its checkpoints, where the caller has listed
    them."""
    if not RunDir(run_dir).policy("final").is_file():
        return False
    steps = [step for step, _ in checkpoints(run_dir)] if steps is None else steps
    own = own_total_steps(run_dir)
    stop = read_stop_record(run_dir)
    if stop is not None and (total_steps if total_steps is not None else own) == stop.total_steps:
        return not steps or max(steps) >= stop.env_step
    if steps:
        target = own if total_steps is None else total_steps
        return target is None or max(steps) >= target
    return total_steps is None or own is None or total_steps <= own


def run_state(
    run_dir: Path,
    total_steps: int | None = None,
    failure: str | None = None,
    check_lock: bool = True,
) -> RunState:
    """What ``run_dir`` is now (see the module's docstring), judged against ``total_steps`` (default: the total in
    its config.json). ``failure``: the error recorded for its last attempt, where one was (a sweep's record).
    ``check_lock=False``: what it is apart from any process holding it (never running), for a caller that
    waits for the lock anyway or has just stopped that process.

    Raises RunDirError where the lock cannot be tested (a file system without locks)."""
    directory = RunDir(run_dir)
    states = checkpoints(run_dir)
    if directory.is_run() and reached_total_steps(run_dir, total_steps, [step for step, _ in states]):
        return RunState(run_dir, RunPhase.DONE)
    if check_lock and is_locked(run_dir):
        return RunState(run_dir, RunPhase.RUNNING, holder=RunLock(run_dir).holder())
    if failure is not None:
        return RunState(run_dir, RunPhase.FAILED, failure=failure)
    if not directory.is_run():
        return RunState(run_dir, RunPhase.FRESH)
    if not states:
        return RunState(run_dir, RunPhase.RESUMABLE)
    step, path = states[-1]
    return RunState(run_dir, RunPhase.RESUMABLE, checkpoint=path, checkpoint_step=step)


def remove_interrupted_start(run_dir: Path) -> list[Path]:
    """Before a fresh run starts in ``run_dir``: remove the temporary files of a start killed while writing its
    config.json, which would otherwise make the directory look used. Returns what was removed."""
    removed = RunDir(run_dir).temporary_files()
    for temporary in removed:
        temporary.unlink(missing_ok=True)
    return removed


# --------------------------------------------------------------------------------------------------------------
# New run directories
# --------------------------------------------------------------------------------------------------------------
def safe_name(text: str, *, compact: bool = False) -> str:
    """``text`` as part of a file or directory name: letters, digits, `-`, `_` and `.` kept, any other character
    `_` (run directories, sweep run names, TensorBoard tags). ``compact`` (the report's figure files): only ASCII
    letters and digits are kept, a run of other characters becomes one `_`, and none is left at either end."""
    if compact:
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")
    return "".join(char if char.isalnum() or char in "-_." else "_" for char in text)


def default_run_dir(config: TrainConfig) -> Path:
    """``runs/ENV__ALGO__sSEED__TIME``: where a run goes when no --run-dir is given."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{safe_name(config.env)}__{safe_name(config.algo)}__s{config.seed}__{stamp}"


def create_run_dir(run_dir: Path | None, config: TrainConfig) -> Path:
    """Create the run directory (``runs/ENV__ALGO__sSEED__TIME`` when none is given) and return it.

    A default name is claimed with an exclusive mkdir, with a numbered suffix on a clash, so identical
    commands started in the same second never share a directory. Any OS failure becomes one line.
    """
    if run_dir is None:
        stem = default_run_dir(config)
        for attempt in range(1, 1000):
            candidate = stem if attempt == 1 else stem.with_name(f"{stem.name}-{attempt}")
            try:
                candidate.mkdir(parents=True)
                return candidate
            except FileExistsError:
                continue
            except OSError as error:
                raise RunDirError(f"cannot create run directory {candidate}: {error.strerror or error}") from None
        raise RunDirError(f"cannot find a free run directory name next to {stem}")
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"--run-dir {run_dir} is a file, not a directory")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise RunDirError(f"cannot create run directory {run_dir}: {error.strerror or error}") from None
    return run_dir
