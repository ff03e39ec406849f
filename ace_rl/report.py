"""`ace-rl report`: judge many runs with the field's statistics (rliable) and plot ACE's own signals.

Reads run directories (single runs or whole sweeps), groups them by task, algorithm and swept option, aligns
their evaluations by env step, and writes PNG and PDF figures, ``summary.md``, ``summary.csv`` and
``curves.csv`` into the output directory.

Statistics follow Agarwal et al. (NeurIPS 2021) through their library, rliable: the interquartile mean (IQM)
over seeds with 95 % stratified-bootstrap confidence intervals per task; across tasks, IQM, median, mean and
optimality gap of normalised scores, the sample-efficiency curve, the performance profile and the probability
of improvement. rliable's bootstrap draws from NumPy's global generator (its ``random_state`` argument is not
used by the resampling), so every interval here is computed with that generator seeded with ``seed`` and its
previous state restored afterwards: the same inputs give the same report.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import itertools
import json
import math
import os
import re
import secrets
import shutil
import textwrap
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from ace_rl.config import PRESET_VALUES, RESUMABLE_SETTINGS, ConfigError, TrainConfig, equals_sac_reason, to_json_dict
from ace_rl.logger import METRICS_COLUMNS, RESETS_COLUMNS
from ace_rl.rundir import CAUSAL_WEIGHTS, CHECKPOINTS, CONFIG, EPISODES, METRICS, RESETS, RunDir, find_runs, read_actions_file
from ace_rl.scores import Normalisation, normalisation

EXTRA = 'pip install -e ".[report]"'
CONFIDENCE = 0.95
FEW_SEEDS = 5
"""Groups with fewer seeds than this are flagged: their intervals rest on too few runs to be trusted."""
SEED_RANGE = (0, 2**32 - 1)
"""The bootstrap seeds NumPy's global generator accepts."""
RUN_FILES = (METRICS, EPISODES, CAUSAL_WEIGHTS, RESETS, CHECKPOINTS)
"""Files and folders only a run directory holds: a directory with one of them but no config.json is a run whose
configuration is lost."""
SUBSET_SEARCH_LIMIT = 12
"""The aggregates try every subset of the labels (or, with more labels, of the tasks) up to this many."""

# Config options that change neither the training nor the agent: those a resumed run may change
# (config.RESUMABLE_SETTINGS: length, device, logging), and these. Runs that differ only in them belong to one
# group; different lengths (total_steps) and evaluation periods (eval_every) are aligned, not split.
NOT_GROUPED = RESUMABLE_SETTINGS | {"seed", "run_dir", "eval_every", "eval_episodes", "causal_time_limit"}
TASK_OPTIONS = frozenset({"env", "reward", "algo"})
ALGO_ORDER = {"ace": 0, "sac": 1, "td3": 2}
METRIC_NAMES = ("IQM", "Median", "Mean", "Optimality Gap")

# Figure sizes in inches; PNGs are written at DPI dots per inch, so a figure of w x h inches is w*DPI x h*DPI px.
DPI = 150
PANEL_SIZE = (4.0, 3.0)
"""One task's learning-curve panel; the learning-curve figure has up to PANEL_COLUMNS panels per row."""
PANEL_COLUMNS = 4
LEGEND_LINE = 0.2
LEGEND_CHARACTER = 0.075
"""Inches per line and (roughly) per character of the learning-curve figure's legend."""
CAUSAL_SIZE = (8.0, 6.0)
CURVE_SIZE = (7.0, 5.0)
"""The sample-efficiency curve and the performance profile."""
IMPROVEMENT_WIDTH = 8.0
IMPROVEMENT_HEIGHT = (1.4, 0.5)
"""The probability-of-improvement figure's height in inches: a base, and one row per pair."""
PAIRS_PER_FIGURE = 24
"""More pairs than this are split over several probability-of-improvement figures (each at most
(1.4 + 0.5 * 24) * DPI = 2,010 px tall)."""


class ReportError(ConfigError):
    """The runs cannot be reported: no runs, an unreadable file, a run without evaluations, a missing extra."""


@functools.lru_cache(maxsize=None)
def libraries() -> tuple[Any, Any, Any, Any]:
    """(pyplot, rliable.library, rliable.metrics, rliable.plot_utils), or ReportError naming the extra."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import arch
        import matplotlib.pyplot as plt
        from rliable import library as rly
        from rliable import metrics, plot_utils
    except ImportError as error:
        raise ReportError(f"ace-rl report needs the report extra: {EXTRA} ({error})") from None
    except (TypeError, AttributeError) as error:  # arch 7 fails to import under pandas 3
        raise ReportError(
            f"rliable cannot be imported with the installed arch/pandas ({error}); {EXTRA} pins working versions"
        ) from None
    if int(arch.__version__.split(".")[0]) >= 8:  # refuses the random_state that rliable 1.2 passes it
        raise ReportError(f"rliable does not work with arch {arch.__version__}; {EXTRA} pins arch<8")
    return plt, rly, metrics, plot_utils


# ---------------------------------------------------------------------------------------------------- runs


@dataclass(eq=False)
class Run:
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


def _read_table(path: Path, required: Sequence[str]) -> tuple[list[str], list[list[str]]]:
    """The header and rows of a CSV file; ReportError when it cannot be read or lacks a required column."""
    try:
        with open(path, newline="") as file:
            rows = list(csv.reader(file))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise ReportError(f"{path}: cannot be read ({getattr(error, 'strerror', None) or error})") from None
    if not rows:
        raise ReportError(f"{path}: unreadable (empty file, expected a header with {', '.join(required)})")
    header, body = rows[0], rows[1:]
    missing = [column for column in required if column not in header]
    if missing:
        raise ReportError(f"{path}: unreadable (no column {', '.join(missing)}; expected {', '.join(required)})")
    for line, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise ReportError(f"{path}: line {line} has {len(row)} fields, the header {len(header)}")
    return header, body


def _column(path: Path, header: list[str], rows: list[list[str]], name: str) -> np.ndarray:
    index = header.index(name)
    values = np.empty(len(rows))
    for line, row in enumerate(rows, start=2):
        try:
            values[line - 2] = float(row[index])
        except ValueError:
            raise ReportError(f"{path}: line {line}: {name} is {row[index]!r}, not a number") from None
        if not math.isfinite(values[line - 2]):
            raise ReportError(f"{path}: line {line}: {name} is {row[index]}, not a finite number")
    return values


def _steps(path: Path, header: list[str], rows: list[list[str]]) -> np.ndarray:
    steps = _column(path, header, rows, "env_step")
    if np.any(np.diff(steps) < 0):
        raise ReportError(f"{path}: env_step is not in increasing order")
    return steps


@functools.lru_cache(maxsize=None)
def _defaults_json() -> str:
    return json.dumps(to_json_dict(TrainConfig()))


def _setting_defaults() -> dict[str, Any]:
    """TrainConfig's defaults as config.json holds them."""
    return json.loads(_defaults_json())


def load_run(path: Path) -> Run:
    """Read one run directory; ReportError naming the file when config.json or a CSV cannot be read."""
    run_dir = RunDir(path)
    try:
        config = json.loads(run_dir.config.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ReportError(f"{run_dir.config}: unreadable config.json ({error})") from None
    if not isinstance(config, dict) or any(key not in config for key in ("env", "algo", "seed")):
        raise ReportError(f"{run_dir.config}: unreadable config.json (expected the env, algo and seed of a run)")
    config = {**_setting_defaults(), **config}  # settings added after a run was made had their defaults

    header, rows = _read_table(run_dir.metrics, METRICS_COLUMNS)
    eval_steps = _steps(run_dir.metrics, header, rows)
    if np.any(np.diff(eval_steps) == 0):
        raise ReportError(f"{run_dir.metrics}: an env step is evaluated twice")
    returns = _column(run_dir.metrics, header, rows, "eval_return_mean")
    success_index = header.index("eval_success_rate")
    filled = [row[success_index] != "" for row in rows]
    success_rates = None
    if rows and all(filled):
        success_rates = _column(run_dir.metrics, header, rows, "eval_success_rate")
    elif any(filled):
        raise ReportError(f"{run_dir.metrics}: eval_success_rate is empty on some rows and not on others")

    causal_steps, causal_weights = np.empty(0), np.empty((0, 0))
    if run_dir.causal_weights.is_file():
        header, rows = _read_table(run_dir.causal_weights, ["env_step"])
        weight_columns = sorted((c for c in header if re.fullmatch(r"w\d+", c)), key=lambda c: int(c[1:]))
        causal_steps = _steps(run_dir.causal_weights, header, rows)
        causal_weights = np.stack(
            [_column(run_dir.causal_weights, header, rows, c) for c in weight_columns], axis=1
        ) if weight_columns else np.empty((len(rows), 0))

    reset_steps, dormancy_ratios = np.empty(0), np.empty(0)
    if run_dir.resets.is_file():
        header, rows = _read_table(run_dir.resets, RESETS_COLUMNS)
        reset_steps = _steps(run_dir.resets, header, rows)
        dormancy_ratios = _column(run_dir.resets, header, rows, "dormancy_ratio")
    actions = read_actions_file(run_dir.actions)
    return Run(
        path, config, eval_steps, returns, success_rates, causal_steps, causal_weights, reset_steps, dormancy_ratios,
        actions[0] if actions is not None else None,
    )


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


def collect_runs(dirs: Sequence[Path], skip_empty: bool, notes: list[str], flagged: list[str]) -> list[Run]:
    """The runs at or below ``dirs``, each once; runs without evaluations stop the report unless ``skip_empty``.
    Directories with run files but no config.json are named in ``notes`` and ``flagged`` (printed too)."""
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
            if without_config == [directory]:
                problem = f"holds run files but no {CONFIG} (the run's settings are lost)"
            elif without_config:
                problem = (f"holds no runs with a {CONFIG}: {_listing([str(p) for p in without_config], 3)} hold(s) "
                           f"run files but no {CONFIG}")
            else:
                problem = f"holds no runs (no {CONFIG} at or below it)"
            raise ReportError(
                f"{directory} {problem}; expected a run directory written by ace-rl train or a directory of them (a sweep)"
            )
        paths.extend(found)
        lost.extend(without_config)
    lost = list({path.resolve(): path for path in lost}.values())
    if lost:
        text = (
            f"Left out {len(lost)} directory(ies) that hold run files but no {CONFIG} (the run's settings are lost, "
            f"so it cannot be grouped): {', '.join(str(path) for path in lost)}."
        )
        notes.append(text)
        flagged.append(text)
    unique = list({path.resolve(): path for path in paths}.values())
    runs = [load_run(path) for path in unique]
    empty = [run for run in runs if len(run.eval_steps) == 0]
    if empty:
        names = ", ".join(str(run.path) for run in empty)
        if not skip_empty:
            shown = ", ".join(str(run.path) for run in empty[:3]) + (f" and {len(empty) - 3} more" if len(empty) > 3 else "")
            raise ReportError(
                f"{len(empty)} run(s) have no evaluation rows in metrics.csv yet: {shown}; wait for their first "
                "evaluation or pass --skip-empty to leave them out"
            )
        notes.append(f"Left out {len(empty)} run(s) without an evaluation yet (--skip-empty): {names}.")
        runs = [run for run in runs if len(run.eval_steps)]
        if not runs:
            raise ReportError("no run has an evaluation row yet; nothing to report")
    return runs


# ------------------------------------------------------------------------------------------------ grouping


@dataclass
class Group:
    """The runs of one algorithm (with one setting of the swept options) on one task, in seed order."""

    task: str
    label: str
    runs: list[Run]
    """One run per seed."""
    duplicates: list[Run] = field(default_factory=list)
    """Runs left out because another run of the group has their seed (one seed is one sample, however many
    directories hold it: a sweep may have made identical runs that differ only in a logging option)."""

    @property
    def algo(self) -> str:
        return self.runs[0].algo

    @property
    def seeds(self) -> list[int]:
        return [run.seed for run in self.runs]


def swept_options(runs: Sequence[Run]) -> dict[str, list[str]]:
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


def run_label(run: Run, options: Sequence[str]) -> str:
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


def one_run_per_seed(runs: Sequence[Run]) -> tuple[list[Run], list[Run]]:
    """The runs in seed order keeping one per seed (the one that reached the furthest env step; on a tie, the
    first by path), and the runs left out."""
    kept: dict[int, Run] = {}
    duplicates = []
    for run in sorted(runs, key=lambda r: (r.seed, -r.eval_steps[-1], str(r.path))):
        if run.seed in kept:
            duplicates.append(run)
        else:
            kept[run.seed] = run
    return list(kept.values()), duplicates


def group_runs(runs: Sequence[Run]) -> list[Group]:
    """Groups by task and label, tasks in name order, then ACE, SAC, TD3 and other algorithms."""
    options = swept_options(runs)
    cells: dict[tuple[str, str], list[Run]] = defaultdict(list)
    for run in runs:
        cells[(run.task, run_label(run, options.get(run.algo, [])))].append(run)
    groups = [Group(task, label, *one_run_per_seed(cell)) for (task, label), cell in cells.items()]
    return sorted(groups, key=lambda g: (g.task, ALGO_ORDER.get(g.algo, len(ALGO_ORDER)), g.label))


def duplicate_seeds_note(group: Group) -> str:
    """Which runs of ``group`` repeat a seed, which one counts, and why."""
    seeds = [
        f"seed {run.seed} as {run.path} (also {', '.join(str(d.path) for d in group.duplicates if d.seed == run.seed)})"
        for run in group.runs if any(d.seed == run.seed for d in group.duplicates)
    ]
    return (
        f"{group.task} / {group.label}: {len(seeds)} seed(s) have more than one run; each seed counts once, as the "
        f"run that reached the furthest env step (on a tie, the first by path), and the others are left out: {'; '.join(seeds)}."
    )


# ------------------------------------------------------------------------------------------------ alignment


@dataclass
class Aligned:
    """Runs' values on one grid of env steps: the union of the steps at which any of them was evaluated."""

    steps: np.ndarray
    values: np.ndarray
    """(runs, steps); NaN outside a run's own first-to-last evaluation (never extrapolated)."""
    interpolated: np.ndarray
    """(runs, steps): True where the value lies between two of the run's evaluations (linear interpolation)."""

    @property
    def runs_per_step(self) -> np.ndarray:
        return np.sum(~np.isnan(self.values), axis=0)


def align(steps: Sequence[np.ndarray], values: Sequence[np.ndarray]) -> Aligned:
    grid = np.unique(np.concatenate([np.asarray(s, dtype=float) for s in steps]))
    aligned = np.full((len(steps), len(grid)), np.nan)
    interpolated = np.zeros((len(steps), len(grid)), dtype=bool)
    for index, (run_steps, run_values) in enumerate(zip(steps, values)):
        inside = (grid >= run_steps[0]) & (grid <= run_steps[-1])
        aligned[index, inside] = np.interp(grid[inside], run_steps, run_values)
        interpolated[index] = inside & ~np.isin(grid, run_steps)
    return Aligned(grid, aligned, interpolated)


# ----------------------------------------------------------------------------------------------- statistics


@contextlib.contextmanager
def _seeded_numpy(seed: int) -> Iterator[None]:
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # arch's notes on degenerate resamples of one or two runs
            yield
    finally:
        np.random.set_state(state)


def interval_estimates(
    scores: Mapping[str, Any], func: Callable[..., np.ndarray], reps: int, seed: int
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """rliable's stratified-bootstrap point estimates and 95 % percentile intervals, seeded."""
    _, rly, _, _ = libraries()
    with _seeded_numpy(seed):
        return rly.get_interval_estimates(dict(scores), func, reps=reps, confidence_interval_size=CONFIDENCE)


def iqm_per_step(scores: np.ndarray) -> np.ndarray:
    """IQM over runs and tasks at each step of a (runs, tasks, steps) array: rliable's ``aggregate_iqm`` of
    ``scores[..., step]`` for every step at once."""
    from scipy.stats import trim_mean

    return np.atleast_1d(trim_mean(scores.reshape(-1, scores.shape[-1]), proportiontocut=0.25, axis=0))


def aggregate_metrics(scores: np.ndarray) -> np.ndarray:
    """IQM, median, mean and optimality gap of a (runs, tasks) array of normalised scores."""
    _, _, metrics, _ = libraries()
    return np.array(
        [
            metrics.aggregate_iqm(scores),
            metrics.aggregate_median(scores),
            metrics.aggregate_mean(scores),
            metrics.aggregate_optimality_gap(scores),
        ]
    )


@dataclass
class Estimate:
    value: float
    low: float
    high: float
    runs: int
    """How many runs (per task, for aggregates) the number rests on."""


def iqm_estimate(values: np.ndarray, reps: int, seed: int) -> Estimate:
    """The IQM over runs of one task with its 95 % stratified-bootstrap interval."""
    _, _, metrics, _ = libraries()
    point, interval = interval_estimates(
        {"runs": np.asarray(values, dtype=float)[:, None]}, lambda s: np.array([metrics.aggregate_iqm(s)]), reps, seed
    )
    return Estimate(float(point["runs"][0]), float(interval["runs"][0, 0]), float(interval["runs"][1, 0]), len(values))


@dataclass
class Curve:
    steps: np.ndarray
    iqm: np.ndarray
    low: np.ndarray
    high: np.ndarray
    runs: np.ndarray
    """How many runs each point rests on."""


def iqm_curve(aligned: Aligned, reps: int, seed: int) -> Curve:
    """IQM over the runs covering each step, with 95 % intervals; steps covered by the same runs share one
    bootstrap (rliable resamples runs within the whole stretch, as in its sample-efficiency curves)."""
    covered = ~np.isnan(aligned.values)
    size = len(aligned.steps)
    iqm, low, high = np.full(size, np.nan), np.full(size, np.nan), np.full(size, np.nan)
    start = 0
    while start < size:
        end = start + 1
        while end < size and np.array_equal(covered[:, end], covered[:, start]):
            end += 1
        block = aligned.values[covered[:, start]][:, None, start:end]
        point, interval = interval_estimates({"curve": block}, iqm_per_step, reps, seed)
        iqm[start:end], low[start:end], high[start:end] = point["curve"], interval["curve"][0], interval["curve"][1]
        start = end
    return Curve(aligned.steps, iqm, low, high, aligned.runs_per_step)


def run_final(steps: np.ndarray, scores: np.ndarray, at: float) -> float:
    return float(np.interp(at, steps, scores))


def run_auc(steps: np.ndarray, scores: np.ndarray, start: float, end: float) -> float:
    """Area under a run's learning curve from ``start`` to ``end`` (trapezoids through its evaluations,
    interpolated at the ends) divided by ``end - start``: the curve's mean height, in the score's units."""
    if end <= start:
        return run_final(steps, scores, end)
    inner = steps[(steps > start) & (steps < end)]
    xs = np.concatenate([[start], inner, [end]])
    ys = np.interp(xs, steps, scores)
    return float(np.sum((ys[1:] + ys[:-1]) / 2 * np.diff(xs)) / (end - start))


def run_best(steps: np.ndarray, scores: np.ndarray, end: float) -> float:
    return float(np.max(scores[steps <= end]))


# ----------------------------------------------------------------------------------------------- analysis


@dataclass
class GroupResult:
    group: Group
    aligned: Aligned
    curve: Curve
    compared: list[Run]
    """The group's runs that reach the task's comparison step (all of them, unless runs cover disjoint steps)."""
    finals: np.ndarray
    """Each compared run's score at the task's comparison step, raw units, in seed order."""
    final: Estimate | None
    """None where no run of the group reaches the comparison step (likewise the three below)."""
    final_normalised: Estimate | None
    auc: Estimate | None
    best: Estimate | None


@dataclass
class TaskResult:
    name: str
    env: str
    score_name: str
    """"success rate" or "return"."""
    normalisation: Normalisation | None
    start_step: float
    """The first env step that every compared run has evaluated (inside its range): AUCs start here."""
    comparison_step: float
    """The last env step that every run of the task reached (where runs cover disjoint steps: the latest step
    that the most runs cover): final scores, AUCs and bests are taken up to it."""
    groups: list[GroupResult]

    @property
    def success(self) -> bool:
        return self.score_name == "success rate"


@dataclass
class Improvement:
    x: str
    y: str
    tasks: list[str]
    runs_x: int
    runs_y: int
    estimate: Estimate


@dataclass
class AggregateResult:
    tasks: list[str]
    labels: list[str]
    scores: dict[str, np.ndarray]
    """Per label, (runs, tasks) normalised final scores."""
    metrics: dict[str, list[Estimate]]
    """Per label: IQM, median, mean, optimality gap."""
    curve: dict[str, Curve]
    taus: np.ndarray
    profiles: dict[str, np.ndarray]
    profile_intervals: dict[str, np.ndarray]
    improvements: list[Improvement]


@dataclass
class Report:
    inputs: list[Path]
    runs: list[Run]
    tasks: list[TaskResult]
    aggregate: AggregateResult | None
    notes: list[str]
    reps: int
    seed: int
    figures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    """The notes the command also prints: runs left out that the user should look at."""


def _listing(items: Sequence[str], shown: int = 5) -> str:
    return ", ".join(items[:shown]) + (f" and {len(items) - shown} more" if len(items) > shown else "")


def _steps_text(step: float) -> str:
    return f"{int(step):,}" if float(step).is_integer() else f"{step:,.1f}"


def comparison_step(runs: Sequence[Run]) -> tuple[float, list[Run]]:
    """The env step at which a task's runs are compared, and the runs that reach it: the last step that every
    run reached; where runs cover disjoint stretches of env steps, the latest step that the most runs cover."""
    steps = np.unique(np.concatenate([run.eval_steps for run in runs]))
    covering = np.array([sum(run.eval_steps[0] <= step <= run.eval_steps[-1] for run in runs) for step in steps])
    step = float(steps[np.flatnonzero(covering == covering.max())[-1]])
    return step, [run for run in runs if run.eval_steps[0] <= step <= run.eval_steps[-1]]


def analyse_task(name: str, groups: Sequence[Group], reps: int, seed: int, notes: list[str]) -> TaskResult:
    runs = [run for group in groups for run in group.runs]
    with_success = [run.success_rates is not None for run in runs]
    if any(with_success) and not all(with_success):
        without = ", ".join(str(run.path) for run, has in zip(runs, with_success) if not has)
        raise ReportError(f"task {name}: some runs report a success rate and others do not ({without})")
    success = all(with_success)
    norm = normalisation(str(runs[0].config["env"]), success)
    end, compared = comparison_step(runs)
    start = max(float(run.eval_steps[0]) for run in compared)
    left_out = [run for run in runs if run not in compared]
    if left_out:
        notes.append(
            f"{name}: no env step lies within every run's evaluations; final scores, AUC and best are taken at env "
            f"step {_steps_text(end)}, the latest step that the most runs ({len(compared)} of {len(runs)}) cover, and "
            f"leave out {_listing([f'{run.path.name} ({_steps_text(run.eval_steps[0])}-{_steps_text(run.eval_steps[-1])})' for run in left_out])}, "
            "which appear in the learning curves only."
        )
    longer = [run for run in compared if run.eval_steps[-1] > end]
    if longer and not left_out:
        notes.append(
            f"{name}: final scores, AUC and best are taken up to env step {_steps_text(end)}, the last step every run "
            f"of the task reached; {len(longer)} of {len(runs)} runs went further (up to "
            f"{_steps_text(max(run.eval_steps[-1] for run in longer))}), and their later evaluations appear in the "
            "learning curves only."
        )
    unfinished = [run for run in runs if run.eval_steps[-1] < run.config.get("total_steps", 0)]
    if unfinished:
        notes.append(
            f"{name}: {len(unfinished)} of {len(runs)} runs have not reached their total_steps (still running, or "
            f"stopped early): {_listing([f'{run.path.name} at {_steps_text(run.eval_steps[-1])}' for run in unfinished])}."
        )
    if start > min(float(run.eval_steps[0]) for run in compared):
        notes.append(f"{name}: AUC starts at env step {_steps_text(start)}, the first evaluation every compared run has.")

    results = []
    for group in groups:
        scores = [run.scores(success) for run in group.runs]
        aligned = align([run.eval_steps for run in group.runs], scores)
        interpolated = int(aligned.interpolated.sum())
        if interpolated:
            notes.append(
                f"{name} / {group.label}: the runs were evaluated at different env steps; {interpolated} of "
                f"{int((~np.isnan(aligned.values)).sum())} curve values were interpolated linearly between a run's "
                "own evaluations (none extrapolated)."
            )
        partial = aligned.runs_per_step < len(group.runs)
        if partial.any():
            notes.append(
                f"{name} / {group.label}: the runs cover different env steps; {int(partial.sum())} of "
                f"{len(aligned.steps)} curve points rest on fewer than all {len(group.runs)} runs (dashed in the "
                "figure; curves.csv gives each point's run count)."
            )
        pairs = [(run, run.scores(success)) for run in group.runs if run in compared]
        finals = np.array([run_final(run.eval_steps, s, end) for run, s in pairs])
        aucs = np.array([run_auc(run.eval_steps, s, start, end) for run, s in pairs])
        bests = np.array([run_best(run.eval_steps, s, end) for run, s in pairs])
        has_runs = len(pairs) > 0
        results.append(
            GroupResult(
                group=group,
                aligned=aligned,
                curve=iqm_curve(aligned, reps, seed),
                compared=[run for run, _ in pairs],
                finals=finals,
                final=iqm_estimate(finals, reps, seed) if has_runs else None,
                final_normalised=iqm_estimate(norm(finals), reps, seed) if has_runs and norm is not None else None,
                auc=iqm_estimate(aucs, reps, seed) if has_runs else None,
                best=iqm_estimate(bests, reps, seed) if has_runs else None,
            )
        )
    return TaskResult(
        name, str(runs[0].config["env"]), "success rate" if success else "return", norm, start, end, results
    )


def _label_results(label: str, tasks: Sequence[TaskResult]) -> tuple[list[GroupResult], int]:
    """The label's group on each task, and the fewest runs any of them has."""
    chosen = [next(r for r in task.groups if r.group.label == label and r.final is not None) for task in tasks]
    return chosen, min(len(r.compared) for r in chosen)


def analyse_aggregate(tasks: Sequence[TaskResult], reps: int, seed: int, notes: list[str]) -> AggregateResult | None:
    """Across tasks with a normalisation and runs of every label: the aggregate metrics, the sample-efficiency
    curve, the performance profile; and the probability of improvement of each ACE label (or of the leading
    algorithm's, without ACE) over the others."""
    _, rly, metrics, _ = libraries()
    without = [task.name for task in tasks if task.normalisation is None]
    if without:
        notes.append(
            f"No reference score for {', '.join(without)}: these tasks are in the per-task table and figures only, "
            "not in the aggregates."
        )
    normalised = [task for task in tasks if task.normalisation is not None]
    if not normalised:
        notes.append("No task has a reference score, so there are no aggregate metrics across tasks.")
        return None
    labels: list[str] = []
    for task in normalised:
        labels.extend(r.group.label for r in task.groups if r.group.label not in labels)
    labels.sort(key=lambda label: (ALGO_ORDER.get(label.split()[0], len(ALGO_ORDER)), label))
    algo_of = {r.group.label: r.group.algo for task in normalised for r in task.groups}
    present = {task.name: {r.group.label for r in task.groups if r.final is not None} for task in normalised}
    improvements = _improvements(normalised, labels, algo_of, reps, seed, notes)
    chosen, common = _aggregate_selection(normalised, labels, present)
    if not chosen:
        notes.append("No group has a final score on a task with a reference score: no aggregate metrics across tasks.")
        return None
    for label in labels:
        if label not in chosen:
            lacking = [task.name for task in common if label not in present[task.name]]
            notes.append(
                f"{label} is left out of the aggregate metrics, the sample-efficiency curve and the performance "
                f"profile: it has no runs on {', '.join(lacking)} (it still enters the probability of improvement on "
                "the tasks it shares)."
            )
    for task in normalised:
        if task not in common:
            missing = [label for label in chosen if label not in present[task.name]]
            notes.append(
                f"{task.name} is left out of the aggregate metrics, the sample-efficiency curve and the performance "
                f"profile: it has no runs of {', '.join(missing)} (it still enters the probability of improvement "
                "of the pairs it has)."
            )
    labels = chosen

    scores: dict[str, np.ndarray] = {}
    curve_scores: dict[str, np.ndarray] = {}
    start = max(task.start_step for task in common)
    end = min(task.comparison_step for task in common)
    grid = np.unique(np.concatenate([run.eval_steps for task in common for r in task.groups if r.group.label in labels
                                     for run in r.compared]))
    grid = grid[(grid >= start) & (grid <= end)]
    if len({task.comparison_step for task in common}) > 1:
        notes.append(
            f"The sample-efficiency curve runs to env step {_steps_text(end)}, the earliest comparison step of the "
            "tasks in it (each task's final scores are still taken at its own comparison step)."
        )
    for label in labels:
        results, runs = _label_results(label, common)
        for task, result in zip(common, results):
            if len(result.compared) > runs:
                notes.append(
                    f"Aggregates of {label} use the {runs} lowest seeds of each task (the fewest any task has); "
                    f"{task.name} seeds {[run.seed for run in result.compared[runs:]]} enter its per-task numbers only."
                )
        scores[label] = np.stack(
            [task.normalisation(result.finals[:runs]) for task, result in zip(common, results)], axis=1
        )
        curve_scores[label] = np.stack(
            [
                task.normalisation(np.array([np.interp(grid, run.eval_steps, run.scores(task.success))
                                             for run in result.compared[:runs]]))
                for task, result in zip(common, results)
            ],
            axis=1,
        )
    point, interval = interval_estimates(scores, aggregate_metrics, reps, seed)
    estimates = {
        label: [
            Estimate(float(point[label][i]), float(interval[label][0, i]), float(interval[label][1, i]), scores[label].shape[0])
            for i in range(len(METRIC_NAMES))
        ]
        for label in labels
    }
    curve_point, curve_interval = interval_estimates(curve_scores, iqm_per_step, reps, seed)
    curves = {
        label: Curve(grid, curve_point[label], curve_interval[label][0], curve_interval[label][1],
                     np.full(len(grid), curve_scores[label].shape[0]))
        for label in labels
    }
    every = np.concatenate([s.ravel() for s in scores.values()])
    taus = np.linspace(min(0.0, float(every.min())), max(1.0, float(every.max())), 101)
    with _seeded_numpy(seed):
        profiles, profile_intervals = rly.create_performance_profile(scores, taus, reps=reps)
    return AggregateResult(
        [task.name for task in common], labels, scores, estimates, curves, taus, profiles, profile_intervals, improvements
    )


def _aggregate_selection(
    tasks: Sequence[TaskResult], labels: Sequence[str], present: Mapping[str, set[str]]
) -> tuple[list[str], list[TaskResult]]:
    """The labels and tasks of the aggregates, which compare labels on the same tasks: of the sets of labels
    (with the tasks on which all of them have runs), the one covering the most (label, task) pairs; ties go to
    more labels (aggregates are for comparing), then to more tasks. With more than SUBSET_SEARCH_LIMIT labels,
    the candidates are the labels that subsets of the tasks have in common (every subset up to that many tasks,
    else each task's own labels)."""
    if len(labels) <= SUBSET_SEARCH_LIMIT:
        subsets = [s for size in range(len(labels), 0, -1) for s in itertools.combinations(labels, size)]
    else:
        if len(tasks) <= SUBSET_SEARCH_LIMIT:
            task_sets = [c for size in range(len(tasks), 0, -1) for c in itertools.combinations(tasks, size)]
        else:
            task_sets = [(task,) for task in tasks]
        subsets = [tuple(label for label in labels if all(label in present[t.name] for t in task_set))
                   for task_set in task_sets]
    best: tuple[list[str], list[TaskResult]] = ([], [])
    best_key = (0, 0, 0)
    for subset in subsets:
        common = [task for task in tasks if set(subset) <= present[task.name]]
        key = (len(subset) * len(common), len(subset), len(common))
        if key > best_key:
            best_key, best = key, (list(subset), common)
    return best


def _improvements(
    tasks: Sequence[TaskResult], labels: Sequence[str], algo_of: Mapping[str, str], reps: int, seed: int,
    notes: list[str],
) -> list[Improvement]:
    """P(X > Y) for each label X of the leading algorithm (ACE when the report has it, else the first in the
    report's order) and every other label Y, over the tasks both have (paired)."""
    _, _, metrics, _ = libraries()
    if not labels:
        return []
    lead = "ace" if "ace" in algo_of.values() else algo_of[labels[0]]
    lead_labels = [label for label in labels if algo_of[label] == lead]
    pairs = [
        (x, y) for x in lead_labels for y in labels
        if y != x and not (algo_of[y] == lead and labels.index(y) < labels.index(x))
    ]
    improvements = []
    for x, y in pairs:
        paired = [task for task in tasks if {x, y} <= {r.group.label for r in task.groups if r.final is not None}]
        if not paired:
            notes.append(f"{x} and {y} share no task with a reference score: no probability of improvement.")
            continue
        chosen_x, runs_x = _label_results(x, paired)
        chosen_y, runs_y = _label_results(y, paired)
        scores_x = np.stack([t.normalisation(r.finals[:runs_x]) for t, r in zip(paired, chosen_x)], axis=1)
        scores_y = np.stack([t.normalisation(r.finals[:runs_y]) for t, r in zip(paired, chosen_y)], axis=1)
        point, interval = interval_estimates(
            {"pair": (scores_x, scores_y)}, metrics.probability_of_improvement, reps, seed
        )
        low, high = np.ravel(interval["pair"])
        estimate = Estimate(float(np.ravel(point["pair"])[0]), float(low), float(high), min(runs_x, runs_y))
        improvements.append(Improvement(x, y, [t.name for t in paired], runs_x, runs_y, estimate))
    return improvements


def run_equals_sac(run: Run) -> bool:
    """Whether an ACE run's settings allowed no causal fit and no reset (config.equals_sac_reason)."""
    settings = {name: value for name, value in run.config.items() if name in _TRAIN_FIELDS}
    try:
        return equals_sac_reason(TrainConfig(**settings)) is not None
    except (TypeError, ValueError, ZeroDivisionError):
        return False


_TRAIN_FIELDS = frozenset(TrainConfig.__dataclass_fields__)


def build_report(dirs: Sequence[Path], reps: int = 2000, seed: int = 0, skip_empty: bool = False) -> Report:
    """Read, group, align and judge the runs at or below ``dirs`` (no files written)."""
    if reps < 1:
        raise ReportError(f"--reps must be a positive integer, got {reps}")
    if not SEED_RANGE[0] <= seed <= SEED_RANGE[1]:
        raise ReportError(f"--seed {seed} is out of range; accepted: an integer from {SEED_RANGE[0]} to {SEED_RANGE[1]} (2**32-1)")
    libraries()  # a missing extra is reported before any work
    notes: list[str] = []
    flagged: list[str] = []
    runs = collect_runs(dirs, skip_empty, notes, flagged)
    by_task: dict[str, list[Group]] = defaultdict(list)
    for group in group_runs(runs):
        by_task[group.task].append(group)
        if group.duplicates:
            notes.append(duplicate_seeds_note(group))
            flagged.append(notes[-1])
    counted = [run for groups in by_task.values() for group in groups for run in group.runs]
    same_as_sac = [run for run in counted if run_equals_sac(run)]
    if same_as_sac:
        notes.append(
            f"{len(same_as_sac)} ACE run(s) make no causal fit and no reset within their budget, so they compute "
            f"exactly what SAC computes: {_listing([str(run.path) for run in same_as_sac])}."
        )
    tasks = [analyse_task(name, groups, reps, seed, notes) for name, groups in by_task.items()]
    aggregate = analyse_aggregate(tasks, reps, seed, notes)
    return Report(list(dirs), counted, tasks, aggregate, notes, reps, seed, warnings=flagged)


def make_report(
    dirs: Sequence[Path], out: Path, reps: int = 2000, seed: int = 0, skip_empty: bool = False
) -> Report:
    """Build the report and write its figures, summary.md, summary.csv and curves.csv into ``out``.

    The files are written into a hidden staging directory on the same file system (inside ``out`` when it
    exists, else next to it) and moved into place only once all are written, so a report that fails (a full
    disk, a read-only directory) leaves no partial files and any earlier report in ``out`` as it was."""
    report = build_report(dirs, reps, seed, skip_empty)
    if out.exists() and not out.is_dir():
        raise ReportError(f"--out {out} is a file; expected a directory (created if missing)")
    created = [path for path in (out.parent, *out.parent.parents) if not path.exists()]  # deepest first
    staging: Path | None = None
    moving = finished = False
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = (out if out.is_dir() else out.parent) / f".{out.name}.report-{os.getpid()}-{secrets.token_hex(4)}"
        staging.mkdir()
        report.figures = write_figures(report, staging)
        write_summary(report, staging)
        write_curves(report, staging)
        moving = True
        _move_into_place(staging, out)
        finished = True
    except OSError as error:
        failed = Path(error.filename) if error.filename else None
        where = f"{failed.name}: " if failed and failed.parent == staging else ""
        earlier = "; the earlier report there is unchanged" if not moving and (out / "summary.md").is_file() else ""
        raise ReportError(f"--out {out}: cannot write the report ({where}{error.strerror or error}){earlier}") from None
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        for path in created if not finished else []:
            with contextlib.suppress(OSError):
                path.rmdir()
    return report


def _move_into_place(staging: Path, out: Path) -> None:
    """Rename the finished report to ``out``; into an existing ``out``, file by file (renames within one file
    system) with summary.md last, then remove the earlier report's figures that this one does not have."""
    if not out.exists():
        staging.rename(out)
        return
    earlier = out / "summary.md"
    listed = earlier.read_text(errors="replace") if earlier.is_file() else ""
    earlier_figures = re.findall(r"^- `([A-Za-z0-9_.-]+)\.png` \(and `\.pdf`\)$", listed, re.M)
    written = sorted(staging.iterdir(), key=lambda path: path.name == "summary.md")
    for path in written:
        os.replace(path, out / path.name)
    for stem in set(earlier_figures) - {path.stem for path in written}:
        for suffix in (".png", ".pdf"):
            (out / f"{stem}{suffix}").unlink(missing_ok=True)


# ------------------------------------------------------------------------------------------------- figures


def _colours(report: Report) -> dict[str, Any]:
    """A distinct colour per group: tab10 or tab20 where they suffice, else the turbo colormap sampled at as many
    evenly spaced points (its 256 entries keep up to 256 groups apart)."""
    plt, _, _, _ = libraries()
    labels: list[str] = []
    for task in report.tasks:
        labels.extend(r.group.label for r in task.groups if r.group.label not in labels)
    if len(labels) > 20:
        return dict(zip(labels, plt.get_cmap("turbo")(np.linspace(0.0, 1.0, len(labels)))))
    palette = plt.get_cmap("tab10" if len(labels) <= 10 else "tab20")
    return {label: palette(index) for index, label in enumerate(labels)}


def _file_stem(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


@contextlib.contextmanager
def _writing(path: Path) -> Iterator[Path]:
    """Yields ``path``; an OSError while writing it names it (a full disk's write error names no file)."""
    try:
        yield path
    except OSError as error:
        if error.filename:
            raise
        raise OSError(error.errno, error.strerror or str(error), str(path)) from error


def _save(fig: Any, out: Path, stem: str, figures: list[str]) -> None:
    plt, _, _, _ = libraries()
    try:
        for suffix in (".png", ".pdf"):
            with _writing(out / f"{stem}{suffix}") as path:
                fig.savefig(path, dpi=DPI)
    finally:
        plt.close(fig)
    figures.append(stem)


def write_figures(report: Report, out: Path) -> list[str]:
    """Every figure as PNG and PDF; returns their file stems."""
    colours = _colours(report)
    figures: list[str] = []
    plot_learning_curves(report, colours, out, figures)
    for task in report.tasks:
        for result in task.groups:
            plot_causal_weights(task, result, out, figures, report.notes)
    if report.aggregate is not None:
        plot_aggregates(report.aggregate, colours, out, figures)
    return figures


def learning_curves_layout(tasks: int, labels: Sequence[str]) -> tuple[tuple[float, float], list[str], int]:
    """The learning-curve figure's size in inches (PANEL_SIZE per task, PANEL_COLUMNS per row, and the legend
    below), the legend's labels wrapped to its column width, and its number of columns (one per panel)."""
    columns = min(PANEL_COLUMNS, tasks)
    rows = math.ceil(tasks / columns)
    width = PANEL_SIZE[0] * columns
    characters = max(12, int((PANEL_SIZE[0] - 0.6) / LEGEND_CHARACTER))
    wrapped = [textwrap.fill(label, characters) for label in labels]
    lines = max((label.count("\n") + 1 for label in wrapped), default=1)
    legend = math.ceil(len(labels) / columns) * lines * LEGEND_LINE + 0.15
    return (width, PANEL_SIZE[1] * rows + legend), wrapped, columns


def plot_learning_curves(report: Report, colours: Mapping[str, Any], out: Path, figures: list[str]) -> None:
    """One panel per task: each group's IQM over seeds with its 95 % band; dashed where fewer runs cover the
    step; a dotted vertical line at the task's comparison step when some runs go beyond it. One legend below
    for all panels (a group has the same colour on every task)."""
    plt, _, _, _ = libraries()
    count = len(report.tasks)
    columns = min(PANEL_COLUMNS, count)
    rows = math.ceil(count / columns)
    seeds: dict[str, set[int]] = defaultdict(set)
    for task in report.tasks:
        for result in task.groups:
            seeds[result.group.label].add(len(result.group.runs))
    labels = []
    for label in colours:
        low, high = min(seeds[label]), max(seeds[label])
        labels.append(f"{label} ({low if low == high else f'{low}-{high}'} seed{'s' if high != 1 else ''})")
    size, wrapped, legend_columns = learning_curves_layout(count, labels)
    fig = plt.figure(figsize=size, layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax in axes.flat[count:]:
        ax.set_visible(False)
    for ax, task in zip(axes.flat, report.tasks):
        for result in task.groups:
            curve, runs = result.curve, len(result.group.runs)
            colour = colours[result.group.label]
            marker = "o" if len(curve.steps) <= 20 else None
            ax.fill_between(curve.steps, curve.low, curve.high, color=colour, alpha=0.2, linewidth=0)
            ax.plot(curve.steps, curve.iqm, color=colour, linestyle="--", linewidth=1.2, marker=marker, markersize=3)
            full = np.where(curve.runs == runs, curve.iqm, np.nan)
            ax.plot(curve.steps, full, color=colour, linewidth=1.8, marker=marker, markersize=3)
        if any(run.eval_steps[-1] > task.comparison_step for r in task.groups for run in r.group.runs):
            ax.axvline(task.comparison_step, color="0.4", linestyle=":", linewidth=1)
        ax.set_title(task.name, fontsize="medium")
        ax.set_xlabel("env step")
        ax.set_ylabel(f"{task.score_name} (IQM, 95% CI)")
        ax.grid(alpha=0.25)
    handles = [plt.Line2D([], [], color=colour, linewidth=1.8, label=text) for colour, text in zip(colours.values(), wrapped)]
    fig.legend(handles=handles, loc="outside lower center", ncol=legend_columns, fontsize="small", frameon=False)
    _save(fig, out, "learning_curves", figures)


def _fits_causal_weights(config: Mapping[str, Any]) -> bool:
    """Whether a run's training loop fits causal weights: a built-in or already imported agent registered with
    causal=True and a causal method other than none (an agent module is never imported by the report)."""
    from ace_rl.agents import registered_agents

    spec = registered_agents().get(str(config.get("algo")))
    return spec is not None and spec.causal and config.get("causal_method") != "none"


def plot_causal_weights(
    task: TaskResult, result: GroupResult, out: Path, figures: list[str], notes: list[str]
) -> None:
    """ACE's causal weights per action dimension over env steps (mean over seeds, band from the lowest to the
    highest seed), the resets as dashed vertical lines, and the dormancy ratio at each reset below."""
    plt, _, _, _ = libraries()
    group = result.group
    fitted = [run for run in group.runs if len(run.causal_steps) and run.causal_weights.shape[1]]
    if not fitted:
        if _fits_causal_weights(group.runs[0].config):
            notes.append(f"{task.name} / {group.label}: no causal fit recorded yet, so no causal-weight figure.")
        return
    dimensions = {run.causal_weights.shape[1] for run in fitted}
    if len(dimensions) > 1:
        notes.append(f"{task.name} / {group.label}: runs have different action sizes {sorted(dimensions)}; no causal-weight figure.")
        return
    fig, (weights_ax, dormancy_ax) = plt.subplots(
        2, 1, figsize=CAUSAL_SIZE, sharex=True, height_ratios=[3, 1.3], layout="constrained"
    )
    action_dim = dimensions.pop()
    names = next((run.action_names for run in fitted if run.action_names and len(run.action_names) == action_dim), None)
    distractors = fitted[0].distractors
    real = action_dim - distractors
    palette = plt.get_cmap("tab10" if real <= 10 else "viridis")
    for dimension in range(action_dim):
        aligned = align([run.causal_steps for run in fitted], [run.causal_weights[:, dimension] for run in fitted])
        label = f"w{dimension}" + (f" {names[dimension]}" if names and names[dimension] != f"a{dimension}" else "")
        if dimension >= real:  # a distractor: grey and dashed, so the eye separates it from the real dimensions
            colour, style = "0.55", "--"
            label = f"w{dimension} distractor" if not names else f"w{dimension} {names[dimension]} (ignored by the env)"
        else:
            colour = palette(dimension % 10) if real <= 10 else palette(dimension / max(real - 1, 1))
            style = "-"
        weights_ax.fill_between(
            aligned.steps, np.nanmin(aligned.values, axis=0), np.nanmax(aligned.values, axis=0),
            color=colour, alpha=0.15, linewidth=0,
        )
        weights_ax.plot(aligned.steps, np.nanmean(aligned.values, axis=0), color=colour, linewidth=1.5,
                        linestyle=style, marker="o" if len(aligned.steps) <= 30 else None, markersize=3, label=label)
    weights_ax.axhline(1.0, color="0.5", linestyle=":", linewidth=1)
    reset_steps = np.unique(np.concatenate([run.reset_steps for run in group.runs]))
    for step in reset_steps:
        for ax in (weights_ax, dormancy_ax):
            ax.axvline(step, color="0.35", linestyle="--", linewidth=0.8)
    for run in group.runs:
        if len(run.reset_steps):
            dormancy_ax.plot(run.reset_steps, run.dormancy_ratios, "o", color="0.2", markersize=4, alpha=0.7)
    if not len(reset_steps):
        dormancy_ax.text(0.5, 0.5, "no resets", transform=dormancy_ax.transAxes, ha="center", va="center")
    seeds = len(fitted)
    weights_ax.set_title(
        textwrap.fill(
            f"{task.name} / {group.label}: causal weights, mean of {seeds} seed{'s' if seeds != 1 else ''} "
            "(band: lowest to highest)", 95,
        ),
        fontsize="medium",
    )
    weights_ax.set_ylabel("causal weight w")
    weights_ax.grid(alpha=0.25)
    if action_dim <= 12:
        weights_ax.legend(fontsize="x-small", ncol=min(action_dim, 3 if names else 6))
    dormancy_ax.set_ylabel("dormancy ratio\nat reset (dashed)")
    dormancy_ax.set_xlabel("env step")
    dormancy_ax.set_ylim(0, max(0.05, float(max((run.dormancy_ratios.max() for run in group.runs if len(run.dormancy_ratios)), default=0)) * 1.15))
    dormancy_ax.grid(alpha=0.25)
    _save(fig, out, f"causal_weights__{_file_stem(task.name)}__{_file_stem(group.label)}", figures)


def plot_aggregates(aggregate: AggregateResult, colours: Mapping[str, Any], out: Path, figures: list[str]) -> None:
    """rliable's four plots: aggregate metrics with intervals, sample-efficiency curve, performance profile,
    probability of improvement."""
    plt, _, _, plot_utils = libraries()
    labels = aggregate.labels
    if aggregate.metrics:
        longest = max(len(label) for label in labels)
        width, height = 14.0, 1.3 + 0.45 * len(labels)
        fig, _ = plot_utils.plot_interval_estimates(
            {label: np.array([e.value for e in aggregate.metrics[label]]) for label in labels},
            {label: np.array([[e.low for e in aggregate.metrics[label]], [e.high for e in aggregate.metrics[label]]])
             for label in labels},
            metric_names=METRIC_NAMES, algorithms=labels, colors=dict(colours),
            xlabel=f"normalised score ({len(aggregate.tasks)} tasks; 95% CI)", xlabel_y_coordinate=0.03,
        )
        fig.set_size_inches(width, height)
        left = min(0.4, (0.13 * longest + 0.3) / width)
        fig.subplots_adjust(left=left, right=0.98, bottom=0.75 / height, top=1 - 0.5 / height, wspace=0.15)
        _save(fig, out, "aggregate_metrics", figures)

        fig, ax = plt.subplots(figsize=CURVE_SIZE, layout="constrained")
        steps = next(iter(aggregate.curve.values())).steps
        plot_utils.plot_sample_efficiency_curve(
            steps, {label: aggregate.curve[label].iqm for label in labels},
            {label: np.stack([aggregate.curve[label].low, aggregate.curve[label].high]) for label in labels},
            algorithms=labels, colors=dict(colours), xlabel="env step", ylabel="IQM normalised score",
            ax=ax, marker="o" if len(steps) <= 30 else "", labelsize="large", ticklabelsize="medium", legend=True,
            legendsize="medium",
        )
        _save(fig, out, "sample_efficiency", figures)

        fig, ax = plt.subplots(figsize=CURVE_SIZE, layout="constrained")
        plot_utils.plot_performance_profiles(
            aggregate.profiles, aggregate.taus, performance_profile_cis=aggregate.profile_intervals,
            colors=dict(colours), xlabel=r"normalised score $\tau$", ylabel=r"fraction of runs with score $> \tau$",
            ax=ax, legend=True, legendsize="medium", labelsize="large", ticklabelsize="medium",
        )
        _save(fig, out, "performance_profile", figures)

    # Many pairs are split evenly over several figures of at most PAIRS_PER_FIGURE rows each.
    pairs = aggregate.improvements
    size = math.ceil(len(pairs) / math.ceil(len(pairs) / PAIRS_PER_FIGURE)) if pairs else 1
    parts = [pairs[start:start + size] for start in range(0, len(pairs), size)]
    for part, improvements in enumerate(parts, 1):
        fig, ax = plt.subplots(figsize=(IMPROVEMENT_WIDTH, IMPROVEMENT_HEIGHT[0] + IMPROVEMENT_HEIGHT[1] * len(improvements)))
        plot_utils.plot_probability_of_improvement(
            {f"{i.x};{i.y}": i.estimate.value for i in improvements},
            {f"{i.x};{i.y}": np.array([i.estimate.low, i.estimate.high]) for i in improvements},
            pair_separator=";", ax=ax, colors=[colours[i.y] for i in improvements],
            xlabel="P(X > Y), 95% CI", ticklabelsize="medium", labelsize="large",
        )
        ax.set_xlim(0, 1)
        longest = max(len(i.x) for i in improvements), max(len(i.y) for i in improvements)
        fig.subplots_adjust(
            left=min(0.45, (0.1 * longest[0] + 0.8) / IMPROVEMENT_WIDTH),
            right=1 - min(0.45, (0.1 * longest[1] + 0.8) / IMPROVEMENT_WIDTH),
            bottom=0.8 / fig.get_figheight(), top=1 - 0.3 / fig.get_figheight(),
        )
        _save(fig, out, "probability_of_improvement" + (f"_{part}_of_{len(parts)}" if len(parts) > 1 else ""), figures)


# ------------------------------------------------------------------------------------------------- summary


def _number(value: float, unit: str) -> str:
    if unit == "return" and abs(value) >= 100:
        return f"{value:,.0f}"
    if unit == "return":
        return f"{value:.1f}"
    return f"{value:.2f}"


def _interval(estimate: Estimate, unit: str) -> str:
    return f"{_number(estimate.value, unit)} [{_number(estimate.low, unit)}, {_number(estimate.high, unit)}]"


def _seeds_text(runs: int) -> str:
    return f"{runs} (<{FEW_SEEDS})" if runs < FEW_SEEDS else str(runs)


def summary_rows(report: Report) -> list[dict[str, Any]]:
    """One row per number of the summary, for summary.csv."""
    rows: list[dict[str, Any]] = []

    def add(section: str, task: str, group: str, metric: str, estimate: Estimate, tasks: int, step: Any, unit: str) -> None:
        rows.append(dict(
            section=section, task=task, group=group, metric=metric, value=estimate.value, ci_low=estimate.low,
            ci_high=estimate.high, seeds=estimate.runs, tasks=tasks, env_step=step, unit=unit,
            few_seeds=estimate.runs < FEW_SEEDS,
        ))

    for task in report.tasks:
        for result in task.groups:
            name, label, step = task.name, result.group.label, task.comparison_step
            if result.final is None or result.auc is None or result.best is None:
                continue
            add("task", name, label, "final_iqm", result.final, 1, step, task.score_name)
            if result.final_normalised is not None:
                add("task", name, label, "final_iqm_normalised", result.final_normalised, 1, step, "normalised score")
            add("task", name, label, "auc_iqm", result.auc, 1, f"{task.start_step:g}-{step:g}", task.score_name)
            add("task", name, label, "best_iqm", result.best, 1, step, task.score_name)
    aggregate = report.aggregate
    if aggregate is not None:
        for label, estimates in aggregate.metrics.items():
            for metric, estimate in zip(METRIC_NAMES, estimates):
                add("aggregate", " ".join(aggregate.tasks), label, metric.lower().replace(" ", "_"), estimate,
                    len(aggregate.tasks), "final", "normalised score")
        for improvement in aggregate.improvements:
            add("probability_of_improvement", " ".join(improvement.tasks), f"{improvement.x} > {improvement.y}",
                "probability_of_improvement", improvement.estimate, len(improvement.tasks), "final", "probability")
    return rows


SUMMARY_COLUMNS = [
    "section", "task", "group", "metric", "value", "ci_low", "ci_high", "seeds", "tasks", "env_step", "unit", "few_seeds",
]


def write_summary(report: Report, out: Path) -> None:
    with _writing(out / "summary.csv") as path, open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=SUMMARY_COLUMNS)
        writer.writeheader()
        for row in summary_rows(report):
            writer.writerow({k: f"{v:.6g}" if isinstance(v, float) else v for k, v in row.items()})
    with _writing(out / "summary.md") as path:
        path.write_text(summary_markdown(report))


def write_curves(report: Report, out: Path) -> None:
    """Every learning-curve point with the number of runs it rests on."""
    with _writing(out / "curves.csv") as path, open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["task", "group", "unit", "env_step", "iqm", "ci_low", "ci_high", "runs"])
        for task in report.tasks:
            for result in task.groups:
                curve = result.curve
                for i, step in enumerate(curve.steps):
                    writer.writerow([task.name, result.group.label, task.score_name, f"{step:g}",
                                     f"{curve.iqm[i]:.6g}", f"{curve.low[i]:.6g}", f"{curve.high[i]:.6g}", int(curve.runs[i])])
        if report.aggregate is not None:
            for label, curve in report.aggregate.curve.items():
                for i, step in enumerate(curve.steps):
                    writer.writerow(["across tasks", label, "normalised score", f"{step:g}", f"{curve.iqm[i]:.6g}",
                                     f"{curve.low[i]:.6g}", f"{curve.high[i]:.6g}", int(curve.runs[i])])


def summary_markdown(report: Report) -> str:
    from ace_rl import __version__

    groups = [r for task in report.tasks for r in task.groups]
    lines = [
        "# ace-rl report",
        "",
        f"{len(report.runs)} runs from {', '.join(f'`{p}`' for p in report.inputs)}: {len(report.tasks)} task(s), "
        f"{len({r.group.label for r in groups})} algorithm group(s). ace-rl {__version__}. Every interval is a 95 % "
        f"stratified-bootstrap confidence interval from rliable ({report.reps} repetitions, seed {report.seed}); "
        f"IQM is the interquartile mean over seeds (the mean of the middle 50 % of runs). Seed counts below "
        f"{FEW_SEEDS} are marked `(<{FEW_SEEDS})`: intervals from so few runs are unreliable.",
        "",
        "## Per task",
        "",
        "Scores in the task's own units: the success rate where the task reports success, the return otherwise. "
        "`final` is each run's score at the task's comparison step (the last env step every run of the task "
        "reached); `AUC` is the area under each run's learning curve from the first to the comparison step divided "
        "by that span (the curve's mean height, raw units, not normalised); `best` is each run's best evaluation up "
        "to the comparison step. Each is the IQM over the group's seeds [95 % CI]; `normalised final` is the final "
        "IQM on the normalised scale (see Normalisation).",
        "",
        "| task | score | algorithm | seeds | final at step | final IQM [95% CI] | normalised final | AUC IQM (steps) | best IQM |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for task in report.tasks:
        for result in task.groups:
            unit = task.score_name
            if result.final is None or result.auc is None or result.best is None:
                lines.append(
                    f"| {task.name} | {unit} | {result.group.label} | 0 of {len(result.group.runs)} | "
                    f"{_steps_text(task.comparison_step)} | - | - | - | - |"
                )
                continue
            normalised = "-" if result.final_normalised is None else _interval(result.final_normalised, "normalised")
            seeds = _seeds_text(result.final.runs)
            if len(result.compared) < len(result.group.runs):
                seeds = f"{len(result.compared)} of {len(result.group.runs)}" + seeds[len(str(result.final.runs)):]
            lines.append(
                f"| {task.name} | {unit} | {result.group.label} | {seeds} | "
                f"{_steps_text(task.comparison_step)} | {_interval(result.final, unit)} | {normalised} | "
                f"{_interval(result.auc, unit)} ({_steps_text(task.start_step)}-{_steps_text(task.comparison_step)}) | "
                f"{_interval(result.best, unit)} |"
            )
    lines += ["", "## Normalisation", "",
              "Aggregates across tasks use normalised final scores, `(score - low) / (high - low)`:", "",
              "| task | score | normalised as |", "|---|---|---|"]
    for task in report.tasks:
        how = "no reference score: per-task figures and table only" if task.normalisation is None else task.normalisation.description
        lines.append(f"| {task.name} | {task.score_name} | {how} |")

    aggregate = report.aggregate
    lines += ["", "## Across tasks (normalised scores)", ""]
    if aggregate is None or not aggregate.metrics:
        lines.append("No aggregate metrics (see Notes).")
    else:
        lines += [
            f"Final normalised scores on {len(aggregate.tasks)} task(s): {', '.join(aggregate.tasks)}. Each number "
            "rests on the runs per task shown; optimality gap is the mean shortfall below a normalised score of 1 "
            "(lower is better).",
            "",
            "| algorithm | tasks | runs per task | " + " | ".join(METRIC_NAMES) + " |",
            "|---|---|---|" + "---|" * len(METRIC_NAMES),
        ]
        for label in aggregate.labels:
            estimates = aggregate.metrics[label]
            lines.append(
                f"| {label} | {len(aggregate.tasks)} | {_seeds_text(estimates[0].runs)} | "
                + " | ".join(_interval(e, "normalised") for e in estimates) + " |"
            )
    if aggregate is not None and aggregate.improvements:
        lines += [
            "",
            "Probability of improvement: the chance that a run of X scores higher than a run of Y on a task, averaged "
            "over the tasks both have (rliable's `probability_of_improvement`, Mann-Whitney U per task; 0.5 is a tie).",
            "",
            "| X | Y | tasks | runs per task (X / Y) | P(X > Y) [95% CI] |",
            "|---|---|---|---|---|",
        ]
        for improvement in aggregate.improvements:
            lines.append(
                f"| {improvement.x} | {improvement.y} | {len(improvement.tasks)} | "
                f"{_seeds_text(improvement.runs_x)} / {_seeds_text(improvement.runs_y)} | "
                f"{_interval(improvement.estimate, 'probability')} |"
            )
    lines += ["", "## Notes", ""]
    lines += [f"- {note}" for note in report.notes] or ["- All runs of each task cover the same env steps."]
    lines += ["", "## Figures", ""]
    lines += [f"- `{stem}.png` (and `.pdf`)" for stem in report.figures]
    lines += ["", "`curves.csv` holds every learning-curve point with the number of runs it rests on.", ""]
    return "\n".join(lines)
