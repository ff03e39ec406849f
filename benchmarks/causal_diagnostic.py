"""What the causal weights come out as on real tasks, with distractor actions and rescaled rewards.

For every task, collects ``--samples`` transitions (default 10,000: the paper preset's ``--causal-samples``, and
with its ``--start-steps`` of 10,000 exactly the data of a paper-preset run's first fit) with uniformly random
actions from the environment's action space (seeded; reset at every episode end; cached as
``benchmarks/results/transitions_<task>_<samples>_<seed>.npz``, shared with ``causal_speed.py``). Then:

- appends ``--distractors`` action columns drawn uniformly in [-1, 1] that the environment never sees: a sound
  estimator gives them the coefficient 0 (and so the weight of an action with no effect);
- fits ``ace_rl.causal.causal_weights`` on (states, actions + distractors, rewards) with each of ``--methods``
  (``sink`` by default; ``directlingam`` is skipped with a note when ``estimate_directlingam_seconds`` says it
  would exceed ``--directlingam-time-limit``), on the rewards as they are and multiplied by each
  ``--reward-scale``: the coefficients ``b`` are in reward units, so ``w = |A| softmax(b)`` depends on them;
- a linear-versus-quadratic probe (ordinary least squares, no causal model): the R^2 of ``r`` on ``[1, s, a]``
  and on ``[1, s, a, a^2]``, and the coefficients of ``a^2``. A quadratic control cost ``-c sum a_i^2`` has,
  under symmetric random actions, no linear part, so only the second regression can see it (as ``-c``).

A synthetic check with known coefficients comes first: ``r = 3.0 a0 + 1.5 a1 + 0.3 a2 + 0.5 s0 + noise``, with
three more action dimensions that do not enter the reward, fitted at the same reward scales, next to the
weights the formula gives for the true coefficients.

Prints one table (one row per task, method and reward scale) and writes
``benchmarks/results/causal_diagnostic.json``.

Run:  python benchmarks/causal_diagnostic.py [--tasks Hopper-v5 Ant-v5] [--samples 10000] [--distractors 3]
          [--methods sink directlingam] [--reward-scale 0.1] [--directlingam-time-limit 120]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings
from pathlib import Path

import numpy as np
from causal_speed import collect_transitions  # benchmarks/ is on sys.path when this file is run as a script

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_TASKS = (
    "Hopper-v5",
    "Walker2d-v5",
    "HalfCheetah-v5",
    "Ant-v5",
    "dmc:cheetah-run",
    "metaworld:reach-v3",
)
# Seed offset of the distractor columns, so that they are independent of the environment's action draws.
DISTRACTOR_SEED_OFFSET = 1_000_003
SYNTHETIC_COEFFICIENTS = (3.0, 1.5, 0.3)
SYNTHETIC_NULL_ACTIONS = 3
SYNTHETIC_STATES = 4
SYNTHETIC_STATE_COEFFICIENT = 0.5  # r also depends on s0, as the reward of a real task depends on the state
SYNTHETIC_NOISE_SCALE = 0.5  # Laplace noise (non-Gaussian, as LiNGAM assumes)


def distractor_columns(samples: int, count: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed + DISTRACTOR_SEED_OFFSET).uniform(-1.0, 1.0, size=(samples, count))


def _r2(design: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """R^2 of the least-squares fit of ``y`` on ``[1, design]`` and its coefficients (intercept first)."""
    x = np.column_stack([np.ones(len(y)), design])
    coefficients, *_ = np.linalg.lstsq(x, y, rcond=None)
    residual = y - x @ coefficients
    total = y - y.mean()
    return 1.0 - float(residual @ residual) / float(total @ total), coefficients


def quadratic_probe(states: np.ndarray, actions: np.ndarray, rewards: np.ndarray) -> dict:
    """How much of the reward a linear function of (s, a) explains, and how much more squares of a add."""
    if np.ptp(rewards) == 0:
        return {"r2_linear": None, "r2_with_squares": None, "square_coefficients": None}
    r2_linear, _ = _r2(np.column_stack([states, actions]), rewards)
    r2_squares, coefficients = _r2(np.column_stack([states, actions, actions**2]), rewards)
    n_actions = actions.shape[1]
    return {
        "r2_linear": r2_linear,
        "r2_with_squares": r2_squares,
        "square_coefficients": coefficients[-n_actions:].tolist(),
    }


def fit_row(
    states: np.ndarray,
    actions: np.ndarray,
    rewards: np.ndarray,
    n_real: int,
    method: str,
    reward_scale: float,
    time_limit: float,
) -> dict:
    """One causal fit; the coefficients and weights split into the real and the distractor action dimensions."""
    from ace_rl.causal import CausalTimeLimitError, causal_weights, estimate_directlingam_seconds, prepare_data

    scaled = rewards * reward_scale
    row: dict = {"method": method, "reward_scale": reward_scale}
    if method == "directlingam":
        data = prepare_data(states, actions, scaled)
        row["variables"] = int(data.matrix.shape[1])
        row["estimated_directlingam_seconds"] = estimate_directlingam_seconds(*data.matrix.shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            fit = causal_weights(states, actions, scaled, method=method, time_limit=time_limit)
        except CausalTimeLimitError as error:
            # The refusal timed DirectLiNGAM on a few columns when the constant-based estimate was near the limit:
            # record that machine-calibrated estimate too (about a second to compute).
            n_samples, n_variables = data.matrix.shape
            calibrated = estimate_directlingam_seconds(n_samples, n_variables, calibrate_on=data.matrix)
            return {**row, "skipped": True, "calibrated_estimate_seconds": calibrated, "note": str(error)}
    return {
        **row,
        "skipped": False,
        "coefficients_real": fit.coefficients[:n_real].tolist(),
        "coefficients_distractors": fit.coefficients[n_real:].tolist(),
        "weights_real": fit.weights[:n_real].tolist(),
        "weights_distractors": fit.weights[n_real:].tolist(),
        "seconds": fit.seconds,
        "dropped_columns": len(fit.dropped),
        "note": fit.note,
    }


def _scale_check(fits: list[dict]) -> None:
    """For each scaled fit, the largest |b(scale) - scale * b(1)| against the same method's unscaled fit."""
    base = {f["method"]: f for f in fits if f["reward_scale"] == 1.0 and not f["skipped"]}
    for f in fits:
        reference = base.get(f["method"])
        if f["skipped"] or reference is None or f["reward_scale"] == 1.0:
            continue
        b = np.array(f["coefficients_real"] + f["coefficients_distractors"])
        b1 = np.array(reference["coefficients_real"] + reference["coefficients_distractors"])
        f["max_abs_diff_vs_scaled_unit_fit"] = float(np.abs(b - f["reward_scale"] * b1).max())


def run_task(task: str, args: argparse.Namespace) -> dict:
    start = time.perf_counter()
    data = collect_transitions(task, args.samples, args.seed)
    collect_seconds = time.perf_counter() - start
    s, a, r = data["states"], data["actions"], data["rewards"]
    n_real = a.shape[1]
    with_distractors = np.column_stack([a, distractor_columns(len(r), args.distractors, args.seed)])
    fits = [
        fit_row(s, with_distractors, r, n_real, method, scale, args.directlingam_time_limit)
        for method in args.methods
        for scale in [1.0, *args.reward_scale]
    ]
    _scale_check(fits)
    return {
        "task": task,
        "status": "ok",
        "samples": len(r),
        "observation_size": int(s.shape[1]),
        "action_size": n_real,
        "action_low": float(a.min()),
        "action_high": float(a.max()),
        "reward_mean": float(r.mean()),
        "reward_std": float(r.std()),
        "collect_seconds": collect_seconds,
        "quadratic_probe": quadratic_probe(s, a, r),
        "fits": fits,
    }


def synthetic(args: argparse.Namespace) -> dict:
    """Known coefficients: the fitted b and w at each reward scale next to the formula's w for the true b."""
    from ace_rl.causal import weights_from_coefficients

    rng = np.random.default_rng(args.seed)
    n = args.samples
    true_b = np.array([*SYNTHETIC_COEFFICIENTS, *[0.0] * SYNTHETIC_NULL_ACTIONS])
    actions = rng.uniform(-1.0, 1.0, size=(n, true_b.size))
    states = rng.normal(size=(n, SYNTHETIC_STATES))
    rewards = (
        actions @ true_b + SYNTHETIC_STATE_COEFFICIENT * states[:, 0] + rng.laplace(scale=SYNTHETIC_NOISE_SCALE, size=n)
    )
    n_real = len(SYNTHETIC_COEFFICIENTS)
    fits = [
        fit_row(states, actions, rewards, n_real, method, scale, args.directlingam_time_limit)
        for method in args.methods
        for scale in [1.0, *args.reward_scale]
    ]
    _scale_check(fits)
    for f in fits:
        f["true_weights"] = weights_from_coefficients(f["reward_scale"] * true_b).tolist()
    return {
        "task": "synthetic",
        "status": "ok",
        "formula": (
            f"r = {' + '.join(f'{c:g} a{i}' for i, c in enumerate(SYNTHETIC_COEFFICIENTS))} + "
            f"{SYNTHETIC_STATE_COEFFICIENT:g} s0 + Laplace(0, {SYNTHETIC_NOISE_SCALE:g}); "
            f"a ~ U[-1, 1]^{true_b.size} (a{n_real}..a{true_b.size - 1} do not enter r), s ~ N(0, I_{SYNTHETIC_STATES})"
        ),
        "true_coefficients": true_b.tolist(),
        "samples": n,
        "action_size": n_real,
        "fits": fits,
    }


def _numbers(values: list[float], digits: int = 2) -> str:
    return " ".join(f"{v:+.{digits}f}" for v in values)


def _table(rows: list[dict]) -> str:
    header = ["task", "method", "scale", "b real", "b distr", "w real min-max", "w distr", "|A|", "fit s"]
    table = [header]
    notes = []
    for row in rows:
        if row["status"] != "ok":
            table.append([row["task"], "-", "-", f"FAILED: {row['error'][:60]}", "", "", "", "", ""])
            continue
        for f in row["fits"]:
            cells = [row["task"], f["method"], f"{f['reward_scale']:g}"]
            if f["skipped"]:
                estimate = f.get("calibrated_estimate_seconds", f["estimated_directlingam_seconds"])
                cells += ["skipped (time limit)", "", "", "", "", f"~{estimate:.0f}"]
                notes.append(f"{row['task']} {f['method']} x{f['reward_scale']:g}: {f['note']}")
            else:
                w = f["weights_real"]
                cells += [
                    _numbers(f["coefficients_real"], 3),
                    _numbers(f["coefficients_distractors"], 3),
                    f"{min(w):.3f}-{max(w):.3f}",
                    " ".join(f"{v:.3f}" for v in f["weights_distractors"]),
                    str(len(w) + len(f["weights_distractors"])),
                    f"{f['seconds']:.3f}",
                ]
                if f["note"]:
                    notes.append(f"{row['task']} {f['method']} x{f['reward_scale']:g}: {f['note']}")
            table.append(cells)
            if row["task"] == "synthetic":
                w_true = f["true_weights"]
                n_real = row["action_size"]
                table.append(
                    [
                        "",
                        "formula, true b",
                        f"{f['reward_scale']:g}",
                        _numbers([f["reward_scale"] * b for b in row["true_coefficients"][:n_real]], 3),
                        _numbers([0.0] * (len(w_true) - n_real), 3),
                        f"{min(w_true[:n_real]):.3f}-{max(w_true[:n_real]):.3f}",
                        " ".join(f"{v:.3f}" for v in w_true[n_real:]),
                        str(len(w_true)),
                        "",
                    ]
                )
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in table]
    lines.insert(1, "-" * max(len(line) for line in lines))
    lines.append(
        "b: coefficient of each action dimension on the reward (reward units per action unit); distr: the appended "
        "distractor dimensions (uniform in [-1, 1], never sent to the environment); w = |A| softmax(b) over all "
        "|A| columns (real + distractors), 1 = the SAC weight. skipped: DirectLiNGAM's estimated time (~ seconds, "
        "calibrated on this machine) exceeds --directlingam-time-limit."
    )
    lines.extend(notes)
    return "\n".join(lines)


def _probe_table(rows: list[dict]) -> str:
    header = ["task", "obs", "act", "reward mean", "reward std", "R^2 [s,a]", "R^2 [s,a,a^2]", "coef of a^2"]
    table = [header]
    for row in rows:
        if row["status"] != "ok" or row["task"] == "synthetic":
            continue
        probe = row["quadratic_probe"]
        if probe["r2_linear"] is None:
            r2, r2q, sq = "-", "-", "constant reward"
        else:
            r2, r2q, sq = (
                f"{probe['r2_linear']:.3f}",
                f"{probe['r2_with_squares']:.3f}",
                _numbers(probe["square_coefficients"], 3),
            )
        table.append(
            [
                row["task"],
                str(row["observation_size"]),
                str(row["action_size"]),
                f"{row['reward_mean']:.3f}",
                f"{row['reward_std']:.3f}",
                r2,
                r2q,
                sq,
            ]
        )
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in table]
    lines.insert(1, "-" * max(len(line) for line in lines))
    lines.append(
        "ordinary least squares of r on [1, s, a] and on [1, s, a, a^2] (real actions only); coef of a^2: the "
        "second fit's coefficient of each squared action, where a quadratic control cost -c sum a_i^2 shows as -c."
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", nargs="+", default=list(DEFAULT_TASKS))
    parser.add_argument("--samples", type=int, default=10_000, help="transitions per task (ACE's --causal-samples)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--distractors", type=int, default=3, help="appended action dimensions with no effect")
    parser.add_argument("--methods", nargs="+", default=["sink"], choices=["sink", "directlingam"])
    parser.add_argument(
        "--reward-scale",
        type=float,
        nargs="+",
        default=[0.1],
        help="also fit on the rewards multiplied by each of these (the fit at scale 1 always runs)",
    )
    parser.add_argument(
        "--directlingam-time-limit",
        type=float,
        default=120.0,
        help="seconds; a DirectLiNGAM fit estimated to take longer is skipped with a note",
    )
    parser.add_argument("--no-synthetic", action="store_true", help="leave out the synthetic check")
    parser.add_argument("--output", type=Path, default=RESULTS / "causal_diagnostic.json")
    args = parser.parse_args()
    args.reward_scale = [s for s in args.reward_scale if s != 1.0]

    from ace_rl.envs import EnvError, check_env_id

    load_before = os.getloadavg()
    started = time.perf_counter()
    rows = []
    if not args.no_synthetic:
        rows.append(synthetic(args))
        print("synthetic: done", flush=True)
    for task in args.tasks:
        try:
            check_env_id(task)
            row = run_task(task, args)
        except (EnvError, Exception) as error:  # noqa: BLE001 - a task that fails to build is recorded, not fatal
            cause = (str(error).splitlines() or [""])[0]
            row = {"task": task, "status": "failed", "error": f"{type(error).__name__}: {cause}"}
            print(f"{task}: failed ({row['error']})", flush=True)
        else:
            print(f"{task}: done (collected in {row['collect_seconds']:.1f} s)", flush=True)
        rows.append(row)
    print()
    print(_table(rows))
    print()
    print(_probe_table(rows))
    meta = {
        "command": "python benchmarks/causal_diagnostic.py "
        + " ".join(
            [
                f"--tasks {' '.join(args.tasks)}",
                f"--samples {args.samples}",
                f"--seed {args.seed}",
                f"--distractors {args.distractors}",
                f"--methods {' '.join(args.methods)}",
                f"--reward-scale {' '.join(f'{s:g}' for s in args.reward_scale)}",
                f"--directlingam-time-limit {args.directlingam_time_limit:g}",
            ]
            + (["--no-synthetic"] if args.no_synthetic else [])
        ),
        "samples": args.samples,
        "seed": args.seed,
        "distractors": args.distractors,
        "methods": args.methods,
        "reward_scales": [1.0, *args.reward_scale],
        "directlingam_time_limit": args.directlingam_time_limit,
        "total_seconds": time.perf_counter() - started,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        # the machine is shared: 1-minute load averages before and after the run
        "load_average_before": load_before[0],
        "load_average_after": os.getloadavg()[0],
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.output.with_suffix(".tmp")
    tmp.write_text(json.dumps({"meta": meta, "results": rows}, indent=2))
    tmp.replace(args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
