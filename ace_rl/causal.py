"""Causal weights of the action dimensions (docs/algorithm.md: "The causal model and the weights", "Sink and
DirectLiNGAM").

ACE's structural model puts the reward last: ``r = f(B_{s->r|a} s, B_{a->r|s} a, e)``. The coefficients
``b_i = B_{a->r|s}[i]`` (the effect of action dimension ``i`` on the reward, given the state) become the
causal weights ``w = |A| * softmax(b)``.

Two estimators of ``b`` are offered (a run chooses between them by their cost, ace_rl.causal_cost):

``"directlingam"``
    The official code's estimator: ``lingam.DirectLiNGAM`` on ``X = [S, A, R]``, reading the reward's row at the
    action columns. Its run time grows about with the cube of the number of variables, so a ``time_limit`` can
    refuse fits that would take too long.
``"sink"`` (the default of `causal_weights`)
    If the reward is a sink, its row of the DirectLiNGAM adjacency matrix does not depend on the causal order
    found among states and actions: it is the adaptive-lasso regression of ``r`` on all of ``(s, a)``, exactly as
    ``lingam.utils.predict_adaptive_lasso`` computes it. This module implements that estimator itself, from the
    ``p x p`` correlation matrix instead of the ``n x p`` data, which makes it fast enough for Humanoid (366
    variables). It equals DirectLiNGAM's row only where DirectLiNGAM orders the reward last, which on real
    transitions it often does not.

Both methods first clean the columns: constant columns, exact duplicates and near-collinear columns carry no
causal information (and made the official code crash or return NaN), so they are dropped and reported in
``CausalFit.dropped``. An action column that is dropped gets the coefficient 0.
"""

from __future__ import annotations

import math
import time
import warnings
from collections import Counter
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from functools import cache, cached_property
from typing import Any

import numpy as np
import scipy.linalg
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import lars_path_gram
from threadpoolctl import ThreadpoolController

METHODS: tuple[str, ...] = ("sink", "directlingam")
# What the effects are measured on (docs/algorithm.md, "Causal targets"): "reward" is the official model (the
# linear direct effect b of each action on the immediate reward, weights n * softmax(b)); "reward-interaction" is
# the scale-free effect of each action on the immediate reward with quadratic and state-dependent terms.
TARGETS: tuple[str, ...] = ("reward", "reward-interaction")
INTERACTION_METHOD = "interaction"  # CausalFit.method of a reward-interaction fit
# reward-interaction: each action's terms are a_i, a_i**2 and a_i * s_j for the INTERACTION_STATES states most
# correlated with the reward; the weights are n * softmax(effect / EFFECT_TEMPERATURE), the effects being
# fractions of the reward's standard deviation (an effect of 0.1 more gives e = 2.7 times the weight).
INTERACTION_STATES = 8
EFFECT_TEMPERATURE = 0.1
# reward-interaction: fewer samples than this whose reward differs from its most common value (a sparse reward's
# successes) give uniform weights. With 9-41 successes in 5,000-10,000 random PandaReachJoints-v3 steps the
# effects were noise: a distractor got up to 0.47 more weight than a real joint (benchmarks/causal_target.py).
MIN_REWARD_EVENTS = 100

# A column whose spread is below this fraction of its magnitude is constant up to rounding.
CONSTANT_RELATIVE_TOLERANCE = 1e-12
# A predictor is dropped as collinear when 1 - R^2 of its regression on the predictors kept before it is below
# this value (variance inflation factor above 1e8).
COLLINEAR_TOLERANCE = 1e-8
# 1 - R^2 of the reward on the kept predictors below which the reward counts as an exact linear function of them.
EXACT_FIT_TOLERANCE = 1e-20
# Seconds per causal-order pair evaluation and sample of lingam.DirectLiNGAM, measured on 2 nearly idle cores
# (benchmarks/causal_speed.py, results/causal_speed.json, load average 1.2-1.3; 10,000 samples: Hopper-v5's 15
# variables 1.80 s, HalfCheetah-v5's 24 variables 7.6 s; 1.6e-7 and 1.65e-7 per pair and sample).
DIRECTLINGAM_SECONDS_PER_PAIR_SAMPLE = 1.6e-7
# The time-limit check times DirectLiNGAM on this many columns when the constant-based estimate is within a
# factor CALIBRATION_RANGE of the limit.
CALIBRATION_VARIABLES = 8
CALIBRATION_RANGE = 5.0
# The fits run with one BLAS thread: the matrices are small (p x p, p <= a few hundred) and on a 2-core machine
# that is shared with the trainer (or anything else) multi-threaded OpenBLAS was 4x slower than one thread.
BLAS_THREADS = 1


class CausalTimeLimitError(ValueError):
    """The requested causal fit would take longer than the allowed time."""


@dataclass(frozen=True)
class CausalFit:
    """Result of one causal fit.

    Attributes:
        weights: shape ``(n_actions,)``, ``n_actions * softmax(coefficients)``; all ones when no fit was possible.
        coefficients: shape ``(n_actions,)``, the raw ``b_i`` = effect of action ``i`` on the reward given the
            state (zeros when no fit was possible, and for dropped action columns).
        seconds: wall time of the fit, column cleaning included.
        method: the method used, one of ``METHODS``.
        dropped: column name (``"state[3]"``, ``"action[1]"``, ``"reward"``) -> why it was left out.
        note: one human-readable line for the log, ``""`` when nothing noteworthy happened.
    """

    weights: np.ndarray
    coefficients: np.ndarray
    seconds: float
    method: str
    dropped: dict[str, str]
    note: str


@dataclass(frozen=True)
class CausalData:
    """The cleaned matrix ``X = [kept states, kept actions, reward]`` that both methods fit.

    Attributes:
        source: the validated input ``[S, A, R]`` as one float64 matrix, every column.
        columns: the columns of ``source`` that are kept, in order; the reward (last column of ``source``) is last.
        names: the name of every kept column.
        action_columns: shape ``(n_actions,)``, for each action the index of its column in ``matrix``, or -1
            when the action column was dropped.
        dropped: column name -> why it was left out.
        notes: human-readable remarks (too few samples, constant reward, ...).
        fit_possible: False when no regression can be done (constant reward, no predictor left, too few samples).
        gram: the centered Gram matrix of ``matrix``'s columns (``n_samples`` times their covariance).
        std: the standard deviation of every column of ``matrix`` (``ddof=0``, as ``StandardScaler``).
    """

    source: np.ndarray
    columns: np.ndarray
    names: list[str]
    action_columns: np.ndarray
    dropped: dict[str, str]
    notes: list[str]
    fit_possible: bool
    gram: np.ndarray = field(repr=False, default_factory=lambda: np.empty((0, 0)))
    std: np.ndarray = field(repr=False, default_factory=lambda: np.empty(0))

    @cached_property
    def matrix(self) -> np.ndarray:
        """The kept columns, shape ``(n_samples, len(columns))``, float64; the reward is the last column."""
        return self.source[:, self.columns]

    @property
    def n_samples(self) -> int:
        return self.source.shape[0]


@cache
def _thread_controller() -> ThreadpoolController:
    # Scanning the loaded libraries costs about 5 ms: do it once (numpy, scipy and scikit-learn are loaded by now).
    return ThreadpoolController()


def _few_blas_threads() -> AbstractContextManager[Any]:
    return _thread_controller().limit(limits=BLAS_THREADS, user_api="blas")


def weights_from_coefficients(coefficients: np.ndarray) -> np.ndarray:
    """Causal weights ``n * softmax(b)`` (they sum to ``n``), computed without overflow."""
    b = np.asarray(coefficients, dtype=np.float64).reshape(-1)
    if b.size == 0:
        return b.copy()
    if not np.all(np.isfinite(b)):
        raise ValueError("coefficients must be finite")
    e = np.exp(b - b.max())
    return b.size * e / e.sum()


def _column_names(n_states: int, n_actions: int) -> list[str]:
    return [f"state[{i}]" for i in range(n_states)] + [f"action[{i}]" for i in range(n_actions)] + ["reward"]


def _stack(states: np.ndarray, actions: np.ndarray, rewards: np.ndarray) -> tuple[np.ndarray, int, int]:
    """Check shapes and stack ``[S, A, R]`` into one float64 Fortran-ordered matrix."""
    states = np.asarray(states)
    actions = np.asarray(actions)
    rewards = np.asarray(rewards)
    if states.ndim == 1:
        states = states.reshape(-1, 1)
    if actions.ndim == 1:
        actions = actions.reshape(-1, 1)
    if states.ndim != 2 or actions.ndim != 2:
        raise ValueError(f"states and actions must be 2-D, got shapes {states.shape} and {actions.shape}")
    if rewards.ndim == 2 and rewards.shape[1] == 1:
        rewards = rewards[:, 0]
    if rewards.ndim != 1:
        raise ValueError(f"rewards must have shape (N,) or (N, 1), got {rewards.shape}")
    n = states.shape[0]
    if actions.shape[0] != n or rewards.shape[0] != n:
        raise ValueError(
            f"states, actions and rewards must have the same number of rows, got "
            f"{states.shape[0]}, {actions.shape[0]} and {rewards.shape[0]}"
        )
    if actions.shape[1] == 0:
        raise ValueError("actions must have at least one column")
    n_states, n_actions = states.shape[1], actions.shape[1]
    x = np.empty((n, n_states + n_actions + 1), dtype=np.float64, order="F")
    x[:, :n_states] = states
    x[:, n_states : n_states + n_actions] = actions
    x[:, -1] = rewards
    return x, n_states, n_actions


def _raise_non_finite(x: np.ndarray, names: list[str]) -> None:
    bad = (~np.isfinite(x)).sum(axis=0)
    parts = [f"{names[j]} holds {bad[j]} non-finite value{'s' if bad[j] != 1 else ''}" for j in np.flatnonzero(bad)]
    shown = "; ".join(parts[:5]) + (f"; and {len(parts) - 5} more columns" if len(parts) > 5 else "")
    raise ValueError(f"causal fit needs finite data: {shown}")


def _duplicates(x: np.ndarray, candidates: list[int]) -> dict[int, int]:
    """Map each column in ``candidates`` that equals an earlier candidate to that earlier column."""
    first_by_hash: dict[int, list[int]] = {}
    duplicate_of: dict[int, int] = {}
    for j in candidates:
        column = x[:, j]
        key = hash(column.tobytes())
        for k in first_by_hash.get(key, []):
            if np.array_equal(column, x[:, k]):
                duplicate_of[j] = k
                break
        else:
            first_by_hash.setdefault(key, []).append(j)
    return duplicate_of


def _collinear_screen(corr: np.ndarray, order: list[int], tol: float) -> tuple[list[int], dict[int, float]]:
    """Keep predictors in ``order`` whose 1 - R^2 on the ones kept before them is at least ``tol``.

    A Cholesky factorisation of the correlation matrix with a fixed pivot order: ``residual[j]`` is the part of
    column ``j``'s variance not explained by the kept columns.
    """
    p = corr.shape[0]
    factor = np.zeros((p, len(order)))
    residual = np.diag(corr).copy()
    kept: list[int] = []
    rejected: dict[int, float] = {}
    for j in order:
        if residual[j] < tol:
            rejected[j] = max(float(residual[j]), 0.0)
            continue
        r = len(kept)
        column = (corr[:, j] - factor[:, :r] @ factor[j, :r]) / math.sqrt(residual[j])
        factor[:, r] = column
        residual -= column**2
        kept.append(j)
    return kept, rejected


def prepare_data(
    states: np.ndarray,
    actions: np.ndarray,
    rewards: np.ndarray,
    collinear_tolerance: float = COLLINEAR_TOLERANCE,
) -> CausalData:
    """Validate ``(S, A, R)`` and drop the columns that carry no causal information.

    Dropped, in this order: constant columns; exact duplicates (actions are preferred as the representative,
    then the lower index); columns that are near-linear combinations of the columns kept before them
    (``1 - R^2 < collinear_tolerance``; actions are examined first so that they are kept); and, when there are
    fewer samples than variables, the predictors least correlated with the reward (sure-independence screening)
    so that the regressions stay identifiable. The reward column is never dropped.

    Raises:
        ValueError: on bad shapes or non-finite values (naming the column).
    """
    x, n_states, n_actions = _stack(states, actions, rewards)
    names = _column_names(n_states, n_actions)
    column_max, column_min = x.max(axis=0), x.min(axis=0)
    if not (np.isfinite(column_max).all() and np.isfinite(column_min).all()):  # max/min propagate NaN and inf
        _raise_non_finite(x, names)
    n, n_columns = x.shape
    reward = n_columns - 1
    dropped: dict[str, str] = {}
    notes: list[str] = []
    action_ids = list(range(n_states, n_states + n_actions))
    state_ids = list(range(n_states))

    def no_fit(reason: str) -> CausalData:
        notes.append(reason)
        return CausalData(
            source=x,
            columns=np.array([reward]),
            names=["reward"],
            action_columns=np.full(n_actions, -1),
            dropped=dropped,
            notes=notes,
            fit_possible=False,
        )

    if n < 4:
        return no_fit(f"too few samples ({n}) for a causal fit: uniform weights")

    # Constant columns.
    magnitude = np.maximum(np.abs(column_max), np.abs(column_min))
    constant = column_max - column_min <= CONSTANT_RELATIVE_TOLERANCE * magnitude
    if constant[reward]:
        dropped["reward"] = "constant"
        return no_fit(f"the reward is constant ({x[0, reward]:g}) over the {n} samples: uniform weights")
    for j in np.flatnonzero(constant):
        dropped[names[j]] = "constant"

    # Exact duplicates among predictors, actions first so an action is kept as the representative.
    priority = [j for j in action_ids + state_ids if not constant[j]]
    duplicate_of = _duplicates(x, priority)
    for j, k in duplicate_of.items():
        dropped[names[j]] = f"duplicate of {names[k]}"
    candidates = [j for j in priority if j not in duplicate_of]
    if not candidates:
        return no_fit("no non-constant state or action column: uniform weights")

    # Centered Gram matrix of the candidate predictors and the reward.
    columns = [*sorted(candidates), reward]
    centered = x[:, columns]
    centered -= centered.mean(axis=0)
    gram = centered.T @ centered
    std = np.sqrt(np.diag(gram) / n)
    corr = gram / np.outer(std, std) / n
    position = {j: i for i, j in enumerate(columns)}
    y_pos = len(columns) - 1

    # Too few samples: keep at most n - 2 predictors (the regressions need n > predictors + 1).
    max_predictors = n - 2
    if len(candidates) > max_predictors:
        strength = np.abs(corr[:y_pos, y_pos])
        ranked_actions = sorted((j for j in candidates if j in action_ids), key=lambda j: -strength[position[j]])
        ranked_states = sorted((j for j in candidates if j not in action_ids), key=lambda j: -strength[position[j]])
        ranked = ranked_actions + ranked_states
        for j in ranked[max_predictors:]:
            dropped[names[j]] = "screened out (fewer samples than variables)"
        notes.append(
            f"{n} samples for {n_columns} variables: kept the {max_predictors} predictors most correlated "
            "with the reward"
        )
        screened_in = set(ranked[:max_predictors])
        candidates = [j for j in candidates if j in screened_in]

    order = [position[j] for j in candidates]
    kept_pos, rejected = _collinear_screen(corr, order, collinear_tolerance)
    for pos, residual in rejected.items():
        dropped[names[columns[pos]]] = f"collinear (1 - R^2 = {residual:.1e})"

    kept = sorted(columns[pos] for pos in kept_pos)
    final_columns = [*kept, reward]
    final_pos = [position[j] for j in final_columns]
    action_columns = np.full(n_actions, -1)
    for i, j in enumerate(final_columns[:-1]):
        if j in action_ids:
            action_columns[j - n_states] = i
    if dropped:
        kinds = Counter(reason.split(" ")[0] for reason in dropped.values())
        summary = ", ".join(f"{count} {kind}" for kind, count in kinds.items())
        notes.append(f"dropped {len(dropped)} of {n_columns - 1} state/action columns ({summary})")
    return CausalData(
        source=x,
        columns=np.array(final_columns),
        names=[names[j] for j in final_columns],
        action_columns=action_columns,
        dropped=dropped,
        notes=notes,
        fit_possible=True,
        gram=gram[np.ix_(final_pos, final_pos)],
        std=std[final_pos],
    )


def _solve_positive_definite(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Solve ``a x = b`` for a symmetric positive-definite ``a`` (least squares if it is numerically singular)."""
    try:
        return scipy.linalg.cho_solve(scipy.linalg.cho_factor(a, lower=True, check_finite=False), b, check_finite=False)
    except np.linalg.LinAlgError:
        return scipy.linalg.lstsq(a, b, check_finite=False)[0]


def _sink_row(data: CausalData) -> tuple[np.ndarray, str]:
    """Adaptive-lasso regression of the reward (last column) on all other columns.

    The estimator of ``lingam.utils.predict_adaptive_lasso(X, range(p), p)``, computed from the ``p x p``
    correlation matrix instead of the ``n x p`` data: OLS on standardized data gives the adaptive weights
    ``|beta|``; the lasso path of ``LassoLarsIC(criterion="bic")`` on the weighted standardized predictors (which
    scikit-learn also computes from their Gram matrix when ``n > p``) chooses the support; OLS with intercept on
    the original scale, restricted to the support, gives the coefficients.
    """
    n = data.n_samples
    std = data.std
    corr = data.gram / np.outer(std, std)  # = X_std^T X_std, n on the diagonal
    p = corr.shape[0] - 1
    c_xx, c_xy = corr[:p, :p], corr[:p, p]
    yy = corr[p, p]

    # 1. OLS on standardized data -> adaptive weights (gamma = 1).
    beta_std = _solve_positive_definite(c_xx, c_xy)
    weight = np.abs(beta_std)
    # Its residual sum of squares from the data (one matrix-vector product): yy - c_xy @ beta_std would lose all
    # digits to cancellation when the reward is almost a linear function of the predictors.
    direction = np.zeros(data.source.shape[1])
    direction[data.columns] = np.append(-beta_std / std[:p], 1.0 / std[p])
    residual = data.source @ direction
    residual -= residual.mean()
    rss_ols = float(residual @ residual)
    if rss_ols <= EXACT_FIT_TOLERANCE * yy:
        # BIC needs a positive noise variance; with none, OLS already is the exact answer.
        return beta_std * std[p] / std[:p], "the reward is an exact linear function of states and actions: OLS used"

    # 2. LassoLarsIC(criterion="bic") on X_std * weight, from its Gram matrix.
    gram_w = c_xx * np.outer(weight, weight)
    xy_w = c_xy * weight
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # "regressors in active set degenerate"
        _, _, path = lars_path_gram(
            xy_w, gram_w, n_samples=n, max_iter=500, alpha_min=0.0, method="lasso", eps=np.finfo(float).eps
        )
    # RSS along the path without cancellation: the OLS solution in weighted coordinates is sign(beta_std).
    offset = path - np.sign(beta_std)[:, None]
    rss = rss_ols + np.einsum("ik,ik->k", offset, gram_w @ offset)
    degrees_of_freedom = (np.abs(path) > np.finfo(np.float64).eps).sum(axis=0)
    noise_variance = rss_ols / (n - p - 1)
    criterion = n * np.log(2 * np.pi * noise_variance) + rss / noise_variance + np.log(n) * degrees_of_freedom
    lasso_coef = path[:, int(np.argmin(criterion))]
    support = np.flatnonzero(np.abs(lasso_coef * weight) > 0.0)

    # 3. OLS with intercept on the original scale, restricted to the support (solved in standardized units).
    row = np.zeros(p)
    if support.size:
        beta = _solve_positive_definite(corr[np.ix_(support, support)], corr[support, p])
        row[support] = beta * std[p] / std[support]
    return row, ""


def _pairs_evaluated(n_variables: int) -> float:
    """Number of variable pairs DirectLiNGAM's causal-order search evaluates: sum over m of m (m - 1)."""
    return (n_variables + 1) * n_variables * (n_variables - 1) / 3


def estimate_directlingam_seconds(n_samples: int, n_variables: int, calibrate_on: np.ndarray | None = None) -> float:
    """Estimated run time of ``lingam.DirectLiNGAM().fit`` on ``n_samples x n_variables`` data.

    The causal-order search dominates; it costs about ``n_samples * n_variables**3 / 3`` operations. Without
    ``calibrate_on`` the cost per pair and sample is a constant measured on 2 idle cores; with it (a data matrix
    with ``n_samples`` rows), DirectLiNGAM is timed on a few of its columns (about 0.1 to 0.5 s) and scaled up, which
    follows the machine's actual speed and load.
    """
    if n_variables < 2:
        return 0.0
    if calibrate_on is None:
        return DIRECTLINGAM_SECONDS_PER_PAIR_SAMPLE * n_samples * _pairs_evaluated(n_variables)
    import lingam

    k = min(CALIBRATION_VARIABLES, calibrate_on.shape[1])
    subset = np.asarray(calibrate_on[:, calibrate_on.shape[1] - k :], dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        lingam.DirectLiNGAM().fit(subset)
        seconds = time.perf_counter() - start
    return seconds * (n_samples / calibrate_on.shape[0]) * _pairs_evaluated(n_variables) / _pairs_evaluated(k)


def _check_directlingam_time(data: CausalData, time_limit: float) -> None:
    n, n_columns = data.matrix.shape
    estimate = estimate_directlingam_seconds(n, n_columns)
    # The constant is only right within a factor of a few (machine, load): calibrate when it matters.
    ambiguous = time_limit / CALIBRATION_RANGE < estimate < time_limit * CALIBRATION_RANGE
    if ambiguous and n_columns > CALIBRATION_VARIABLES:
        estimate = estimate_directlingam_seconds(n, n_columns, calibrate_on=data.matrix)
    if estimate > time_limit:
        raise CausalTimeLimitError(
            f"DirectLiNGAM on {n_columns} variables and {n} samples would take about {estimate:.3g} s, more than "
            f"the time limit of {time_limit:g} s; use method='sink' (at a small fraction of the cost: the "
            "adaptive-lasso regression of the reward on all states and actions, which is DirectLiNGAM's reward row "
            "only where DirectLiNGAM orders the reward last) or raise time_limit"
        )


def _directlingam_row(data: CausalData, time_limit: float | None) -> tuple[np.ndarray, str]:
    """The reward's row of ``lingam.DirectLiNGAM``'s adjacency matrix."""
    import lingam

    n_columns = data.matrix.shape[1]
    if time_limit is not None:
        _check_directlingam_time(data, time_limit)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        model = lingam.DirectLiNGAM().fit(data.matrix)
    order = list(model.causal_order_)
    note = ""
    if order[-1] != n_columns - 1:
        note = (
            f"DirectLiNGAM put the reward at position {order.index(n_columns - 1) + 1} of {n_columns} in its causal "
            "order, not last: its reward row is conditioned on fewer variables than the sink method's"
        )
    return np.asarray(model.adjacency_matrix_[-1, :-1], dtype=np.float64), note


def reward_row(data: CausalData, method: str = "sink", time_limit: float | None = None) -> tuple[np.ndarray, str]:
    """The reward's row of the adjacency matrix over ``data.names[:-1]`` and a note (``""`` if none).

    Needs ``data.fit_possible``. ``causal_weights`` reads this row at the action columns.
    """
    if method not in METHODS:
        raise ValueError(f"unknown causal method {method!r}; accepted methods: {', '.join(METHODS)}")
    if not data.fit_possible:
        raise ValueError("no causal fit is possible on this data: " + "; ".join(data.notes))
    with _few_blas_threads():
        return _reward_row(data, method, time_limit)


def _reward_row(data: CausalData, method: str, time_limit: float | None) -> tuple[np.ndarray, str]:
    if method == "sink":
        return _sink_row(data)
    return _directlingam_row(data, time_limit)


def interaction_effects(
    states: np.ndarray,
    actions: np.ndarray,
    rewards: np.ndarray,
    interaction_states: int = INTERACTION_STATES,
) -> tuple[np.ndarray, dict[str, str], list[str]]:
    """The scale-free effect of each action dimension on the immediate reward, seeing effects that depend on the
    state or on the action's size (the ``reward-interaction`` target).

    Every column is standardized; the reward is regressed by least squares on all states and, per action ``i``,
    on ``a_i``, ``a_i**2`` and ``a_i * s_j`` for the ``interaction_states`` states most correlated with the reward.
    The effect of action ``i`` is the standard deviation of the fitted contribution of its terms, less what noise
    alone gives such a contribution (``residual variance * terms / n``, as in an adjusted R^2), in units of the
    reward's standard deviation: 0 for an action the reward does not depend on, up to about 1 for one that
    explains it all. It does not depend on the units of the reward, the actions or the states.

    A reward that differs from its most common value in fewer than ``MIN_REWARD_EVENTS`` samples (a sparse
    reward's few successes) gives no fit: uniform weights, as a constant reward does.

    Returns the effects (shape ``(n_actions,)``, zeros when no fit is possible), the dropped columns and notes.
    """
    x, n_states, n_actions = _stack(states, actions, rewards)
    names = _column_names(n_states, n_actions)
    if not np.isfinite(x).all():
        _raise_non_finite(x, names)
    n = x.shape[0]
    effects = np.zeros(n_actions)
    if n < 4:
        return effects, {}, [f"too few samples ({n}) for a causal fit: uniform weights"]
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    constant = std <= CONSTANT_RELATIVE_TOLERANCE * np.abs(x).max(axis=0)
    if constant[-1]:
        reason = f"the reward is constant ({x[0, -1]:g}) over the {n} samples: uniform weights"
        return effects, {"reward": "constant"}, [reason]
    dropped = {names[j]: "constant" for j in np.flatnonzero(constant[:-1])}
    values, counts = np.unique(x[:, -1], return_counts=True)
    events = n - int(counts.max())
    if events < MIN_REWARD_EVENTS:
        most_common = values[int(np.argmax(counts))]
        reason = (
            f"only {events} of {n} samples have a reward other than {most_common:g}: too few to measure the actions' "
            f"effects (reward-interaction needs {MIN_REWARD_EVENTS}), uniform weights"
        )
        return effects, dropped, [reason]
    z = (x - mean) / np.where(constant, 1.0, std)
    y = z[:, -1]
    state_ids = [j for j in range(n_states) if not constant[j]]
    action_ids = [j for j in range(n_states, n_states + n_actions) if not constant[j]]
    if not action_ids:
        return effects, dropped, ["every action column is constant: uniform weights"]
    strength = np.abs(z[:, state_ids].T @ y) if state_ids else np.empty(0)
    interacting = [state_ids[k] for k in np.argsort(-strength, kind="stable")[:interaction_states]]

    blocks = [z[:, state_ids]]
    terms_of_action: list[slice] = []
    start = len(state_ids)
    for j in action_ids:
        action = z[:, j : j + 1]
        square = action**2
        block = np.hstack([action, square - square.mean(), action * z[:, interacting]])
        blocks.append(block - block.mean(axis=0))
        terms_of_action.append(slice(start, start + block.shape[1]))
        start += block.shape[1]
    design = np.hstack(blocks)
    if design.shape[1] >= n - 1:
        return effects, dropped, [f"{n} samples for {design.shape[1]} terms: too few for a fit, uniform weights"]
    gram = design.T @ design
    ridge = 1e-10 * np.trace(gram) / gram.shape[0]  # keeps exact duplicates of a state from making it singular
    coefficients = _solve_positive_definite(gram + ridge * np.eye(gram.shape[0]), design.T @ y)
    residual_variance = float(np.mean((y - design @ coefficients) ** 2))
    for j, terms in zip(action_ids, terms_of_action, strict=True):
        contribution = design[:, terms] @ coefficients[terms]
        excess = float(contribution @ contribution) / n - residual_variance * (terms.stop - terms.start) / n
        effects[j - n_states] = math.sqrt(max(excess, 0.0))
    return effects, dropped, []


def weights_from_effects(effects: np.ndarray, temperature: float = EFFECT_TEMPERATURE) -> np.ndarray:
    """Causal weights ``n * softmax(effects / temperature)`` of the reward-interaction target."""
    return weights_from_coefficients(np.asarray(effects, dtype=np.float64) / temperature)


def causal_weights(
    states: np.ndarray,
    actions: np.ndarray,
    rewards: np.ndarray,
    method: str = "sink",
    time_limit: float | None = None,
    target: str = "reward",
) -> CausalFit:
    """Fit the causal model on ``(S, A, R)`` and return the causal weights of the action dimensions.

    Args:
        states: shape ``(N, S)``.
        actions: shape ``(N, A)``.
        rewards: shape ``(N,)`` or ``(N, 1)``.
        method: for the ``"reward"`` target, ``"sink"`` (fast, the default here) or ``"directlingam"`` (the
            official code's estimator); a run chooses with ace_rl.causal_cost. Not used by ``"reward-interaction"``.
        time_limit: for ``"directlingam"``, the most seconds the fit may take by its estimated run time;
            ``None`` means no cap. Ignored by ``"sink"``.
        target: ``"reward"`` (the official model: weights ``n * softmax(b)``) or ``"reward-interaction"``
            (`interaction_effects`, weights ``n * softmax(effect / EFFECT_TEMPERATURE)``; its ``CausalFit.method`` is
            ``"interaction"`` and its ``coefficients`` are the effects).

    Raises:
        ValueError: unknown method or target, bad shapes or non-finite input (the message names the column).
        CausalTimeLimitError: DirectLiNGAM's estimated run time exceeds ``time_limit``.
    """
    if target not in TARGETS:
        raise ValueError(f"unknown causal target {target!r}; accepted targets: {', '.join(TARGETS)}")
    if method not in METHODS:
        raise ValueError(f"unknown causal method {method!r}; accepted methods: {', '.join(METHODS)}")
    start = time.perf_counter()
    with _few_blas_threads():
        if target == "reward-interaction":
            coefficients, dropped, notes = interaction_effects(states, actions, rewards)
            weights = weights_from_effects(coefficients)
            method = INTERACTION_METHOD
        else:
            coefficients, dropped, notes = _reward_coefficients(states, actions, rewards, method, time_limit)
            weights = weights_from_coefficients(coefficients)
    return CausalFit(
        weights=weights,
        coefficients=coefficients,
        seconds=time.perf_counter() - start,
        method=method,
        dropped=dropped,
        note="; ".join(notes),
    )


def _reward_coefficients(
    states: np.ndarray, actions: np.ndarray, rewards: np.ndarray, method: str, time_limit: float | None
) -> tuple[np.ndarray, dict[str, str], list[str]]:
    """The reward target's ``b`` (zeros where no fit is possible or an action column was dropped)."""
    data = prepare_data(states, actions, rewards)
    coefficients = np.zeros(data.action_columns.shape[0])
    notes = list(data.notes)
    if data.fit_possible:
        row, note = _reward_row(data, method, time_limit)
        if note:
            notes.append(note)
        present = data.action_columns >= 0
        coefficients[present] = row[data.action_columns[present]]
    return coefficients, dict(data.dropped), notes
