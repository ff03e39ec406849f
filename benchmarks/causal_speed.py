"""Speed and agreement of the causal-weight estimators on real MuJoCo transitions.

For every task, collects ``--samples`` transitions with uniformly random actions (seeded; cached as
``benchmarks/results/transitions_<task>_<samples>_<seed>.npz`` so reruns are quick) and times, on the same data:

- ``lingam.DirectLiNGAM`` (the official code's estimator), skipped when its estimated run time exceeds
  ``--directlingam-cap`` seconds; the estimate is then reported instead and marked ``~``;
- ``lingam.utils.predict_adaptive_lasso`` of the reward on all states and actions (the reward's row of
  DirectLiNGAM's adjacency matrix when the reward is a sink);
- ``ace_rl.causal.causal_weights(method="sink")``.

The reference estimators run on the matrix that ``ace_rl.causal.prepare_data`` cleaned (constant, duplicate and
collinear columns dropped); on the raw matrix they crash or return NaN for tasks with such columns. The JSON result
goes to ``benchmarks/results/causal_speed.json``.

Run:  python benchmarks/causal_speed.py [--tasks Hopper-v5 Humanoid-v5] [--samples 10000] [--directlingam-cap 180]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_TASKS = (
    "Hopper-v5",
    "HalfCheetah-v5",
    "Ant-v5",
    "Humanoid-v5",
    "metaworld:assembly-v3",
    "dmc:humanoid-run",
)
# Paper preset: about 8 updates (= env steps) per second on 2 CPU cores; one causal fit every 10,000 steps.
UPDATES_PER_SECOND = 8.0
CAUSAL_INTERVAL = 10_000


def collect_transitions(task: str, samples: int, seed: int) -> dict[str, np.ndarray]:
    """``samples`` transitions ``(s, a, r)`` of ``task`` under uniformly random actions, cached on disk."""
    path = RESULTS / f"transitions_{task.replace(':', '_')}_{samples}_{seed}.npz"
    if path.exists():
        with np.load(path) as cached:
            return {key: cached[key] for key in ("states", "actions", "rewards")}
    from ace_rl.envs import make_env, random_transitions

    env = make_env(task)
    states, actions, rewards = random_transitions(env, samples, seed)
    env.close()
    RESULTS.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        np.savez_compressed(f, states=states, actions=actions, rewards=rewards)
    tmp.replace(path)
    return {"states": states, "actions": actions, "rewards": rewards}


T = TypeVar("T")


def _timed(fn: Callable[[], T], repeats: int) -> tuple[T, float]:
    """Result of ``fn()`` and its best wall time over ``repeats`` runs."""
    best = float("inf")
    for _ in range(max(repeats, 1)):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return result, best


def bench_task(task: str, samples: int, seed: int, directlingam_cap: float, repeats: int) -> dict:
    import lingam
    from lingam.utils import predict_adaptive_lasso
    from threadpoolctl import threadpool_limits

    from ace_rl.causal import (
        causal_weights,
        estimate_directlingam_seconds,
        prepare_data,
        reward_row,
        weights_from_coefficients,
    )

    data = collect_transitions(task, samples, seed)
    s, a, r = data["states"], data["actions"], data["rewards"]
    n_actions = a.shape[1]
    raw_variables = s.shape[1] + n_actions + 1

    causal_weights(s, a, r, method="sink")  # warm-up: imports, threadpoolctl's library scan
    fit, sink_seconds = _timed(lambda: causal_weights(s, a, r, method="sink"), repeats)
    cleaned = prepare_data(s, a, r)
    x = cleaned.matrix
    n_variables = x.shape[1]
    present = cleaned.action_columns >= 0
    sink_row, _ = reward_row(cleaned, "sink")

    def action_coefficients(row: np.ndarray) -> np.ndarray:
        coefficients = np.zeros(n_actions)
        coefficients[present] = row[cleaned.action_columns[present]]
        return coefficients

    def run_predict_adaptive_lasso() -> np.ndarray:
        return predict_adaptive_lasso(x, list(range(n_variables - 1)), n_variables - 1)

    # The references run on the cleaned matrix (the raw one has constant/duplicate/collinear columns), with one
    # BLAS thread (faster for them too on this shared 2-core machine; the default-thread time is recorded as well).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pal_row, pal_default_threads_seconds = _timed(run_predict_adaptive_lasso, repeats)
        with threadpool_limits(1, user_api="blas"):
            pal_row, pal_seconds = _timed(run_predict_adaptive_lasso, repeats)
    pal_coefficients = action_coefficients(pal_row)
    pal_weights = weights_from_coefficients(pal_coefficients)

    with threadpool_limits(1, user_api="blas"):
        estimate = estimate_directlingam_seconds(x.shape[0], n_variables, calibrate_on=x)
    dl: dict = {"estimated_seconds": estimate}
    if estimate <= directlingam_cap:
        with warnings.catch_warnings(), threadpool_limits(1, user_api="blas"):
            warnings.simplefilter("ignore")
            start = time.perf_counter()
            model = lingam.DirectLiNGAM().fit(x)
            dl["seconds"] = time.perf_counter() - start
        dl["measured"] = True
        order = [int(i) for i in model.causal_order_]
        dl["reward_position"] = order.index(n_variables - 1) + 1
        dl["reward_last"] = order[-1] == n_variables - 1
        dl_row = model.adjacency_matrix_[-1, :-1]
        dl_coefficients = action_coefficients(dl_row)
        dl["coefficients"] = dl_coefficients.tolist()
        dl["max_abs_weight_diff_sink"] = float(np.abs(weights_from_coefficients(dl_coefficients) - fit.weights).max())
        dl["max_abs_coef_diff_sink"] = float(np.abs(dl_coefficients - fit.coefficients).max())
        dl["max_abs_reward_row_diff_sink"] = float(np.abs(dl_row - sink_row).max())
    else:
        dl["seconds"] = estimate
        dl["measured"] = False

    return {
        "task": task,
        "samples": int(x.shape[0]),
        "raw_variables": raw_variables,
        "variables": n_variables,
        "dropped": fit.dropped,
        "note": fit.note,
        "sink_seconds": sink_seconds,
        "predict_adaptive_lasso_seconds": pal_seconds,
        "predict_adaptive_lasso_default_threads_seconds": pal_default_threads_seconds,
        "directlingam": dl,
        "speedup_vs_directlingam": dl["seconds"] / sink_seconds,
        "speedup_vs_predict_adaptive_lasso": pal_seconds / sink_seconds,
        "max_abs_weight_diff_vs_predict_adaptive_lasso": float(np.abs(pal_weights - fit.weights).max()),
        "max_abs_coef_diff_vs_predict_adaptive_lasso": float(np.abs(pal_coefficients - fit.coefficients).max()),
        # over every state and action column, not only the actions
        "max_abs_reward_row_diff_vs_predict_adaptive_lasso": float(np.abs(pal_row - sink_row).max()),
        "reward_row_nonzero": int(np.count_nonzero(sink_row)),
        "sink_weights": fit.weights.tolist(),
        "sink_coefficients": fit.coefficients.tolist(),
        "training_overhead_sink": sink_seconds / (CAUSAL_INTERVAL / UPDATES_PER_SECOND),
        "training_overhead_directlingam": dl["seconds"] / (CAUSAL_INTERVAL / UPDATES_PER_SECOND),
    }


def _table(rows: list[dict]) -> str:
    header = [
        "task",
        "variables",
        "directlingam s",
        "pred_ad_lasso s",
        "sink s",
        "x vs DL",
        "x vs PAL",
        "|dw| PAL",
        "|dw| DL",
        "|drow| PAL",
        "DL reward pos",
        "DL overhead",
        "sink overhead",
    ]
    table = [header]
    for row in rows:
        dl = row["directlingam"]
        mark = "" if dl["measured"] else "~"
        table.append(
            [
                row["task"],
                f"{row['raw_variables']}->{row['variables']}",
                f"{mark}{dl['seconds']:.3g}",
                f"{row['predict_adaptive_lasso_seconds']:.3f}",
                f"{row['sink_seconds']:.3f}",
                f"{mark}{row['speedup_vs_directlingam']:.0f}",
                f"{row['speedup_vs_predict_adaptive_lasso']:.1f}",
                f"{row['max_abs_weight_diff_vs_predict_adaptive_lasso']:.1e}",
                f"{dl['max_abs_weight_diff_sink']:.1e}" if dl["measured"] else "-",
                f"{row['max_abs_reward_row_diff_vs_predict_adaptive_lasso']:.1e}",
                f"{dl['reward_position']}/{row['variables']}" if dl["measured"] else "-",
                f"{mark}{100 * row['training_overhead_directlingam']:.2f}%",
                f"{100 * row['training_overhead_sink']:.3f}%",
            ]
        )
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    lines = ["  ".join(cell.rjust(width) for cell, width in zip(line, widths)) for line in table]
    lines.insert(1, "-" * len(lines[0]))
    lines.append(
        "variables: raw -> after cleaning (incl. reward). ~: DirectLiNGAM not run (estimate above the cap); its "
        "time is extrapolated from a timed 8-column fit. x: speedup of sink. |dw|: max |weight difference| of sink "
        "vs predict_adaptive_lasso (PAL) / DirectLiNGAM (DL); |drow|: max |coefficient difference| over the whole "
        "reward row (all states and actions). DL reward pos: the reward's place in DirectLiNGAM's causal order. "
        f"overhead: fit seconds per 10,000-step causal interval at {UPDATES_PER_SECOND:g} updates/s "
        f"({CAUSAL_INTERVAL / UPDATES_PER_SECOND:.0f} s)."
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", nargs="+", default=list(DEFAULT_TASKS))
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--directlingam-cap", type=float, default=180.0, help="seconds; longer runs are estimated")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs for the fast estimators")
    parser.add_argument("--output", type=Path, default=RESULTS / "causal_speed.json")
    args = parser.parse_args()

    load_before = os.getloadavg()
    rows = []
    from ace_rl.envs import EnvError, check_env_id

    for task in args.tasks:
        try:
            check_env_id(task)
        except EnvError as error:
            print(f"{task}: skipped ({error})", flush=True)
            continue
        row = bench_task(task, args.samples, args.seed, args.directlingam_cap, args.repeats)
        rows.append(row)
        print(f"{task}: done ({row['variables']} variables)", flush=True)
    print(_table(rows))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "samples": args.samples,
        "seed": args.seed,
        "directlingam_cap": args.directlingam_cap,
        "repeats": args.repeats,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        # the machine is shared: 1-minute load averages before and after the run
        "load_average_before": load_before[0],
        "load_average_after": os.getloadavg()[0],
    }
    args.output.write_text(json.dumps({"meta": meta, "results": rows}, indent=2))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
