"""TD3 with and without updates during the random warm-up: evaluations and how often the actor sits at its bounds.

ace-rl's ACE and SAC update from the first full batch of the random start steps on, as the official ACE code;
the reference TD3 (Fujimoto et al. 2018) and Stable-Baselines3 make the first update with the policy's first
step. For each seed this trains ``ace-rl``'s TD3 both ways (``--warmup-updates`` / ``--no-warmup-updates``,
the small preset: 5,000 random steps, batch 256) through the Python API, evaluating every ``--eval-every``
steps (10 deterministic episodes), and then runs each final policy on the same 2,000 states of a uniformly
random walk in the task: the share of actions within 1 % of a bound (``|a| > 0.99`` x the half-range) per
action dimension. Prints a table and writes ``benchmarks/results/td3_warmup_STEPS.json``; finished runs are kept.

    python benchmarks/td3_warmup.py                               # Hopper-v5, seeds 0-2, 8,000 steps
    python benchmarks/td3_warmup.py --steps 5000 --seeds 0        # the actor at the end of the warm-up
"""

from __future__ import annotations

import argparse
import csv
import json
import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
WALK_STEPS = 2_000
WALK_SEED = 1
SATURATED = 0.99


def run_dir(out: Path, env: str, seed: int, warmup_updates: bool) -> Path:
    return out / f"{env}__td3__s{seed}__warmup-{'on' if warmup_updates else 'off'}"


def metrics(path: Path) -> list[dict[str, str]]:
    if not (path / "metrics.csv").is_file():
        return []
    with open(path / "metrics.csv", newline="") as file:
        return list(csv.DictReader(file))


def train(env: str, seed: int, warmup_updates: bool, steps: int, eval_every: int, out: Path) -> None:
    import shutil

    import torch

    import ace_rl

    torch.set_num_threads(1)
    directory = run_dir(out, env, seed, warmup_updates)
    rows = metrics(directory)
    if rows and int(rows[-1]["env_step"]) == steps:
        return
    shutil.rmtree(directory, ignore_errors=True)  # an unfinished run of an earlier invocation starts again
    ace_rl.train(
        env=env,
        algo="td3",
        preset="small",
        seed=seed,
        total_steps=steps,
        eval_every=eval_every,
        warmup_updates=warmup_updates,
        threads=1,
        device="cpu",
        progress=False,
        run_dir=directory,
    )


def saturation(env_id: str, directory: Path) -> list[float]:
    """Per action dimension: the share of the final policy's actions within 1 % of a bound on a random walk."""
    import gymnasium as gym
    import numpy as np

    import ace_rl
    from ace_rl.actions import action_box

    policy = ace_rl.load_policy(directory, checkpoint="final")
    env = gym.make(env_id)
    env.action_space.seed(WALK_SEED)
    obs, _ = env.reset(seed=WALK_SEED)
    states = []
    for _ in range(WALK_STEPS):
        states.append(obs)
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            obs, _ = env.reset()
    actions = policy.predict(np.array(states))
    box = action_box(env)
    low, high = box.low, box.high
    centred = (actions - (high + low) / 2) / ((high - low) / 2)
    return [round(float(share), 3) for share in (np.abs(centred) > SATURATED).mean(axis=0)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="Hopper-v5")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=8_000)
    parser.add_argument("--eval-every", type=int, default=1_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, help="run directories (default: benchmarks/results/td3_warmup_STEPS)")
    parser.add_argument("--json", type=Path, help="result (default: benchmarks/results/td3_warmup_STEPS.json)")
    args = parser.parse_args()
    args.out = args.out or RESULTS / f"td3_warmup_{args.steps}"
    args.json = args.json or RESULTS / f"td3_warmup_{args.steps}.json"

    jobs = [
        (args.env, seed, warm, args.steps, args.eval_every, args.out) for seed in args.seeds for warm in (True, False)
    ]
    with ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        for future in [pool.submit(train, *job) for job in jobs]:
            future.result()

    results: list[dict[str, Any]] = []
    for env, seed, warm, *_ in jobs:
        directory = run_dir(args.out, env, seed, warm)
        rows = metrics(directory)
        results.append(
            {
                "seed": seed,
                "warmup_updates": warm,
                "updates": int(rows[-1]["updates"]),
                "eval_steps": [int(row["env_step"]) for row in rows],
                "eval_returns": [round(float(row["eval_return_mean"]), 1) for row in rows],
                "saturated_share": saturation(env, directory),
            }
        )
    steps = results[0]["eval_steps"]
    print(f"{args.env}, TD3 (small preset), evaluation returns by env step; saturated: share of |a| > 0.99 per dim")
    print(
        f"{'seed':>4} {'warm-up updates':>15} {'updates':>7}  "
        + " ".join(f"{step:>6}" for step in steps)
        + "  saturated"
    )
    for result in results:
        returns = " ".join(f"{value:>6.0f}" for value in result["eval_returns"])
        print(
            f"{result['seed']:>4} {'on' if result['warmup_updates'] else 'off':>15} {result['updates']:>7}  {returns}  "
            f"{result['saturated_share']}"
        )
    args.json.write_text(
        json.dumps(
            {
                "date": datetime.now().isoformat(timespec="seconds"),
                "command": " ".join(["python", "benchmarks/td3_warmup.py", *sys.argv[1:]]),
                "env": args.env,
                "steps": args.steps,
                "walk": {"steps": WALK_STEPS, "seed": WALK_SEED, "saturated_above": SATURATED},
                "runs": results,
            },
            indent=1,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
