"""A run directory's layout, in one place: training writes it; evaluation, resume, sweeps and reports read it.

    RUN/
      config.json                 the resolved configuration (TrainConfig as JSON)
      metrics.csv                 one row per evaluation
      episodes.csv                one row per training episode
      causal_weights.csv          one row per causal fit (columns w0..: one per action dimension)
      actions.json                the action dimensions' names and how many are distractors (--distractor-actions)
      resets.csv                  one row per reset
      tensorboard/                TensorBoard event files
      checkpoints/best.pt         the policy at its best evaluation (ace-rl eval)
      checkpoints/final.pt        the policy at the end of training
      checkpoints/state-*.pt      full-state checkpoints (+ .sha256), read by --resume
      .lock                       held (fcntl.flock) by the one process training in the directory; holds its pid
      videos/step-*.mp4           one evaluation episode every --video-every env steps; eval-*.mp4 by ace-rl eval --video
      wandb_id.txt                the Weights & Biases run id, so that a resumed run continues the same W&B run

A run directory belongs to one process at a time: `RunLock` is a kernel-released lock, so a killed
holder never leaves it stuck.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ace_rl.errors import RUN_FAULT, AceRlError

CONFIG = "config.json"
METRICS = "metrics.csv"
EPISODES = "episodes.csv"
CAUSAL_WEIGHTS = "causal_weights.csv"
RESETS = "resets.csv"
ACTIONS = "actions.json"
TENSORBOARD = "tensorboard"
CHECKPOINTS = "checkpoints"
LOCK = ".lock"
POLICY_NAMES: tuple[str, ...] = ("best", "final")
STATE_PATTERN = "state-*.pt"
TEMPORARY_SUFFIX = ".tmp"
VIDEOS = "videos"
STOP_RECORD = "stopped.json"
WANDB_ID = "wandb_id.txt"


class RunDirError(AceRlError, OSError):
    """A run directory cannot be used: in use by another process, not writable, not a directory."""

    exit_code = RUN_FAULT


class RunDirBusy(RunDirError):
    """The run directory is locked by another live process (the only RunDirError that waiting can cure)."""


@dataclass(frozen=True)
class RunDir:
    """The paths of one run directory (nothing is created by constructing one)."""

    path: Path

    @property
    def config(self) -> Path:
        return self.path / CONFIG

    @property
    def metrics(self) -> Path:
        return self.path / METRICS

    @property
    def episodes(self) -> Path:
        return self.path / EPISODES

    @property
    def causal_weights(self) -> Path:
        return self.path / CAUSAL_WEIGHTS

    @property
    def resets(self) -> Path:
        return self.path / RESETS

    @property
    def actions(self) -> Path:
        return self.path / ACTIONS

    @property
    def tensorboard(self) -> Path:
        return self.path / TENSORBOARD

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS

    @property
    def lock_file(self) -> Path:
        return self.path / LOCK

    def policy(self, name: str) -> Path:
        """``best`` or ``final``: the policy checkpoint read by ``ace-rl eval``."""
        return self.checkpoints / f"{name}.pt"

    def state(self, env_step: int) -> Path:
        return self.checkpoints / f"state-{env_step:010d}.pt"

    def states(self) -> list[Path]:
        """Full-state checkpoints, oldest first."""
        return sorted(self.checkpoints.glob(STATE_PATTERN))

    def is_run(self) -> bool:
        """Whether this directory holds a run (its config.json was written)."""
        return self.config.is_file()

    @property
    def videos(self) -> Path:
        return self.path / VIDEOS

    def training_video(self, env_step: int) -> Path:
        """The evaluation episode recorded at ``env_step`` (``--video-every``)."""
        return self.videos / f"step-{env_step:08d}.mp4"

    def eval_video(self, checkpoint: str) -> Path:
        """The default file of ``ace-rl eval RUN --checkpoint CHECKPOINT --video``."""
        return self.videos / f"eval-{checkpoint}.mp4"

    @property
    def wandb_id(self) -> Path:
        return self.path / WANDB_ID

    @property
    def stop_record(self) -> Path:
        """Where a run stopped early by a callback says so (ace_rl.runstate.StopRecord)."""
        return self.path / STOP_RECORD

    def temporary_files(self) -> list[Path]:
        """Half-written files (``*.tmp``) that a killed process may have left behind."""
        if not self.path.is_dir():
            return []
        return sorted(
            path
            for folder in (self.path, self.checkpoints, self.videos)
            for path in folder.glob("*" + TEMPORARY_SUFFIX)
        )


# flock's errors: another process holds the lock; the file system has no locks (NFS without its lock
# daemon, some FUSE and network file systems).
LOCK_HELD_ERRNOS = frozenset({errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES})
LOCKS_UNSUPPORTED_ERRNOS = frozenset({errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EINVAL})


def _lock_failure(directory: Path, error: OSError) -> RunDirError:
    if error.errno in LOCKS_UNSUPPORTED_ERRNOS:
        return RunDirError(
            f"the file system of {directory} does not support file locks (flock: {error.strerror}), which keep two "
            "processes out of one run directory; put runs and sweeps on a local file system"
        )
    return RunDirError(f"cannot lock run directory {directory}: {error.strerror}")


class RunLock:
    """An exclusive lock on a run directory for the life of the process that trains in it.

    ``fcntl.flock`` locks belong to the open file: the kernel releases them when the process ends, however
    it ends (SIGKILL included), so no stale lock is ever left behind. The holder's pid is written into the
    lock file so that a refused process can name it.
    """

    def __init__(self, run_dir: Path) -> None:
        self.path = RunDir(run_dir).lock_file
        self._file: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise RunDirError naming the directory and the holder's pid; writes nothing on refusal."""
        try:
            descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise RunDirError(f"cannot lock run directory {self.path.parent}: {error.strerror}") from None
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(descriptor)
            if error.errno not in LOCK_HELD_ERRNOS:
                raise _lock_failure(self.path.parent, error) from None
            holder = self.holder()
            raise RunDirBusy(
                f"run directory {self.path.parent} is in use by another ace-rl process"
                f"{f' (pid {holder})' if holder else ''}; wait for it to finish or stop it first"
            ) from None
        self._file = descriptor
        try:
            os.ftruncate(descriptor, 0)
            os.write(descriptor, f"{os.getpid()}\n".encode())
        except OSError:
            pass  # the pid is a courtesy for the refused process; the lock itself is held

    def holder(self) -> int | None:
        """The pid written by the process that holds (or last held) the lock."""
        try:
            return int(self.path.read_text().strip())
        except (OSError, ValueError):
            return None

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            os.close(self._file)
            self._file = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def is_locked(run_dir: Path) -> bool:
    """Whether a live process holds the run directory's lock (for sweeps and status tables).

    Raises RunDirError (never RunDirBusy) where the lock cannot be tested, e.g. on a file system without
    locks: no process can hold it there, and waiting would not help."""
    lock_file = RunDir(run_dir).lock_file
    if not lock_file.is_file():
        return False
    try:
        descriptor = os.open(lock_file, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as error:
        if error.errno in LOCK_HELD_ERRNOS:
            return True
        raise _lock_failure(run_dir, error) from None
    finally:
        os.close(descriptor)
    return False


def find_runs(root: Path) -> list[Path]:
    """The run directories at or below ``root`` (a run, a sweep directory or any folder of runs), sorted.

    A run's own subfolders are not searched, nor hidden folders."""
    found = []
    for directory, subdirs, _ in os.walk(root):
        if RunDir(Path(directory)).is_run():
            found.append(Path(directory))
            subdirs.clear()
        else:
            subdirs[:] = sorted(name for name in subdirs if not name.startswith("."))
    return sorted(found)


def write_atomically(path: Path, write: Callable[[_WriteErrorRecorder], object]) -> None:
    """Write ``path`` through ``write(file)`` under a temporary name, flush it to disk, then rename it (what
    ``write`` returns is ignored).

    A crash at any point leaves either the previous file or the complete new one, never half a file. A
    failed write (disk full, read-only file system) removes the temporary file and raises RunDirError with
    one line naming the file and the cause, also where the writer (torch.save) turned the OSError into an
    error of its own. Any other error of ``write`` is raised as it is, after removing the temporary file.
    """
    temporary = path.with_name(path.name + TEMPORARY_SUFFIX)
    recorder: _WriteErrorRecorder | None = None
    created = [parent for parent in path.parents if not parent.exists()]  # deepest first
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(temporary, "wb") as file:
            recorder = _WriteErrorRecorder(file)
            write(recorder)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        _remove_quietly(temporary)
        for directory in created:  # the directories made for the file go with it (a new nested --out)
            try:
                directory.rmdir()
            except OSError:
                break
        # torch.save swallows the OSError of a failed write and raises a RuntimeError of its own ("unexpected
        # pos ..."): the recorder keeps the real cause.
        cause = error if isinstance(error, OSError) else recorder.error if recorder is not None else None
        if cause is None:
            raise
        raise RunDirError(f"cannot write {path}: {cause.strerror or cause}") from None


class _WriteErrorRecorder:
    """The file handed to a `write_atomically` writer: passes writes through and keeps the first OSError."""

    def __init__(self, file: BinaryIO) -> None:
        self.file = file
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        try:
            return self.file.write(data)
        except OSError as error:
            self.error = self.error or error
            raise

    def flush(self) -> None:
        try:
            self.file.flush()
        except OSError as error:
            self.error = self.error or error
            raise


def _remove_quietly(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass  # a directory that cannot even be listed: there is no temporary file to remove


# actions.json: the action dimensions' names (ace_rl.actions.action_names) and the distractor count
def write_actions_file(path: Path, names: list[str], distractors: int) -> None:
    text = json.dumps({"names": names, "distractors": distractors}, indent=2) + "\n"
    write_atomically(path, lambda file: file.write(text.encode()))


def read_actions_file(path: Path) -> tuple[list[str], int] | None:
    """The names and the distractor count an actions.json holds, or None when there is none (older runs) or it
    is unreadable."""
    try:
        values = json.loads(path.read_text())
        names, distractors = values["names"], int(values.get("distractors", 0))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        return None
    return names, distractors
