"""Run logging: CSV tables in the run directory and TensorBoard scalars, all indexed by the env step."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import IO, Sequence

from torch.utils.tensorboard import SummaryWriter

METRICS_COLUMNS = ["env_step", "updates", "eval_return_mean", "eval_return_std", "wall_time"]
EPISODES_COLUMNS = ["env_step", "episode", "return", "length", "terminated", "wall_time"]
RESETS_COLUMNS = ["env_step", "update", "dormancy_ratio", "reset_factor", "kind"]


def causal_columns(action_dim: int) -> list[str]:
    return ["env_step", *[f"w{i}" for i in range(action_dim)], "method", "seconds", "dropped_columns", "note"]


class CsvTable:
    """An append-only CSV file with a fixed header, flushed after every row."""

    def __init__(self, path: Path, columns: Sequence[str]) -> None:
        self.path = path
        self.columns = list(columns)
        self._file: IO[str] = open(path, "w", newline="")
        self._writer = csv.writer(self._file)
        self._writer.writerow(self.columns)
        self._file.flush()

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
    def __init__(self, run_dir: Path, action_dim: int) -> None:
        self.metrics = CsvTable(run_dir / "metrics.csv", METRICS_COLUMNS)
        self.episodes = CsvTable(run_dir / "episodes.csv", EPISODES_COLUMNS)
        self.causal = CsvTable(run_dir / "causal_weights.csv", causal_columns(action_dim))
        self.resets = CsvTable(run_dir / "resets.csv", RESETS_COLUMNS)
        self.tensorboard = SummaryWriter(log_dir=str(run_dir / "tensorboard"))

    def scalars(self, values: dict[str, float], env_step: int) -> None:
        for name, value in values.items():
            self.tensorboard.add_scalar(name, value, env_step)

    def close(self) -> None:
        for table in (self.metrics, self.episodes, self.causal, self.resets):
            table.close()
        self.tensorboard.close()
