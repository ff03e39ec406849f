"""What runs in a Ray worker, on whichever node Ray picks: one grid point trained to its end, started, resumed
or restarted as ace_rl.runstate says, its output in DIR/logs/RUN.log, and its outcome in one line.

The worker gets its run's configuration from the driver, built there once, as the JSON object that the run's
config.json holds (`to_json_dict`), and trains it through the Python API (ace_rl.api.train): it parses no
command line."""

from __future__ import annotations

import io
import os
import socket
import time
import traceback
from contextlib import redirect_stderr, redirect_stdout, suppress
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from ace_rl.config import ConfigError, TrainConfig, config_from_json_dict
from ace_rl.rundir import RunDirBusy
from ace_rl.runstate import RunPhase, TrainingStopped, remove_interrupted_start, run_state
from ace_rl.sweep.spec import PlannedRun
from ace_rl.trust import CodeTrust

LOCK_WAIT_SECONDS = 600.0  # how long a retry waits for an earlier attempt that still holds the run directory
LOCK_POLL_SECONDS = 2.0


@dataclass
class RunOutcome:
    name: str
    state: str  # done, failed, stopped; lost: Ray failed it (the run continues next time)
    message: str = ""
    cluster_wide: bool = False  # lost with the whole cluster


# Sent back to the driver, so named as the package exports it (see PlannedRun in ace_rl.sweep.spec).
RunOutcome.__module__ = "ace_rl.sweep"


def execute_run(run: PlannedRun, config: dict[str, Any], log_path: Path) -> RunOutcome:
    """Train one grid point to the end: from scratch, or resumed from its latest checkpoint when it has one.

    ``config``: the run's configuration as its config.json holds it (`to_json_dict`), built by the driver.
    Runs inside a Ray worker. Ray calls it again after the worker died, and that call resumes. An earlier
    attempt that still holds the run directory (its lock) is waited for. Errors of the run itself (NaN stop,
    refused option, unreadable checkpoint, a full or read-only disk, anything else) become a failed outcome with
    a one-line message; the full traceback goes to the run's log.
    """
    from ace_rl.checkpoint import CheckpointError
    from ace_rl.envs import EnvError
    from ace_rl.loop_parts import NonFiniteError

    with _RunLog(log_path) as log, redirect_stdout(log), redirect_stderr(log):
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        while True:
            try:
                return _attempt(run, config)
            except RunDirBusy as error:  # only a held lock passes by waiting; a full disk or a read-only one does not
                if time.monotonic() > deadline:
                    return _failed(run, error)
                print(f"waiting {LOCK_POLL_SECONDS:g} s: {error}", flush=True)
                time.sleep(LOCK_POLL_SECONDS)
            except TrainingStopped as stop:
                print(f"stopped: {stop}", flush=True)
                return RunOutcome(run.name, "stopped", str(stop))
            except (ConfigError, EnvError, CheckpointError, NonFiniteError) as error:
                return _failed(run, error)
            except Exception as error:  # noqa: BLE001 - any error of one run must not stop the others
                traceback.print_exc()
                return _failed(run, error)


class _RunLog(io.TextIOBase):
    """DIR/logs/RUN.log, appended to; a line that cannot be written (a full disk) is lost rather than turning the
    run's outcome into an error about its log."""

    def __init__(self, path: Path) -> None:
        self._file: IO[str]
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(path, "a", buffering=1)  # open for the log's life; close() closes it
        except OSError:
            self._file = open(os.devnull, "w")

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        with suppress(OSError):
            self._file.write(text)
        return len(text)

    def flush(self) -> None:
        with suppress(OSError):
            self._file.flush()

    def close(self) -> None:
        super().close()  # flushes first
        with suppress(OSError):
            self._file.close()


def _failed(run: PlannedRun, error: BaseException) -> RunOutcome:
    message = f"{type(error).__name__}: {error}".splitlines()[0]
    print(f"failed: {message}", flush=True)
    return RunOutcome(run.name, "failed", message)


def run_config(run: PlannedRun, values: dict[str, Any]) -> TrainConfig:
    """The TrainConfig the driver sent as JSON. It is no file but what the driver accepted (the user's command, or
    a sweep.json read with their trust), so the modules of its own --env and --algo may be imported."""
    trust = CodeTrust.given(ids=[("env", values.get("env")), ("algo", values.get("algo"))])
    return config_from_json_dict(values, f"the configuration of run {run.name}", trust)


def _attempt(run: PlannedRun, values: dict[str, Any]) -> RunOutcome:
    from ace_rl.api import train

    config = run_config(run, values)
    # The GPUs Ray gave this worker (--gpus-per-run): Ray sets CUDA_VISIBLE_DEVICES to them.
    gpus = os.environ.get("CUDA_VISIBLE_DEVICES")
    shown_gpus = "" if gpus is None else f" CUDA_VISIBLE_DEVICES={gpus}"
    stamp = f"== {datetime.now().isoformat(timespec='seconds')} {socket.gethostname()} pid {os.getpid()}{shown_gpus}:"
    state = run_state(run.run_dir, run.total_steps)
    if state.phase is RunPhase.RUNNING:
        holder = f" (pid {state.holder})" if state.holder else ""
        raise RunDirBusy(f"run directory {run.run_dir} is held by an earlier attempt{holder}")
    if state.phase is RunPhase.DONE:
        print(f"{stamp} already done", flush=True)
        return RunOutcome(run.name, "done")
    if state.phase is RunPhase.RESUMABLE:
        # As `ace-rl train --resume` does: from the latest checkpoint, or, for a run stopped before its first one,
        # again from env step 0 in place (keeping what is not its output, such as wandb_id.txt: the same W&B run).
        # The run's config.json must hold the same experiment; the settings a resume may change are the driver's.
        print(f"{stamp} {state.continuation()}: ace-rl train --resume {run.run_dir}", flush=True)
        config = replace(config, resume=run.run_dir)
    else:
        remove_interrupted_start(run.run_dir)
        print(f"{stamp} starting: ace-rl train {' '.join(run.train_argv)}", flush=True)
    train(config)
    print(f"done at {datetime.now().isoformat(timespec='seconds')}", flush=True)
    return RunOutcome(run.name, "done")
