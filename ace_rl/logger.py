"""Run logging: CSV tables in the run directory and TensorBoard scalars, all indexed by the env step."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import IO, Sequence

from torch.utils.tensorboard import SummaryWriter

from ace_rl.checkpoint import write_atomically

METRICS_COLUMNS = ["env_step", "updates", "eval_return_mean", "eval_return_std", "eval_success_rate", "wall_time"]
EPISODES_COLUMNS = ["env_step", "episode", "return", "length", "terminated", "wall_time"]
RESETS_COLUMNS = ["env_step", "update", "dormancy_ratio", "reset_factor", "kind"]


def causal_columns(action_dim: int) -> list[str]:
    return ["env_step", *[f"w{i}" for i in range(action_dim)], "method", "seconds", "dropped_columns", "note"]


class CsvTable:
    """An append-only CSV file with a fixed header, flushed after every row.

    With ``resume_after_step``, an existing file is kept up to that env step and appended to: rows written
    after the checkpoint being resumed from are dropped, since the resumed run writes them again.
    """

    def __init__(self, path: Path, columns: Sequence[str], resume_after_step: int | None = None) -> None:
        self.path = path
        self.columns = list(columns)
        if resume_after_step is not None and path.is_file():
            self._keep_rows_up_to(resume_after_step)
            self._file: IO[str] = open(path, "a", newline="")
            self._writer = csv.writer(self._file)
        else:
            self._file = open(path, "w", newline="")
            self._writer = csv.writer(self._file)
            self._writer.writerow(self.columns)
            self._file.flush()

    def _keep_rows_up_to(self, env_step: int) -> None:
        with open(self.path, newline="") as file:
            rows = list(csv.reader(file))
        if not rows or rows[0] != self.columns:
            raise ValueError(f"{self.path} does not have the expected header {self.columns}")
        step_column = self.columns.index("env_step")
        # A row cut short by a kill (fewer fields) is dropped too.
        kept = [row for row in rows[1:] if len(row) == len(self.columns) and int(row[step_column]) <= env_step]
        text = io.StringIO(newline="")
        writer = csv.writer(text)
        writer.writerow(self.columns)
        writer.writerows(kept)
        write_atomically(self.path, lambda file: file.write(text.getvalue().encode()))

    def write(self, **values: object) -> None:
        if set(values) != set(self.columns):
            raise KeyError(f"{self.path.name}: expected columns {self.columns}, got {sorted(values)}")
        self._writer.writerow([_format(values[column]) for column in self.columns])
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def _format(value: object) -> object:
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


class RunLogger:
    def __init__(self, run_dir: Path, action_dim: int, resume_after_step: int | None = None) -> None:
        self.metrics = CsvTable(run_dir / "metrics.csv", METRICS_COLUMNS, resume_after_step)
        self.episodes = CsvTable(run_dir / "episodes.csv", EPISODES_COLUMNS, resume_after_step)
        self.causal = CsvTable(run_dir / "causal_weights.csv", causal_columns(action_dim), resume_after_step)
        self.resets = CsvTable(run_dir / "resets.csv", RESETS_COLUMNS, resume_after_step)
        # TensorBoard hides the earlier events at steps >= purge_step, which the resumed run writes again.
        purge_step = None if resume_after_step is None else resume_after_step + 1
        self.tensorboard = SummaryWriter(log_dir=str(run_dir / "tensorboard"), purge_step=purge_step)

    def scalars(self, values: dict[str, float], env_step: int) -> None:
        for name, value in values.items():
            self.tensorboard.add_scalar(name, value, env_step)

    def close(self) -> None:
        for table in (self.metrics, self.episodes, self.causal, self.resets):
            table.close()
        self.tensorboard.close()
