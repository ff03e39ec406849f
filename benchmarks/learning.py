"""Learning curves of ACE and of the SAC ablation (`--algo sac`) on the same tasks and seeds.

Each (task, algorithm, seed) run is the real `ace_rl.train.train` in a worker process; runs go in parallel
on ``--workers`` processes with one PyTorch thread each. Prints a table, writes
``benchmarks/results/NAME.json`` and a plot of the evaluation curves (``NAME.png``).

    python benchmarks/learning.py                        # InvertedPendulum-v5 and Hopper-v5, small preset
    python benchmarks/learning.py --tasks Hopper-v5:100000 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_TASKS = ["InvertedPendulum-v5:15000", "Hopper-v5:40000"]


def run_one(env: str, algo: str, seed: int, total_steps: int, eval_every: int, run_root: Path) -> dict:
    import torch

    from ace_rl.config import preset_config
    from ace_rl.train import train

    torch.set_num_threads(1)
    run_dir = run_root / f"{env}__{algo}__s{seed}"
    config = preset_config(
        "small", algo, env=env, seed=seed, total_steps=total_steps, eval_every=eval_every,
        run_dir=run_dir, progress=False,
    )
    started = time.perf_counter()
    train(config)
    seconds = time.perf_counter() - started
    with open(run_dir / "metrics.csv") as file:
        rows = list(csv.DictReader(file))
    steps = [int(row["env_step"]) for row in rows]
    returns = [float(row["eval_return_mean"]) for row in rows]
    with open(run_dir / "resets.csv") as file:
        resets = len(list(csv.DictReader(file)))
    with open(run_dir / "causal_weights.csv") as file:
        causal_fits = len(list(csv.DictReader(file)))
    return dict(
        env=env, algo=algo, seed=seed, total_steps=total_steps, steps=steps, returns=returns,
        final_return=returns[-1], best_return=max(returns), seconds=seconds,
        steps_per_second=total_steps / seconds, resets=resets, causal_fits=causal_fits,
    )


def parse_task(text: str) -> tuple[str, int]:
    env, _, steps = text.partition(":")
    return env, int(steps) if steps else 50_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=DEFAULT_TASKS, help="ENV[:STEPS] items")
    parser.add_argument("--algos", nargs="+", default=["ace", "sac"], choices=["ace", "sac"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--eval-every", type=int, default=2500)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--run-root", type=Path, default=Path("runs/benchmark-learning"))
    parser.add_argument("--name", default="learning", help="result files: benchmarks/results/NAME.json and NAME.png")
    args = parser.parse_args()

    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_root = args.run_root / stamp
    jobs = [
        (env, algo, seed, steps, args.eval_every, run_root)
        for env, steps in map(parse_task, args.tasks)
        for seed in args.seeds
        for algo in args.algos
    ]
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        results = list(pool.map(run_one, *zip(*jobs)))
    wall = time.perf_counter() - started

    header = f"{'task':<22}{'algo':<6}{'seed':>5}{'steps':>8}{'final':>10}{'best':>10}{'steps/s':>9}{'fits':>6}{'resets':>7}"
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r['env']:<22}{r['algo']:<6}{r['seed']:>5}{r['total_steps']:>8}{r['final_return']:>10.1f}"
            f"{r['best_return']:>10.1f}{r['steps_per_second']:>9.1f}{r['causal_fits']:>6}{r['resets']:>7}"
        )
    print(f"\n{len(results)} runs in {wall / 60:.1f} min on {args.workers} workers")

    RESULTS.mkdir(parents=True, exist_ok=True)
    summary = dict(
        command="python benchmarks/learning.py " + " ".join(
            [f"--tasks {' '.join(args.tasks)}", f"--algos {' '.join(args.algos)}",
             f"--seeds {' '.join(map(str, args.seeds))}", f"--eval-every {args.eval_every}",
             f"--workers {args.workers}", f"--name {args.name}"]
        ),
        machine=dict(platform=platform.platform(), processor=platform.processor(), cpus=__import__("os").cpu_count()),
        preset="small", wall_seconds=wall, runs=results,
    )
    (RESULTS / f"{args.name}.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot(results, RESULTS / f"{args.name}.png")
    print(f"wrote {RESULTS / (args.name + '.json')} and {RESULTS / (args.name + '.png')}")


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted({r["env"] for r in results})
    figure, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 3.5), squeeze=False)
    for axis, task in zip(axes[0], tasks):
        for algo, color in (("ace", "tab:red"), ("sac", "tab:blue")):
            runs = [r for r in results if r["env"] == task and r["algo"] == algo]
            if not runs:
                continue
            steps = runs[0]["steps"]
            curves = np.array([r["returns"] for r in runs])
            axis.plot(steps, curves.mean(axis=0), color=color, label=f"{algo} ({len(runs)} seeds)")
            if len(runs) > 1:
                axis.fill_between(steps, curves.min(axis=0), curves.max(axis=0), color=color, alpha=0.2)
        axis.set_title(task)
        axis.set_xlabel("environment steps")
        axis.set_ylabel("evaluation return")
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
