"""The report's statistics, as small functions of arrays: alignment of runs on one grid of env steps, the IQM with
rliable's stratified-bootstrap intervals, and each run's final score, AUC and best score.

rliable's bootstrap draws from NumPy's global generator (its ``random_state`` argument is not used by the
resampling), so every interval here is computed with that generator seeded with ``seed`` and its previous state
restored afterwards: the same inputs give the same numbers."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ace_rl.report.libraries import libraries

CONFIDENCE = 0.95
METRIC_NAMES = ("IQM", "Median", "Mean", "Optimality Gap")
"""The aggregate metrics, in the order aggregate_metrics returns them."""


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


@contextlib.contextmanager
def seeded_numpy(seed: int) -> Iterator[None]:
    """NumPy's global generator seeded with ``seed`` inside the block, and as it was after it."""
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
    with seeded_numpy(seed):
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


def metric_estimates(scores: Mapping[str, np.ndarray], reps: int, seed: int) -> dict[str, list[Estimate]]:
    """Per label, the aggregate metrics (METRIC_NAMES) of its (runs, tasks) scores with their intervals."""
    point, interval = interval_estimates(scores, aggregate_metrics, reps, seed)
    return {
        label: [
            Estimate(float(point[label][i]), float(interval[label][0, i]), float(interval[label][1, i]), len(values))
            for i in range(len(METRIC_NAMES))
        ]
        for label, values in scores.items()
    }


def improvement_estimate(scores_x: np.ndarray, scores_y: np.ndarray, reps: int, seed: int) -> Estimate:
    """P(X > Y) from two (runs, tasks) arrays of scores on the same tasks, with its interval."""
    _, _, metrics, _ = libraries()
    point, interval = interval_estimates({"pair": (scores_x, scores_y)}, metrics.probability_of_improvement, reps, seed)
    low, high = np.ravel(interval["pair"])
    return Estimate(float(np.ravel(point["pair"])[0]), float(low), float(high), min(len(scores_x), len(scores_y)))


def performance_profiles(
    scores: Mapping[str, np.ndarray], taus: np.ndarray, reps: int, seed: int
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """rliable's performance profile of each label's scores at ``taus``, with its intervals, seeded."""
    _, rly, _, _ = libraries()
    with seeded_numpy(seed):
        return rly.create_performance_profile(dict(scores), taus, reps=reps)


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


def iqm_curves(scores: Mapping[str, np.ndarray], steps: np.ndarray, reps: int, seed: int) -> dict[str, Curve]:
    """Per label, the IQM over runs and tasks of (runs, tasks, steps) scores at each step, with its intervals."""
    point, interval = interval_estimates(scores, iqm_per_step, reps, seed)
    return {
        label: Curve(steps, point[label], interval[label][0], interval[label][1], np.full(len(steps), values.shape[0]))
        for label, values in scores.items()
    }


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
