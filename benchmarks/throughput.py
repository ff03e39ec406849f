"""Training throughput on this machine: ace-rl ACE, ace-rl SAC and Stable-Baselines3 SAC, and the bare update.

1. Env steps per second of the whole training loop on one task with the same network (3 x ``--hidden``)
   and batch, one update per env step, evaluation off, over the env steps ``--warmup`` to
   ``--warmup + --measured`` of a run:
   - ace-rl ACE with a causal fit every 2,500 env steps and a soft reset every 2,000 updates, so that the
     measured window holds one of each (the presets refit every 5,000 / 10,000 steps and reset every
     20,000 / 100,000 updates: this is the conservative case for ACE);
   - ace-rl ``--algo sac``: the same code without causal fits and resets, updating its actor, temperature and
     target network on every step, as SAC does (ACE, following the official code, on every second step);
   - Stable-Baselines3 SAC (``pip install stable-baselines3``), on SAC's schedule too: the like-for-like
     comparison is ace-rl SAC against it.
   The three are run ``--repeats`` times in rotating order, so that a slow spell of this shared machine
   hits all of them alike; the table gives medians.
2. Updates per second of the bare ACE update at the small preset (3 x 256, batch 256) and the paper preset
   (3 x 1024, batch 512), for the plain path (PyTorch's default Adam, eager), the default path (fused Adam)
   and ``--compile`` (fused Adam and compiled losses), in interleaved timing windows with a float32
   matrix-multiply window between each, so that the fraction of peak compares like with like.

Prints two tables and writes ``benchmarks/results/throughput.json``.

    python benchmarks/throughput.py [--env HalfCheetah-v5] [--repeats 3] [--warmup 1000] [--measured 2000]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ace_rl.ace import ACE
from ace_rl.actions import action_box
from ace_rl.causal import causal_weights
from ace_rl.config import preset_config
from ace_rl.envs import make_env, observation_size, seed_env
from ace_rl.networks import update_flops
from ace_rl.replay import ReplayBuffer
from ace_rl.trainer import run_training

RESULTS = Path(__file__).resolve().parent / "results"
PEAK_SIZE = 2048


def ace_rl_run(algo: str, env: str, hidden: int, batch: int, warmup: int, measured: int) -> dict:
    """Env steps per second between the episode ends at ``warmup`` and ``warmup + measured`` env steps.

    For ACE also the seconds its causal fits took inside that window.
    """
    with tempfile.TemporaryDirectory() as folder:
        config = preset_config(
            "small",
            algo,
            env=env,
            hidden_size=hidden,
            batch_size=batch,
            start_steps=warmup,
            # One step past the window, so that the final evaluation and checkpoint fall outside it.
            total_steps=warmup + measured + 1,
            eval_every=10**9,
            eval_episodes=1,
            # One causal fit and one soft reset inside the window.
            causal_interval=warmup + measured // 2,
            causal_samples=warmup,
            reset_interval=warmup + measured // 2,
            reset_start=0,
            checkpoint_every=10**9,
            progress=False,
            run_dir=Path(folder) / "run",
        )
        run_dir = run_training(config)
        with open(run_dir / "episodes.csv") as file:
            wall = {int(row["env_step"]): float(row["wall_time"]) for row in csv.DictReader(file)}
        if warmup not in wall or warmup + measured not in wall:
            raise SystemExit(f"{env}: --warmup and --measured must be multiples of its episode length (1000 steps)")
        seconds = wall[warmup + measured] - wall[warmup]
        result = {"steps_per_second": measured / seconds, "window_seconds": seconds}
        if algo == "ace":

            def in_window(step: int) -> bool:
                return warmup < step <= warmup + measured

            with open(run_dir / "causal_weights.csv") as file:
                fits = [(int(row["env_step"]), float(row["seconds"])) for row in csv.DictReader(file)]
            with open(run_dir / "resets.csv") as file:
                resets = [int(row["env_step"]) for row in csv.DictReader(file)]
            if not any(in_window(step) for step, _ in fits) or not any(in_window(step) for step in resets):
                raise SystemExit(f"the measured window held no causal fit or no reset (fits {fits}, resets {resets})")
            result["fit_seconds"] = sum(fit_seconds for step, fit_seconds in fits if in_window(step))
    return result


def ace_extra_seconds(env_id: str, preset: str, repeats: int = 5) -> dict:
    """Median seconds of one causal fit and of one soft reset at a preset's sizes: ACE's work beyond SAC's."""
    config = preset_config(preset)
    replay, obs_dim, action_dim, low, high = filled_replay(env_id, max(config.causal_samples, 2000))
    fits = []
    for _ in range(repeats):
        started = time.perf_counter()
        causal_weights(*replay.latest(config.causal_samples))
        fits.append(time.perf_counter() - started)
    agent = ACE(obs_dim, action_dim, low, high, config, torch.device("cpu"))
    resets = []
    for _ in range(repeats):
        agent.update(replay.sample(config.batch_size))
        agent.update(replay.sample(config.batch_size))  # an actor update: dormancy needs its gradients
        started = time.perf_counter()
        agent.soft_reset()
        resets.append(time.perf_counter() - started)
    return dict(
        fit_seconds=statistics.median(fits),
        reset_seconds=statistics.median(resets),
        causal_interval=config.causal_interval,
        causal_samples=config.causal_samples,
        reset_interval=config.reset_interval,
    )


def sb3_steps_per_second(env: str, hidden: int, batch: int, warmup: int, measured: int) -> float:
    from stable_baselines3 import SAC

    model = SAC(
        "MlpPolicy",
        make_env(env),
        policy_kwargs=dict(net_arch=[hidden] * 3),
        batch_size=batch,
        learning_starts=batch,
        seed=0,
        device="cpu",
    )
    model.learn(warmup)
    started = time.perf_counter()
    model.learn(measured, reset_num_timesteps=False)
    return measured / (time.perf_counter() - started)


def matmul_gflops(seconds: float = 1.0) -> float:
    """float32 matrix-multiply rate of this machine over one window of about ``seconds``."""
    a, b = torch.randn(PEAK_SIZE, PEAK_SIZE), torch.randn(PEAK_SIZE, PEAK_SIZE)
    a @ b
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        a @ b
        count += 1
    return 2 * PEAK_SIZE**3 * count / (time.perf_counter() - started) / 1e9


def filled_replay(
    env_id: str, steps: int, distractor_actions: int = 0
) -> tuple[ReplayBuffer, int, int, np.ndarray, np.ndarray]:
    """A replay of ``steps`` transitions of ``env_id`` under uniformly random actions (seed 0), its observation and
    action sizes and the action bounds."""
    env = make_env(env_id, distractor_actions=distractor_actions)
    action_space = action_box(env)
    obs_dim, action_dim = observation_size(env), int(action_space.shape[0])
    replay = ReplayBuffer(steps, obs_dim, action_dim, seed=0)
    obs = seed_env(env, 0)
    for _ in range(steps):
        action = action_space.sample()
        next_obs, reward, terminated, truncated, _ = env.step(action)
        replay.add(obs, action, float(reward), next_obs, terminated, truncated)
        obs = env.reset()[0] if terminated or truncated else next_obs
    return replay, obs_dim, action_dim, action_space.low, action_space.high


UPDATE_PATHS: dict[str, dict[str, bool]] = {
    "plain (default Adam, eager)": dict(fused_adam=False, compile_losses=False),
    "default (fused Adam)": dict(fused_adam=True, compile_losses=False),
    "--compile (fused Adam, compiled losses)": dict(fused_adam=True, compile_losses=True),
}


def bare_update_rates(env_id: str, preset: str, window: int, repeats: int) -> dict:
    """Updates per second of each path and matmul GFLOP/s, in interleaved windows of ``window`` updates."""
    replay, obs_dim, action_dim, low, high = filled_replay(env_id, 5000)
    config = preset_config(preset, reset="none")
    hidden, batch = config.hidden_size, config.batch_size
    agents: dict[str, ACE] = {}
    compile_seconds = 0.0
    for name, options in UPDATE_PATHS.items():
        torch.manual_seed(0)
        agents[name] = ACE(obs_dim, action_dim, low, high, config, torch.device("cpu"), **options)
        started = time.perf_counter()
        for _ in range(4):  # the compiled path compiles here (actor and critic steps)
            agents[name].update(replay.sample(batch))
        if options["compile_losses"]:
            compile_seconds = time.perf_counter() - started
    rates: dict[str, list[float]] = {name: [] for name in agents}
    peaks: dict[str, list[float]] = {name: [] for name in agents}  # the matmul window right after each
    for _ in range(repeats):
        for name, agent in agents.items():
            batches = [replay.sample(batch) for _ in range(window)]
            started = time.perf_counter()
            for sample in batches:
                agent.update(sample)
            rates[name].append(window / (time.perf_counter() - started))
            peaks[name].append(matmul_gflops(seconds=0.5))
    flops = update_flops(obs_dim, action_dim, hidden, batch)
    plain = rates[next(iter(UPDATE_PATHS))]
    all_peaks = [value for values in peaks.values() for value in values]
    return dict(
        hidden=hidden,
        batch=batch,
        gflop_per_update=flops / 1e9,
        matmul_peak_gflops=statistics.median(all_peaks),
        compile_seconds=compile_seconds,
        paths={
            name: dict(
                updates_per_second=statistics.median(values),
                windows=values,
                matmul_windows=peaks[name],
                gflops=statistics.median(values) * flops / 1e9,
                # Medians of per-window ratios: a slow spell of the machine slows both sides of each ratio.
                fraction_of_peak=statistics.median(
                    rate * flops / 1e9 / peak for rate, peak in zip(values, peaks[name])
                ),
                speedup_over_plain=statistics.median(rate / base for rate, base in zip(values, plain)),
            )
            for name, values in rates.items()
        },
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="HalfCheetah-v5")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--measured", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5, help="runs of each trainer, in rotating order")
    parser.add_argument("--update-repeats", type=int, default=11, help="timing windows per update path")
    parser.add_argument("--skip-loop", action="store_true", help="only time the bare update")
    args = parser.parse_args()

    trainers: dict[str, Callable[[], dict]] = {
        "ace-rl ACE": lambda: ace_rl_run("ace", args.env, args.hidden, args.batch, args.warmup, args.measured),
        "ace-rl SAC": lambda: ace_rl_run("sac", args.env, args.hidden, args.batch, args.warmup, args.measured),
        "Stable-Baselines3 SAC": lambda: {
            "steps_per_second": sb3_steps_per_second(args.env, args.hidden, args.batch, args.warmup, args.measured)
        },
    }
    runs: dict[str, list[float]] = {name: [] for name in trainers}
    ace_fit_share: list[float] = []  # causal-fit seconds / window seconds, per ACE run
    order = list(trainers)
    if not args.skip_loop:
        trainers["ace-rl SAC"]()  # discarded: the first run in a process is slower than the ones after it
    for repeat in range(0 if args.skip_loop else args.repeats):
        for name in order[repeat % 3 :] + order[: repeat % 3]:
            run = trainers[name]()
            runs[name].append(run["steps_per_second"])
            if "fit_seconds" in run:
                ace_fit_share.append(run["fit_seconds"] / run["window_seconds"])
            print(f"repeat {repeat + 1}: {name}: {runs[name][-1]:.1f} env steps/s", flush=True)

    updates = {}
    for preset, window in (("small", 30), ("paper", 4)):
        updates[preset] = bare_update_rates(args.env, preset, window, args.update_repeats)
        print(f"bare update, {preset} preset: done", flush=True)
    extra = {preset: ace_extra_seconds(args.env, preset) for preset in ("small", "paper")}
    default_path = "default (fused Adam)"

    print(f"\n{args.env}, torch threads {torch.get_num_threads()}, {os.cpu_count()} CPUs")
    loop = {name: statistics.median(values) for name, values in runs.items() if values}
    if loop:
        print(f"\nWhole training loop, 3 x {args.hidden}, batch {args.batch} (median of {args.repeats} runs each)")
        print(f"{'trainer':<24}{'env steps/s':>12}{'vs SB3':>8}   runs")
        for name, rate in loop.items():
            print(
                f"{name:<24}{rate:>12.1f}{rate / loop['Stable-Baselines3 SAC']:>8.2f}   "
                + " ".join(f"{value:.1f}" for value in runs[name])
            )
        ratios = {
            f"ACE / {other}": statistics.median(ace / rate for ace, rate in zip(runs["ace-rl ACE"], runs[other]))
            for other in ("ace-rl SAC", "Stable-Baselines3 SAC")
        }
        print(
            "median of the per-repeat ratios: "
            + ", ".join(f"{name} {value:.2f}" for name, value in ratios.items())
            + f"; the causal fit took {100 * statistics.median(ace_fit_share):.2f} % of ACE's window (median)"
        )
    print("\nACE's work beyond SAC's, at the presets' intervals (median of 5 timings each)")
    for preset, cost in extra.items():
        # Seconds of one SAC env step: the measured loop for the small preset, the bare update for the paper one.
        if preset == "small" and loop:
            step_seconds = 1 / loop["ace-rl SAC"]
        else:
            step_seconds = 1 / updates[preset]["paths"][default_path]["updates_per_second"]
        per_step = cost["fit_seconds"] / cost["causal_interval"] + cost["reset_seconds"] / cost["reset_interval"]
        cost["share_of_training_time"] = per_step / step_seconds
        print(
            f"{preset:<6} causal fit on {cost['causal_samples']} transitions {1000 * cost['fit_seconds']:.1f} ms every "
            f"{cost['causal_interval']} steps, soft reset {1000 * cost['reset_seconds']:.1f} ms every "
            f"{cost['reset_interval']} updates: {100 * cost['share_of_training_time']:.4f} % of training time"
        )
    for preset, result in updates.items():
        print(
            f"\nBare update, {preset} preset (3 x {result['hidden']}, batch {result['batch']}): "
            f"{result['gflop_per_update']:.2f} GFLOP per update, matmul peak {result['matmul_peak_gflops']:.0f} GFLOP/s"
        )
        print(f"{'path':<42}{'updates/s':>10}{'GFLOP/s':>9}{'of peak':>9}{'vs plain':>10}")
        for name, path in result["paths"].items():
            print(
                f"{name:<42}{path['updates_per_second']:>10.2f}{path['gflops']:>9.0f}"
                f"{100 * path['fraction_of_peak']:>8.0f}%{path['speedup_over_plain']:>10.2f}"
            )
        print(f"(compiling took {result['compile_seconds']:.0f} s)")

    RESULTS.mkdir(parents=True, exist_ok=True)
    result = dict(
        env=args.env,
        hidden=args.hidden,
        batch=args.batch,
        warmup=args.warmup,
        measured=args.measured,
        repeats=args.repeats,
        torch_threads=torch.get_num_threads(),
        env_steps_per_second=loop,
        runs=runs,
        ace_over_sac=loop["ace-rl ACE"] / loop["ace-rl SAC"] if loop else None,
        ace_over_sb3=loop["ace-rl ACE"] / loop["Stable-Baselines3 SAC"] if loop else None,
        per_repeat_ratio_medians=ratios if loop else None,
        ace_fit_share_of_window=ace_fit_share,
        ace_extra_work=extra,
        bare_update=updates,
        machine=dict(platform=platform.platform(), cpus=os.cpu_count(), load_average=os.getloadavg()[0]),
        torch=torch.__version__,
        numpy=np.__version__,
    )
    path = RESULTS / ("throughput.json" if loop else "throughput_update.json")
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
