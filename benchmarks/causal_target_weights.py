"""The causal weights of the causal-target study's runs (benchmarks/causal_target_study.sh), per arm: what the
weights looked like in training, fit by fit, as the ground truth (benchmarks/causal_target.py) measures them on
random-action data.

An arm is a sweep directory of the study (``hopper_official``, ``hopper_interaction``, ...); a run's fits are the
rows of its ``causal_weights.csv`` and its action names those of its ``actions.json`` (``distractorK`` for an
action dimension the environment never sees). Per arm the table gives the runs and fits read, and:

- on a task with distractors, the fits that pass (every distractor's weight strictly below every real
  dimension's), the median margin (lowest real weight minus highest distractor weight) and the median of the mean
  real and mean distractor weight;
- on a task with distractors, per real action dimension, the fits in which its weight is above every
  distractor's (which dimension fails when a fit does not pass);
- on every task, the fits in which each action dimension has the highest weight (the first of equals);
- on every task, the median spread of a fit's weights (highest minus lowest; 0: uniform), the share of fits
  whose weights are all exactly 1 (the fit kept no action, or no fit), and the lowest and highest weight.

A second table follows the weights through training: per arm and fit step (the env step of the fit, the same in
every run), the fits passing and the median spread over the runs; the JSON adds each action dimension's mean
weight at that step.

Unfinished runs count with the fits they have. Prints both tables and writes ``OUT/causal_weights_summary.json``
(the first table's rows under their arm, the second's under ``by_step``).

Run:  python benchmarks/causal_target_weights.py [benchmarks/results/causal_target_study]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

STUDY = Path(__file__).parent / "results" / "causal_target_study"


def fit_rows(weights: np.ndarray, distractor: np.ndarray) -> pd.DataFrame:
    """One row per fit (a row of ``weights``) with its measures; ``distractor`` marks the distractor columns."""
    real, fake = weights[:, ~distractor], weights[:, distractor]
    rows = {
        "spread": weights.max(axis=1) - weights.min(axis=1),
        "uniform": np.all(weights == 1.0, axis=1),
        "real_mean": real.mean(axis=1),
    }
    if distractor.any():
        rows["margin"] = real.min(axis=1) - fake.max(axis=1)
        rows["passes"] = rows["margin"] > 0
        rows["distractor_mean"] = fake.mean(axis=1)
    return pd.DataFrame(rows)


def arm_fits(arm: Path) -> tuple[pd.DataFrame, int]:
    """Every fit of every run of ``arm`` (one row each), and the number of runs read."""
    frames, runs = [], 0
    for table in sorted(arm.glob("*/causal_weights.csv")):
        names = json.loads((table.parent / "actions.json").read_text())["names"]
        frame = pd.read_csv(table)
        if frame.empty:
            continue
        weights = frame[[f"w{index}" for index in range(len(names))]].to_numpy(dtype=float)
        distractor = np.array([name.startswith("distractor") for name in names])
        fits = fit_rows(weights, distractor)
        for index, name in enumerate(names):
            fits[f"w:{name}"] = weights[:, index]
        fits.insert(0, "run", table.parent.name)
        fits.insert(1, "env_step", frame["env_step"].to_numpy())
        frames.append(fits)
        runs += 1
    return (pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()), runs


def named_weights(fits: pd.DataFrame) -> pd.DataFrame:
    """The fits' weights, one column per action dimension named by its action (``w:thigh_joint`` -> ``thigh_joint``)."""
    columns = [column for column in fits if column.startswith("w:")]
    return fits[columns].rename(columns=lambda column: column[2:])


def summarise(fits: pd.DataFrame, runs: int) -> dict[str, float | int | dict[str, int] | None]:
    with_distractors = "passes" in fits
    weights = named_weights(fits)
    distractors = [name for name in weights if name.startswith("distractor")]
    top_distractor = weights[distractors].max(axis=1)
    return {
        "runs": runs,
        "fits": len(fits),
        "fits_passing": int(fits["passes"].sum()) if with_distractors else None,
        "median_margin": float(fits["margin"].median()) if with_distractors else None,
        "median_real_mean": float(fits["real_mean"].median()),
        "median_distractor_mean": float(fits["distractor_mean"].median()) if with_distractors else None,
        "median_spread": float(fits["spread"].median()),
        "share_uniform": float(fits["uniform"].mean()),
        "lowest_weight": float(weights.to_numpy().min()),
        "highest_weight": float(weights.to_numpy().max()),
        "fits_above_distractors": {
            name: int((weights[name] > top_distractor).sum()) for name in weights if name not in distractors
        }
        if distractors
        else None,
        # idxmax takes the first of equal weights
        "fits_highest": {str(name): int(count) for name, count in weights.idxmax(axis=1).value_counts().items()},
    }


def by_step(fits: pd.DataFrame) -> dict[int, dict[str, object]]:
    """Per fit step: the runs' fits at that step, how many pass (None without distractors), their median spread
    and each action dimension's mean weight."""
    found: dict[int, dict[str, object]] = {}
    for step, at_step in fits.groupby("env_step"):
        found[int(step)] = {
            "fits": len(at_step),
            "fits_passing": int(at_step["passes"].sum()) if "passes" in at_step else None,
            "median_spread": float(at_step["spread"].median()),
            "mean_weights": {name: float(mean) for name, mean in named_weights(at_step).mean().items()},
        }
    return found


def step_table(steps: dict[str, dict[int, dict[str, object]]]) -> pd.DataFrame:
    """Arms as rows, fit steps as columns; a cell is `passing/fits spread` (or the spread alone)."""
    cells = {
        arm: {
            f"{step // 1000}k": (f"{row['fits_passing']}/{row['fits']} " if row["fits_passing"] is not None else "")
            + f"{row['median_spread']:.2f}"
            for step, row in rows.items()
        }
        for arm, rows in steps.items()
    }
    return pd.DataFrame.from_dict(cells, orient="index")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("study", nargs="?", type=Path, default=STUDY)
    options = parser.parse_args()
    summary: dict[str, object] = {}
    steps: dict[str, dict[int, dict[str, object]]] = {}
    for arm in sorted(path for path in options.study.iterdir() if path.is_dir()):
        fits, runs = arm_fits(arm)
        if runs:
            summary[arm.name] = summarise(fits, runs)
            steps[arm.name] = by_step(fits)
    table = pd.DataFrame.from_dict(summary, orient="index")
    above = table.pop("fits_above_distractors").dropna()
    highest = table.pop("fits_highest")
    with pd.option_context("display.width", 160, "display.float_format", "{:.3f}".format):
        print(table.to_string())
        print("\nfits in which a real dimension's weight is above every distractor's")
        print(pd.DataFrame(above.to_dict()).T.to_string())
        print("\nfits in which an action dimension has the highest weight")
        print(pd.DataFrame(highest.to_dict()).T.fillna(0).astype(int).to_string())
        print("\nby fit step: fits passing/fits (with distractors) and the median spread")
        print(step_table(steps).to_string())
    summary["by_step"] = steps
    out = options.study / "causal_weights_summary.json"
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
