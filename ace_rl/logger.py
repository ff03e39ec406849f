"""Run logging: CSV tables in the run directory and TensorBoard scalars, all indexed by the env step."""

from __future__ import annotations

import csv
import io
import os
import threading
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from torch.utils.tensorboard import SummaryWriter

from ace_rl.rundir import RunDir, RunDirError, write_atomically

if TYPE_CHECKING:
    from ace_rl.wandb_logger import WandbLogger

METRICS_COLUMNS = ["env_step", "updates", "eval_return_mean", "eval_return_std", "eval_success_rate", "wall_time"]
EPISODES_COLUMNS = ["env_step", "episode", "return", "length", "terminated", "wall_time"]
RESETS_COLUMNS = ["env_step", "update", "dormancy_ratio", "reset_factor", "kind"]


def _quiet_tensorboard_write_errors(args: threading.ExceptHookArgs) -> None:
    """TensorBoard's writer thread hands a failed write (a full disk) to the next add_scalar, which reports
    it in one line; the thread's own traceback would only repeat it."""
    if (
        args.thread is not None
        and type(args.thread).__name__ == "_AsyncWriterThread"
        and issubclass(args.exc_type, OSError)
    ):
        return
    _previous_excepthook(args)


_previous_excepthook = threading.excepthook
_open_loggers = 0  # RunLoggers open in this process: the hook is in place while any is
_hook_lock = threading.Lock()


def _install_quiet_excepthook() -> None:
    """Chain the hook in front of the process's own when the first RunLogger opens (not on import)."""
    global _previous_excepthook, _open_loggers
    with _hook_lock:
        if _open_loggers == 0 and threading.excepthook is not _quiet_tensorboard_write_errors:
            _previous_excepthook = threading.excepthook
            threading.excepthook = _quiet_tensorboard_write_errors
        _open_loggers += 1


def _release_quiet_excepthook() -> None:
    """Give the process its own hook back once the last RunLogger closed (unless someone replaced ours since)."""
    global _open_loggers
    with _hook_lock:
        _open_loggers -= 1
        if _open_loggers == 0 and threading.excepthook is _quiet_tensorboard_write_errors:
            threading.excepthook = _previous_excepthook


def causal_columns(action_dim: int) -> list[str]:
    return ["env_step", *[f"w{i}" for i in range(action_dim)], "method", "seconds", "dropped_columns", "note"]


class CsvTable:
    """An append-only CSV file with a fixed header; every row reaches the file whole or not at all.

    Each row is written with one unbuffered write; if that fails (a full disk), the file is cut back to its
    length before the row and RunDirError names the file and the cause, so no half row is ever left.

    With ``resume_after_step``, an existing file is kept up to that env step and appended to: rows written
    after the checkpoint being resumed from are dropped, since the resumed run writes them again.
    """

    def __init__(self, path: Path, columns: Sequence[str], resume_after_step: int | None = None) -> None:
        self.path = path
        self.columns = list(columns)
        if resume_after_step is not None and path.is_file():
            self._keep_rows_up_to(resume_after_step)
        else:
            write_atomically(path, lambda file: file.write(_csv_line(self.columns)))
        try:
            self._file: BinaryIO = open(path, "a+b", buffering=0)  # readable: see _check_still_ours
        except OSError as error:
            raise RunDirError(f"cannot open {path}: {error.strerror or error}") from None

    def _keep_rows_up_to(self, env_step: int) -> None:
        try:
            with open(self.path, newline="") as file:
                rows = list(csv.reader(file))
        except (OSError, UnicodeDecodeError, csv.Error) as error:
            raise RunDirError(f"cannot read {self.path}: {error}") from None
        if not rows or rows[0] != self.columns:
            raise RunDirError(f"{self.path} does not have the expected header {','.join(self.columns)}")
        step_column = self.columns.index("env_step")
        # A row cut short by a kill (fewer fields) is dropped too.
        kept = [
            row
            for row in rows[1:]
            if len(row) == len(self.columns) and row[step_column].isdigit() and int(row[step_column]) <= env_step
        ]
        text = b"".join(_csv_line(row) for row in [self.columns, *kept])
        write_atomically(self.path, lambda file: file.write(text))

    def write(self, **values: object) -> None:
        if set(values) != set(self.columns):
            raise KeyError(f"{self.path.name}: expected columns {self.columns}, got {sorted(values)}")
        self._check_still_ours()
        line = _csv_line([_format(values[column]) for column in self.columns])
        length = self._file.seek(0, io.SEEK_END)
        try:
            remaining = memoryview(line)
            while remaining:  # a short write is followed by one that names the cause
                remaining = remaining[self._file.write(remaining) :]
        except OSError as error:
            try:
                self._file.truncate(length)
            except OSError:
                pass
            raise RunDirError(f"cannot write {self.path}: {error.strerror or error}") from None

    def _check_still_ours(self) -> None:
        """Refuse to go on writing into a file that another program replaced or removed at this path (a git stash or
        checkout, a sync): the rows would go to a file no one can read any more. The run's own rows are put back
        where the replacement holds only an earlier part of them (what a stash or checkout of an older commit
        leaves); otherwise they go beside it, as NAME.run-rows, and the replacement is left as it is."""
        try:
            current = os.stat(self.path)
        except FileNotFoundError:
            current = None
        written = os.fstat(self._file.fileno())
        if current is not None and (current.st_ino, current.st_dev) == (written.st_ino, written.st_dev):
            return
        self._file.seek(0)
        ours = self._file.read()
        theirs = self.path.read_bytes() if current is not None else b""
        if ours.startswith(theirs):
            write_atomically(self.path, lambda file: file.write(ours))
            kept = f"its {len(ours.splitlines()) - 1} rows are back in {self.path.name}"
        else:
            beside = self.path.with_name(self.path.name + ".run-rows")
            write_atomically(beside, lambda file: file.write(ours))
            kept = f"its rows are in {beside.name}, beside the new {self.path.name}"
        what = "removed" if current is None else "replaced"
        raise RunDirError(
            f"{self.path} was {what} by another program while the run wrote it; the run stops ({kept}); "
            "ace-rl train --resume continues it from its latest checkpoint"
        )

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> CsvTable:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _csv_line(values: Sequence[object]) -> bytes:
    text = io.StringIO(newline="")
    csv.writer(text).writerow(values)
    return text.getvalue().encode()


def _format(value: object) -> object:
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


def _open_tensorboard(log_dir: Path, purge_step: int | None) -> SummaryWriter:
    if log_dir.exists() and not log_dir.is_dir():
        raise RunDirError(f"{log_dir} is not a directory; TensorBoard's event files go there: move it away")
    try:
        return SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)
    except OSError as error:
        raise RunDirError(f"cannot write {log_dir}: {error.strerror or error}") from None


class RunLogger:
    def __init__(
        self, run_dir: Path, action_dim: int, resume_after_step: int | None = None, wandb: WandbLogger | None = None
    ) -> None:
        """``wandb``: also send every scalar to this W&B run (and finish it on close). If a file cannot be
        created (a full disk), those already opened are closed and RunDirError names the file and the cause."""
        self.wandb = wandb
        layout = RunDir(run_dir)
        _install_quiet_excepthook()
        with ExitStack() as opened:
            opened.callback(_release_quiet_excepthook)
            self.metrics = opened.enter_context(CsvTable(layout.metrics, METRICS_COLUMNS, resume_after_step))
            self.episodes = opened.enter_context(CsvTable(layout.episodes, EPISODES_COLUMNS, resume_after_step))
            self.causal = opened.enter_context(
                CsvTable(layout.causal_weights, causal_columns(action_dim), resume_after_step)
            )
            self.resets = opened.enter_context(CsvTable(layout.resets, RESETS_COLUMNS, resume_after_step))
            # TensorBoard hides the earlier events at steps >= purge_step, which the resumed run writes again.
            purge_step = None if resume_after_step is None else resume_after_step + 1
            self.tensorboard = _open_tensorboard(layout.tensorboard, purge_step)
            opened.pop_all()
        self._holds_excepthook = True

    def scalars(self, values: dict[str, float], env_step: int) -> None:
        try:
            for name, value in values.items():
                self.tensorboard.add_scalar(name, value, env_step)
        except OSError as error:  # raised here by TensorBoard's writer thread after a failed write
            raise RunDirError(f"cannot write {self.tensorboard.log_dir}: {error.strerror or error}") from None
        if self.wandb is not None:
            self.wandb.scalars(values, env_step)

    def close(self, failed: bool = False) -> None:
        """Close every file; a failure to flush TensorBoard (a full disk) does not hide the CSVs' state.
        ``failed``: the run stopped on an error, and its W&B run is finished as failed."""
        for table in (self.metrics, self.episodes, self.causal, self.resets):
            table.close()
        try:
            self.tensorboard.close()
        except OSError:
            pass
        finally:
            if self._holds_excepthook:
                self._holds_excepthook = False
                _release_quiet_excepthook()
        if self.wandb is not None:
            self.wandb.finish(failed=failed)
