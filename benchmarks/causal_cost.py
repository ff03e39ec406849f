"""What DirectLiNGAM's causal fits cost against training, per task size, at both presets (issue 30 item 2).

For each task (and Hopper-v5 with 3 distractor actions), on ``causal_samples`` transitions of uniformly random
actions (the small preset fits 5,000 every 5,000 steps, the paper preset 10,000 every 10,000):

- times a fit with ``--causal-method directlingam`` (``lingam.DirectLiNGAM`` on the columns ace-rl keeps, as in
  training) up to ``--measure-up-to`` variables; above that DirectLiNGAM runs for minutes to hours, and its time
  is the estimate ``ace_rl.causal.estimate_directlingam_seconds`` (marked ``~``);
- times a fit with ``--causal-method sink``;
- times ``--updates`` real ACE updates of each preset's networks and batch (3 x 256, batch 256; 3 x 1024,
  batch 512) on those transitions, with ``--threads`` PyTorch threads (default 1: on a 2-core machine shared
  with other work, 2 threads made the small preset's update 20 times slower, from spinning OpenMP threads);
- prints the measured share of training time of DirectLiNGAM's fits (fit seconds over the seconds of the
  updates between two fits), the share by the rule that ``--causal-method auto`` applies
  (``ace_rl.causal_cost``: machine-independent, from the update's operations and the rates measured by
  benchmarks/throughput.py), and what auto picks.

The measured share compares two timings on the same machine at the same time, so a shared machine's load
slows both sides; the rule's share does not depend on the machine. Writes
``benchmarks/results/causal_cost.json``. Takes about 5 minutes on 2 idle cores, 10 on 2 busy ones.

    python benchmarks/causal_cost.py [--measure-up-to 31] [--repeats 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from throughput import filled_replay  # benchmarks/ is on sys.path when this file is run as a script

from ace_rl.ace import ACE
from ace_rl.causal import causal_weights, estimate_directlingam_seconds, prepare_data
from ace_rl.causal_cost import DIRECTLINGAM_SHARE_LIMIT, choose_causal_method, directlingam_share
from ace_rl.config import preset_config
from ace_rl.replay import ReplayBuffer

RESULTS = Path(__file__).resolve().parent / "results"
# (task, distractor actions): InvertedPendulum 6 variables, Hopper 15, Hopper + 3 distractors 18, Walker2d and
# HalfCheetah 24, Pusher 31, Ant 114, Humanoid 366 (observation values + action dimensions + reward).
TASKS = (
    ("InvertedPendulum-v5", 0),
    ("Hopper-v5", 0),
    ("Hopper-v5", 3),  # named "Hopper-v5 + 3" in the table
    ("Walker2d-v5", 0),
    ("HalfCheetah-v5", 0),
    ("Pusher-v5", 0),
    ("Ant-v5", 0),
    ("Humanoid-v5", 0),
)
PRESETS = ("small", "paper")


def fit_seconds(replay: ReplayBuffer, samples: int, method: str, repeats: int) -> tuple[float, float]:
    """Median wall and CPU seconds of one causal fit on the latest ``samples`` transitions, as training runs it."""
    data = replay.latest(samples)
    wall, cpu = [], []
    for _ in range(repeats):
        started, started_cpu = time.perf_counter(), time.process_time()
        causal_weights(*data, method=method)
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    return statistics.median(wall), statistics.median(cpu)


def update_seconds(
    replay: ReplayBuffer,
    obs_dim: int,
    action_dim: int,
    low: np.ndarray,
    high: np.ndarray,
    preset: str,
    updates: int,
) -> tuple[float, float]:
    """Wall and CPU seconds per ACE update of the preset's networks and batch (after 2 untimed ones)."""
    config = preset_config(preset, reset="none")
    torch.manual_seed(0)
    agent = ACE(obs_dim, action_dim, low, high, config, torch.device("cpu"))
    batches = [replay.sample(config.batch_size) for _ in range(updates + 2)]
    for batch in batches[:2]:
        agent.update(batch)
    started, started_cpu = time.perf_counter(), time.process_time()
    for batch in batches[2:]:
        agent.update(batch)
    return (time.perf_counter() - started) / updates, (time.process_time() - started_cpu) / updates


def crossover(preset: str, action_dim: int) -> int:
    """The fewest variables (with ``action_dim`` actions) at which auto picks sink at ``preset``."""
    config = preset_config(preset)
    for variables in range(action_dim + 2, 1000):
        if choose_causal_method(config, variables - action_dim - 1, action_dim).method == "sink":
            return variables
    raise ValueError("no crossover below 1,000 variables")


def percent(share: float) -> str:
    return f"{100 * share:.2g} %" if share < 0.1 else f"{100 * share:,.0f} %"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--measure-up-to", type=int, default=31, help="time DirectLiNGAM up to this many variables")
    parser.add_argument("--repeats", type=int, default=2, help="timings of each fit (the median is kept)")
    parser.add_argument("--updates", type=int, nargs=2, default=(60, 8), metavar=("SMALL", "PAPER"))
    parser.add_argument("--threads", type=int, default=1, help="PyTorch threads of the timed updates")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warm_up = np.random.default_rng(0).laplace(size=(500, 4))  # lingam's and scikit-learn's first call is slower
    causal_weights(warm_up[:, :2], warm_up[:, 2:3], warm_up[:, 3], method="directlingam")
    updates = dict(zip(PRESETS, args.updates))
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    rows = []
    for task, distractors in TASKS:
        samples = max(preset_config(preset).causal_samples for preset in PRESETS)
        replay, obs_dim, action_dim, low, high = filled_replay(task, samples, distractors)
        variables = obs_dim + action_dim + 1
        kept = len(prepare_data(*replay.latest(samples)).columns)
        name = task + (f" + {distractors}" if distractors else "")
        row: dict = dict(task=name, obs_dim=obs_dim, action_dim=action_dim, variables=variables, kept=kept)
        row["measured"] = variables <= args.measure_up_to
        for preset in PRESETS:
            config = preset_config(preset)
            n = config.causal_samples
            estimate = estimate_directlingam_seconds(n, variables)
            timed = fit_seconds(replay, n, "directlingam", args.repeats) if row["measured"] else None
            directlingam, directlingam_cpu = timed if timed is not None else (None, None)
            update, update_cpu = update_seconds(replay, obs_dim, action_dim, low, high, preset, updates[preset])
            training = config.causal_interval * config.updates_per_step
            choice = choose_causal_method(config, obs_dim, action_dim)
            row[preset] = dict(
                causal_samples=n,
                causal_interval=config.causal_interval,
                directlingam_seconds=directlingam,
                directlingam_cpu_seconds=directlingam_cpu,
                directlingam_estimate_seconds=estimate,
                sink_seconds=fit_seconds(replay, n, "sink", args.repeats)[0],
                update_seconds=update,
                update_cpu_seconds=update_cpu,
                # Timed fits over timed updates; an untimed fit (~) enters with the rule's estimate.
                measured_share=(directlingam or estimate) / (training * update),
                measured_cpu_share=(directlingam_cpu or estimate) / (training * update_cpu),
                rule_share=directlingam_share(config, obs_dim, action_dim),
                auto=choice.method,
                reason=choice.reason,
            )
        rows.append(row)
        print(f"{name}: done ({time.perf_counter() - started:.0f} s)", flush=True)

    crossovers = {preset: {a: crossover(preset, a) for a in (1, 3, 6, 8, 17)} for preset in PRESETS}
    load_after = os.getloadavg()[0]
    print(
        f"\nDirectLiNGAM's causal fits against training, 2 CPU cores, {args.threads} PyTorch thread(s) (load average "
        f"{load_before:.1f} at the start, {load_after:.1f} at the end); ~ = the rule's estimate, not timed; cpu = "
        "process CPU seconds; share = DirectLiNGAM's fit over the updates between two fits"
    )
    header = (
        f"{'task':<22}{'vars':>5}{'kept':>5}  {'preset':<6}{'DL s/fit':>10}{'cpu s':>7}{'est. s':>9}{'sink s':>7}"
        f"{'update s':>9}{'cpu s':>7}{'share':>9}{'cpu':>9}{'rule':>9}  auto"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        for preset in PRESETS:
            cell = row[preset]
            timed = cell["directlingam_seconds"]
            shown = f"{timed:.3g}" if timed is not None else f"~{cell['directlingam_estimate_seconds']:.3g}"
            cpu = f"{cell['directlingam_cpu_seconds']:.3g}" if timed is not None else "-"
            print(
                f"{row['task'] if preset == 'small' else '':<22}{row['variables'] if preset == 'small' else '':>5}"
                f"{row['kept'] if preset == 'small' else '':>5}  {preset:<6}{shown:>10}{cpu:>7}"
                f"{cell['directlingam_estimate_seconds']:>9.3g}{cell['sink_seconds']:>7.3f}"
                f"{cell['update_seconds']:>9.4f}{cell['update_cpu_seconds']:>7.4f}{percent(cell['measured_share']):>9}"
                f"{percent(cell['measured_cpu_share']):>9}{percent(cell['rule_share']):>9}  {cell['auto']}"
            )
    limit = f"{100 * DIRECTLINGAM_SHARE_LIMIT:g} %"
    for preset in PRESETS:
        shown = ", ".join(f"{variables} ({a} actions)" for a, variables in crossovers[preset].items())
        print(f"{preset}: auto picks sink (DirectLiNGAM above {limit}) from this many variables on: {shown}")

    RESULTS.mkdir(parents=True, exist_ok=True)
    result = dict(
        tasks=rows,
        crossover_variables=crossovers,
        share_limit=DIRECTLINGAM_SHARE_LIMIT,
        repeats=args.repeats,
        threads=args.threads,
        updates=updates,
        measure_up_to=args.measure_up_to,
        seconds=time.perf_counter() - started,
        machine=dict(
            platform=platform.platform(),
            cpus=os.cpu_count(),
            torch_threads=torch.get_num_threads(),
            load_average=[load_before, load_after],
        ),
        torch=torch.__version__,
        numpy=np.__version__,
    )
    path = RESULTS / "causal_cost.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {path}")


if __name__ == "__main__":
    main()
