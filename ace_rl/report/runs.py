"""Reading run directories for the report: the runs at or below the given directories, their logged values, and
their grouping by task, algorithm and swept options (with the labels the report shows)."""

from __future__ import annotations

import functools
import json
import math
import os
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ace_rl.config import PRESET_VALUES, UNGROUPED_SETTINGS, TrainConfig, equals_sac_reason, to_json_dict
from ace_rl.logger import METRICS_COLUMNS, RESETS_COLUMNS
from ace_rl.report.libraries import ReportError, pandas
from ace_rl.report.text import listing
from ace_rl.rundir import (
    CAUSAL_WEIGHTS,
    CHECKPOINTS,
    CONFIG,
    EPISODES,
    METRICS,
    RESETS,
    RunDir,
    find_runs,
    read_actions_file,
)

RUN_FILES = (METRICS, EPISODES, CAUSAL_WEIGHTS, RESETS, CHECKPOINTS)
"""Files and folders only a run directory holds: a directory with one of them but no config.json is a run whose
configuration is lost."""

# Runs that differ only in these belong to one group (ace_rl.config owns the list); different lengths
# (total_steps) and evaluation periods (eval_every) are aligned, not split.
NOT_GROUPED = UNGROUPED_SETTINGS
TASK_OPTIONS = frozenset({"env", "reward", "algo"})
ALGO_ORDER = {"ace": 0, "sac": 1, "td3": 2}
_TRAIN_FIELDS = frozenset(TrainConfig.__dataclass_fields__)


@dataclass(eq=False)
class RunRecord:
    """One run directory's configuration and the logged values a report uses (equal only to itself)."""

    path: Path
    config: dict[str, Any]
    eval_steps: np.ndarray
    returns: np.ndarray
    success_rates: np.ndarray | None
    """None where the task has no success signal (the metrics.csv column is empty)."""
    causal_steps: np.ndarray
    causal_weights: np.ndarray
    """(causal fits, action dimensions)."""
    reset_steps: np.ndarray
    dormancy_ratios: np.ndarray
    action_names: list[str] | None = None
    """The action dimensions' names (actions.json; None for runs written before it), distractors last."""

    @property
    def distractors(self) -> int:
        return int(self.config.get("distractor_actions", 0))

    @property
    def task(self) -> str:
        return task_name(self.config)

    @property
    def algo(self) -> str:
        return str(self.config["algo"])

    @property
    def seed(self) -> int:
        return int(self.config["seed"])

    def scores(self, success: bool) -> np.ndarray:
        if success:
            assert self.success_rates is not None
            return self.success_rates
        return self.returns


def task_name(config: Mapping[str, Any]) -> str:
    """The task a run was trained on: its env id, marked when the reward is the sparse success reward."""
    return str(config["env"]) + (" (sparse)" if config.get("reward") == "sparse" else "")


# ------------------------------------------------------------------------------------------------ tables


@dataclass
class Table:
    """A CSV file's header and rows, every field as text ("" where it was empty)."""

    path: Path
    header: list[str]
    rows: Any
    """A pandas DataFrame of the rows below the header, columns in header order."""

    def __len__(self) -> int:
        return len(self.rows)

    def text(self, name: str) -> list[str]:
        return self.rows.iloc[:, self.header.index(name)].tolist()

    def numbers(self, name: str) -> np.ndarray:
        """The column as finite floats (Python's float() reads each field); ReportError naming the first line
        that is not one."""
        fields = self.text(name)
        values: np.ndarray | None
        try:
            values = np.asarray(fields, dtype=object).astype(float)
        except ValueError:
            values = None
        if values is None or not np.isfinite(values).all():
            line, text = next((index + 2, text) for index, text in enumerate(fields) if not _is_finite_number(text))
            if not _is_number(text):
                raise ReportError(f"{self.path}: line {line}: {name} is {text!r}, not a number")
            raise ReportError(f"{self.path}: line {line}: {name} is {text}, not a finite number")
        return values

    def steps(self) -> np.ndarray:
        steps = self.numbers("env_step")
        if np.any(np.diff(steps) < 0):
            raise ReportError(f"{self.path}: env_step is not in increasing order")
        return steps


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _is_finite_number(text: str) -> bool:
    return _is_number(text) and math.isfinite(float(text))


def read_table(path: Path, required: Sequence[str]) -> Table:
    """A CSV file as a Table; ReportError when it cannot be read, lacks a required column, or has a row with
    more or fewer fields than the header."""
    pd = pandas()
    try:
        # The python engine pads a short row with None (the C engine pads with "", as if the fields were empty).
        raw = pd.read_csv(path, header=None, dtype=str, keep_default_na=False, engine="python", skip_blank_lines=False)
    except pd.errors.EmptyDataError:
        raise ReportError(f"{path}: unreadable (empty file, expected a header with {', '.join(required)})") from None
    except pd.errors.ParserError as error:
        too_long = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(error))
        if too_long:
            header_fields, line, fields = too_long.groups()
            raise ReportError(f"{path}: line {line} has {fields} fields, the header {header_fields}") from None
        raise ReportError(f"{path}: cannot be read ({error})") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ReportError(f"{path}: cannot be read ({getattr(error, 'strerror', None) or error})") from None
    header = [text for text in raw.iloc[0] if text is not None] if len(raw) else []
    missing = [column for column in required if column not in header]
    if missing:
        raise ReportError(f"{path}: unreadable (no column {', '.join(missing)}; expected {', '.join(required)})")
    rows = raw.iloc[1:]
    short = rows.isna().any(axis=1).to_numpy()
    if short.any():
        index = int(np.argmax(short))
        raise ReportError(
            f"{path}: line {index + 2} has {int(rows.iloc[index].notna().sum())} fields, the header {len(header)}"
        )
    return Table(path, header, rows)


# -------------------------------------------------------------------------------------------- one run


@functools.cache
def _defaults_json() -> str:
    return json.dumps(to_json_dict(TrainConfig()))


def _setting_defaults() -> dict[str, Any]:
    """TrainConfig's defaults as config.json holds them."""
    return json.loads(_defaults_json())


def load_run(path: Path) -> RunRecord:
    """Read one run directory; ReportError naming the file when config.json or a CSV cannot be read."""
    run_dir = RunDir(path)
    try:
        config = json.loads(run_dir.config.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ReportError(f"{run_dir.config}: unreadable config.json ({error})") from None
    if not isinstance(config, dict) or any(key not in config for key in ("env", "algo", "seed")):
        raise ReportError(f"{run_dir.config}: unreadable config.json (expected the env, algo and seed of a run)")
    config = {**_setting_defaults(), **config}  # settings added after a run was made had their defaults

    metrics = read_table(run_dir.metrics, METRICS_COLUMNS)
    eval_steps = metrics.steps()
    if np.any(np.diff(eval_steps) == 0):
        raise ReportError(f"{run_dir.metrics}: an env step is evaluated twice")
    returns = metrics.numbers("eval_return_mean")
    filled = [text != "" for text in metrics.text("eval_success_rate")]
    success_rates = None
    if filled and all(filled):
        success_rates = metrics.numbers("eval_success_rate")
    elif any(filled):
        raise ReportError(f"{run_dir.metrics}: eval_success_rate is empty on some rows and not on others")

    causal_steps, causal_weights = np.empty(0), np.empty((0, 0))
    if run_dir.causal_weights.is_file():
        causal = read_table(run_dir.causal_weights, ["env_step"])
        weight_columns = sorted((c for c in causal.header if re.fullmatch(r"w\d+", c)), key=lambda c: int(c[1:]))
        causal_steps = causal.steps()
        causal_weights = (
            np.stack([causal.numbers(column) for column in weight_columns], axis=1)
            if weight_columns
            else np.empty((len(causal), 0))
        )

    reset_steps, dormancy_ratios = np.empty(0), np.empty(0)
    if run_dir.resets.is_file():
        resets = read_table(run_dir.resets, RESETS_COLUMNS)
        reset_steps = resets.steps()
        dormancy_ratios = resets.numbers("dormancy_ratio")
    actions = read_actions_file(run_dir.actions)
    return RunRecord(
        path,
        config,
        eval_steps,
        returns,
        success_rates,
        causal_steps,
        causal_weights,
        reset_steps,
        dormancy_ratios,
        actions[0] if actions is not None else None,
    )


def run_equals_sac(run: RunRecord) -> bool:
    """Whether an ACE run's settings allowed no causal fit and no reset (config.equals_sac_reason)."""
    settings = {name: value for name, value in run.config.items() if name in _TRAIN_FIELDS}
    try:
        return equals_sac_reason(TrainConfig(**settings)) is not None
    except (TypeError, ValueError, ZeroDivisionError):
        return False


def fits_causal_weights(config: Mapping[str, Any]) -> bool:
    """Whether a run's training loop fits causal weights: a built-in or already imported agent registered with
    causal=True and a causal method other than none (an agent module is never imported by the report)."""
    from ace_rl.agents import registered_agents

    spec = registered_agents().get(str(config.get("algo")))
    return spec is not None and spec.causal and config.get("causal_method") != "none"


# ------------------------------------------------------------------------------------------ collecting


@dataclass
class Collected:
    """The runs a report reads, and what it says about the directories it left out."""

    runs: list[RunRecord]
    notes: list[str]
    warnings: list[str]
    """The notes the command also prints."""


def runs_without_config(root: Path) -> list[Path]:
    """The directories at or below ``root`` that hold a run's files (RUN_FILES) but no config.json: runs whose
    configuration is lost, which cannot be grouped. Neither runs' nor these directories' own subfolders are
    searched, nor hidden folders."""
    found = []
    for directory, subdirs, files in os.walk(root):
        path = Path(directory)
        if RunDir(path).is_run():
            subdirs.clear()
        elif any(name in files or name in subdirs for name in RUN_FILES):
            found.append(path)
            subdirs.clear()
        else:
            subdirs[:] = sorted(name for name in subdirs if not name.startswith("."))
    return sorted(found)


def _no_runs_problem(directory: Path, without_config: list[Path]) -> str:
    if without_config == [directory]:
        return f"holds run files but no {CONFIG} (the run's settings are lost)"
    if without_config:
        return (
            f"holds no runs with a {CONFIG}: {listing([str(p) for p in without_config], 3)} hold(s) "
            f"run files but no {CONFIG}"
        )
    return f"holds no runs (no {CONFIG} at or below it)"


def collect_runs(dirs: Sequence[Path], skip_empty: bool) -> Collected:
    """The runs at or below ``dirs``, each once; runs without evaluations stop the report unless ``skip_empty``.
    Directories with run files but no config.json are named in the notes and the warnings."""
    if not dirs:
        raise ReportError("no directory given; expected run directories or directories of runs (sweeps)")
    paths: list[Path] = []
    lost: list[Path] = []
    for directory in dirs:
        if not directory.is_dir():
            raise ReportError(
                f"{directory} is not a directory; expected a run directory or a directory of runs (a sweep)"
            )
        found = find_runs(directory)
        without_config = runs_without_config(directory)
        if not found:
            raise ReportError(
                f"{directory} {_no_runs_problem(directory, without_config)}; expected a run directory written by "
                "ace-rl train or a directory of them (a sweep)"
            )
        paths.extend(found)
        lost.extend(without_config)
    notes: list[str] = []
    warnings: list[str] = []
    lost = list({path.resolve(): path for path in lost}.values())
    if lost:
        text = (
            f"Left out {len(lost)} directory(ies) that hold run files but no {CONFIG} (the run's settings are lost, "
            f"so it cannot be grouped): {', '.join(str(path) for path in lost)}."
        )
        notes.append(text)
        warnings.append(text)
    unique = list({path.resolve(): path for path in paths}.values())
    runs = [load_run(path) for path in unique]
    empty = [run for run in runs if len(run.eval_steps) == 0]
    if empty:
        if not skip_empty:
            raise ReportError(
                f"{len(empty)} run(s) have no evaluation rows in metrics.csv yet: "
                f"{listing([str(run.path) for run in empty], 3)}; wait for their first evaluation or pass --skip-empty "
                "to leave them out"
            )
        notes.append(
            f"Left out {len(empty)} run(s) without an evaluation yet (--skip-empty): "
            f"{', '.join(str(run.path) for run in empty)}."
        )
        runs = [run for run in runs if len(run.eval_steps)]
        if not runs:
            raise ReportError("no run has an evaluation row yet; nothing to report")
    return Collected(runs, notes, warnings)


# -------------------------------------------------------------------------------------------- grouping


@dataclass
class Group:
    """The runs of one algorithm (with one setting of the swept options) on one task, in seed order."""

    task: str
    label: str
    runs: list[RunRecord]
    """One run per seed."""
    duplicates: list[RunRecord] = field(default_factory=list)
    """Runs left out because another run of the group has their seed (one seed is one sample, however many
    directories hold it: a sweep may have made identical runs that differ only in a logging option)."""

    @property
    def algo(self) -> str:
        return self.runs[0].algo

    @property
    def seeds(self) -> list[int]:
        return [run.seed for run in self.runs]


def swept_options(runs: Sequence[RunRecord]) -> dict[str, list[str]]:
    """Per algorithm, the options that differ between its runs on one task (other than NOT_GROUPED ones), in
    config order. The same options label the algorithm's runs on every task, so labels match across tasks."""
    configs: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    order: dict[str, None] = {}
    for run in runs:
        configs[(run.task, run.algo)].append(run.config)
        order.update(dict.fromkeys(run.config))
    swept: dict[str, set[str]] = defaultdict(set)
    for (_, algo), cell in configs.items():
        names = {name for config in cell for name in config} - NOT_GROUPED - TASK_OPTIONS
        for name in names:
            if len({json.dumps(config.get(name), sort_keys=True) for config in cell}) > 1:
                swept[algo].add(name)
    return {algo: [name for name in order if name in names] for algo, names in swept.items()}


def run_label(run: RunRecord, options: Sequence[str]) -> str:
    """``algo`` followed by ``option=value`` for each swept option; where the preset is swept, options left at
    their preset's value are not repeated."""
    preset_values = PRESET_VALUES.get(str(run.config.get("preset")), {}) if "preset" in options else {}
    parts = [run.algo]
    for name in options:
        value = run.config.get(name)
        if name in preset_values and value == preset_values[name]:
            continue
        parts.append(f"{name}={value}")
    return " ".join(parts)


def one_run_per_seed(runs: Sequence[RunRecord]) -> tuple[list[RunRecord], list[RunRecord]]:
    """The runs in seed order keeping one per seed (the one that reached the furthest env step; on a tie, the
    first by path), and the runs left out."""
    kept: dict[int, RunRecord] = {}
    duplicates = []
    for run in sorted(runs, key=lambda r: (r.seed, -r.eval_steps[-1], str(r.path))):
        if run.seed in kept:
            duplicates.append(run)
        else:
            kept[run.seed] = run
    return list(kept.values()), duplicates


def group_runs(runs: Sequence[RunRecord]) -> list[Group]:
    """Groups by task and label, tasks in name order, then ACE, SAC, TD3 and other algorithms."""
    options = swept_options(runs)
    cells: dict[tuple[str, str], list[RunRecord]] = defaultdict(list)
    for run in runs:
        cells[(run.task, run_label(run, options.get(run.algo, [])))].append(run)
    groups = [Group(task, label, *one_run_per_seed(cell)) for (task, label), cell in cells.items()]
    return sorted(groups, key=lambda g: (g.task, ALGO_ORDER.get(g.algo, len(ALGO_ORDER)), g.label))


def duplicate_seeds_note(group: Group) -> str:
    """Which runs of ``group`` repeat a seed, which one counts, and why."""
    seeds = [
        f"seed {run.seed} as {run.path} (also {', '.join(str(d.path) for d in group.duplicates if d.seed == run.seed)})"
        for run in group.runs
        if any(d.seed == run.seed for d in group.duplicates)
    ]
    return (
        f"{group.task} / {group.label}: {len(seeds)} seed(s) have more than one run; each seed counts once, as the "
        "run that reached the furthest env step (on a tie, the first by path), and the others are left out: "
        f"{'; '.join(seeds)}."
    )
