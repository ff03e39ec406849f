"""Weights & Biases logging (`--wandb-project`, extra `[wandb]`): what TensorBoard gets, against the env step.

- Every scalar is logged with the run's ``env_step`` as its x-axis (``define_metric("*", step_metric=...)``),
  so that W&B plots line up with TensorBoard's and with the CSV files.
- The configuration (config.json's content) is the W&B run's config; the evaluations (metrics.csv) and the
  causal weights (causal_weights.csv) are logged as tables, read from the run directory.
- The W&B run id is kept in ``RUN/wandb_id.txt``: a resumed run continues the same W&B run
  (``wandb.init(id=..., resume="allow")``). Rows the resumed run writes again (those after its checkpoint)
  appear twice in W&B, which, unlike TensorBoard, cannot purge them.
- Works offline: ``WANDB_MODE=offline`` writes the run under ``WANDB_DIR`` (default ``./wandb``), to be
  uploaded later with ``wandb sync``.
"""

from __future__ import annotations

import csv
import importlib.util
import os
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ace_rl.errors import AceRlError
from ace_rl.extras import install_hint
from ace_rl.rundir import RunDir, write_atomically

ENV_STEP = "env_step"
"""The x-axis of every logged value."""
WANDB_EXTRA_HINT = f"install it with: {install_hint('wandb')}"


class WandbError(AceRlError, RuntimeError):
    """W&B logging was asked for but cannot start: wandb is not installed or fails to import, or the W&B run
    cannot be opened."""


def check_wandb_usable() -> None:
    """Refuse, in one line, a wandb that is missing or that raises on import (a broken install): checked before a
    run writes anything, since a W&B run is opened only after the run directory is set up."""
    spec = importlib.util.find_spec("wandb")  # not extras.missing_modules: its origin names a broken install
    if spec is None:
        raise WandbError(f"--wandb-project needs wandb, which is not installed; {WANDB_EXTRA_HINT}")
    try:
        import wandb  # noqa: F401
    except Exception as error:  # a broken install raises anything: ImportError, AttributeError, RuntimeError, ...
        text = str(error).strip()
        cause = f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__
        raise WandbError(
            f"--wandb-project needs wandb, but the wandb at {spec.origin} fails to import ({cause}); "
            f"repair or remove it, then: {install_hint('wandb')}"
        ) from error


def wandb_run_id(run_dir: Path) -> str:
    """The W&B run id of ``run_dir``: the one kept in ``RUN/wandb_id.txt``, else a new one, written there."""
    path = RunDir(run_dir).wandb_id
    if path.is_file():
        kept = path.read_text().strip()
        if kept:
            return kept
    run_id = secrets.token_hex(6)  # W&B ids are short strings of letters and digits, unique within a project
    write_atomically(path, lambda file: file.write((run_id + "\n").encode()))
    return run_id


def _read_table(path: Path) -> tuple[list[str], list[list[Any]]]:
    """A CSV file's header and rows, numbers as floats (empty cells as None)."""
    if not path.is_file():
        return [], []
    with open(path, newline="") as file:
        rows = list(csv.reader(file))
    if not rows:
        return [], []

    def value(cell: str) -> Any:
        if cell == "":
            return None
        try:
            return float(cell)
        except ValueError:
            return cell

    return rows[0], [[value(cell) for cell in row] for row in rows[1:] if len(row) == len(rows[0])]


class WandbLogger:
    """One run directory's W&B run. `RunLogger.scalars` forwards to `scalars`; `tables` after an evaluation or a
    causal fit; `video` for a recorded episode; `finish` at the end (or on a stop: the run can be resumed)."""

    def __init__(
        self,
        run_dir: Path,
        config: Mapping[str, Any],
        project: str,
        entity: str | None = None,
        group: str | None = None,
        tags: Sequence[str] = (),
        name: str | None = None,
    ) -> None:
        check_wandb_usable()
        import wandb

        self._wandb = wandb
        self.run_dir = Path(run_dir)
        self.run_id = wandb_run_id(self.run_dir)
        try:
            self.run = wandb.init(
                project=project,
                entity=entity,
                group=group,
                tags=list(tags) or None,
                name=name or self.run_dir.name,
                id=self.run_id,
                resume="allow",
                dir=os.environ.get("WANDB_DIR"),  # read now: wandb reads it once per process otherwise
                settings=wandb.Settings(console="off"),  # leave stdout/stderr (and the progress bar) alone
            )
        except Exception as error:  # wandb raises its own errors, and others for network or login trouble
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise WandbError(
                f"cannot open the W&B run {self.run_id} of {self.run_dir} ({first_line}); log in with `wandb login`, "
                "or log offline with WANDB_MODE=offline and upload later with `wandb sync`"
            ) from error
        # A resumed run may change what RESUMABLE_SETTINGS allows (total_steps, ...).
        self.run.config.update(dict(config), allow_val_change=True)
        self.run.define_metric(ENV_STEP)
        self.run.define_metric("*", step_metric=ENV_STEP)

    def scalars(self, values: Mapping[str, float], env_step: int) -> None:
        self.run.log({**values, ENV_STEP: env_step})

    def tables(self, env_step: int) -> None:
        """Log the evaluations so far (``eval/table``, metrics.csv) and the causal weights so far
        (``causal/table``, causal_weights.csv) as W&B tables, each a new version of the one before."""
        paths = RunDir(self.run_dir)
        logged: dict[str, Any] = {}
        for key, path in (("eval/table", paths.metrics), ("causal/table", paths.causal_weights)):
            columns, rows = _read_table(path)
            if rows:
                header: list[str | int] = list(columns)  # wandb.Table's type for column names
                logged[key] = self._wandb.Table(columns=header, data=rows)
        if logged:
            self.run.log({**logged, ENV_STEP: env_step})

    def video(self, path: Path, env_step: int, key: str = "eval/video") -> None:
        """Log an MP4 file written by ace_rl.video."""
        self.run.log({key: self._wandb.Video(str(path), format="mp4"), ENV_STEP: env_step})

    def finish(self, failed: bool = False) -> None:
        """Finish the W&B run; ``failed``: as failed (exit code 1), for a run that stopped on an error, which is
        the error to report, so a failure to finish is not raised over it."""
        if not failed:
            self.run.finish()
            return
        try:
            self.run.finish(exit_code=1)
        except Exception:  # noqa: BLE001 - the run's own error is the one to report
            pass
