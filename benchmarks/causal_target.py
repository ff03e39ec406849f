"""Ground truth of the causal targets (--causal-target): do the distractor action dimensions get less weight than
every real one, and what does a fit cost?

For every task and data seed, collects ``--samples`` random-action transitions of the task built with
``--distractors`` action dimensions the environment never sees (``make_env(..., distractor_actions=K)``, reset at
every episode end), and fits on the latest ``n`` of them for each ``n`` in ``--fit-samples`` (5,000: the small
preset's --causal-samples; 10,000: the paper preset's):

- the official target ``reward`` with the ``sink`` and ``directlingam`` estimators (DirectLiNGAM only where
  ``--directlingam`` is given: it costs seconds per fit);
- the variant ``reward-interaction``.

A fit passes when every distractor's weight is below every real dimension's weight (strictly). The table gives,
per task, target and sample count, the seeds that pass, the smallest margin (lowest real weight minus highest
distractor weight; negative: a distractor above a real dimension), the mean weight of the real and distractor
dimensions, and the median seconds per fit. A sparse task (``--sparse-tasks``, reward = success flag) shows what
each target does when random actions rarely succeed. Writes ``benchmarks/results/causal_target.json``.

Run:  python benchmarks/causal_target.py [--tasks Hopper-v5 ...] [--seeds 0 1 2 3 4] [--fit-samples 5000 10000]
          [--directlingam] [--sparse-tasks PandaReachJoints-v3] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import time
import warnings
from pathlib import Path

import numpy as np
from causal_target_weights import fit_rows  # benchmarks/ is on sys.path when this script runs

from ace_rl.causal import causal_weights
from ace_rl.envs import make_env, random_transitions

RESULTS = Path(__file__).parent / "results" / "causal_target.json"


def collect(env_id: str, seed: int, count: int, distractors: int, reward: str) -> tuple[np.ndarray, ...]:
    return random_transitions(make_env(env_id, reward=reward, distractor_actions=distractors), count, seed)


def arms(directlingam: bool) -> list[tuple[str, str, str]]:
    """(label, target, method) of every fit."""
    found = [("reward/sink", "reward", "sink")]
    if directlingam:
        found.append(("reward/directlingam", "reward", "directlingam"))
    return [*found, ("reward-interaction", "reward-interaction", "sink")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=["Hopper-v5", "Walker2d-v5", "HalfCheetah-v5", "Swimmer-v5"])
    parser.add_argument("--sparse-tasks", nargs="*", default=["PandaReachJoints-v3"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--fit-samples", nargs="+", type=int, default=[5000, 10000])
    parser.add_argument("--distractors", type=int, default=3)
    parser.add_argument("--directlingam", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS)
    options = parser.parse_args()
    collected = max(options.fit_samples)
    rows = []
    header = f"{'task':<26} {'target':<20} {'n':>6} {'pass':>5} {'margin':>8} {'w real':>7} {'w dist':>7} {'s/fit':>7}"
    print(header)
    print("-" * len(header))
    tasks = [(task, "dense") for task in options.tasks] + [(task, "sparse") for task in options.sparse_tasks]
    for task, reward in tasks:
        data = {seed: collect(task, seed, collected, options.distractors, reward) for seed in options.seeds}
        for n in options.fit_samples:
            for label, target, method in arms(options.directlingam):
                weights, seconds, notes = [], [], set()
                for seed in options.seeds:
                    states, actions, rewards = (column[-n:] for column in data[seed])
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        fit = causal_weights(states, actions, rewards, method=method, target=target)
                    weights.append(fit.weights)
                    seconds.append(fit.seconds)
                    if "constant" in fit.note:
                        notes.add("reward constant: uniform weights")
                    if reward == "sparse":
                        notes.add(f"{int(np.count_nonzero(rewards))} successes in {n} steps (seed {seed})")
                distractor = np.arange(len(weights[0])) >= len(weights[0]) - options.distractors
                fits = fit_rows(np.array(weights), distractor)
                passed = int(fits["passes"].sum())
                row = {
                    "task": task,
                    "reward": reward,
                    "target": label,
                    "samples": n,
                    "seeds": len(options.seeds),
                    "passed": passed,
                    "min_margin": float(fits["margin"].min()),
                    "real_weight_mean": float(fits["real_mean"].mean()),
                    "distractor_weight_mean": float(fits["distractor_mean"].mean()),
                    "median_seconds_per_fit": float(np.median(seconds)),
                    "notes": sorted(notes),
                }
                rows.append(row)
                name = task + (" (sparse)" if reward == "sparse" else "")
                print(
                    f"{name:<26} {label:<20} {n:>6} {passed:>3}/{len(options.seeds)} {row['min_margin']:>8.3f} "
                    f"{row['real_weight_mean']:>7.3f} {row['distractor_weight_mean']:>7.3f} "
                    f"{row['median_seconds_per_fit']:>7.3f}",
                    flush=True,
                )
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    options.out.write_text(
        json.dumps(
            {
                "command": "python benchmarks/causal_target.py "
                + " ".join(f"{k}={v}" for k, v in vars(options).items() if k != "out"),
                "commit": commit,
                "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, shared 2-core machine",
                "distractors": options.distractors,
                "rows": rows,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {options.out}")


if __name__ == "__main__":
    time_started = time.time()
    main()
    print(f"{time.time() - time_started:.0f} s")
