"""Training throughput on this machine: ace-rl ACE, ace-rl SAC and Stable-Baselines3 SAC, and the bare update.

1. Env steps per second of the whole training loop on one task with the same network (3 x ``--hidden``)
   and batch, one update per env step, after ``--warmup`` steps, evaluation off:
   - ace-rl ACE with causal fits every 2,500 steps and a reset every 2,000 updates (far more often than the
     presets' 10,000 / 100,000, so the figure is a conservative one for ACE);
   - ace-rl ``--algo sac`` (same code, no causal fits, no resets);
   - Stable-Baselines3 SAC (``pip install stable-baselines3``), which updates its actor and target network
     on every step where ace-rl follows the official ACE code and does so on every second step.
2. Updates per second of the bare ACE update at the paper preset (3 x 1024, batch 512), its FLOP count and
   the measured float32 matrix-multiply peak of this machine, giving the fraction of peak reached.

Prints a table and writes ``benchmarks/results/throughput.json``.

    python benchmarks/throughput.py [--env HalfCheetah-v5] [--warmup 2000] [--measured 3000]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ace_rl.ace import ACE
from ace_rl.config import preset_config
from ace_rl.envs import make_env, observation_size, seed_env
from ace_rl.replay import ReplayBuffer
from ace_rl.train import train

RESULTS = Path(__file__).resolve().parent / "results"


def ace_rl_steps_per_second(algo: str, env: str, hidden: int, batch: int, warmup: int, measured: int) -> float:
    """Env steps per second between the episode ends at ``warmup`` and ``warmup + measured`` env steps."""
    with tempfile.TemporaryDirectory() as folder:
        config = preset_config(
            "small", algo, env=env, hidden_size=hidden, batch_size=batch, start_steps=warmup,
            # One more episode after the window, so that the final evaluation falls outside it.
            total_steps=warmup + measured + 1000, eval_every=10**9, eval_episodes=1,
            causal_interval=2500, causal_samples=2000, reset_interval=2000, reset_start=0,
            checkpoint_every=10**9, progress=False, run_dir=Path(folder) / "run",
        )
        run_dir = train(config)
        with open(run_dir / "episodes.csv") as file:
            wall = {int(row["env_step"]): float(row["wall_time"]) for row in csv.DictReader(file)}
    if warmup not in wall or warmup + measured not in wall:
        raise SystemExit(f"{env}: --warmup and --measured must be multiples of its episode length (1000 steps)")
    return measured / (wall[warmup + measured] - wall[warmup])


def sb3_steps_per_second(env: str, hidden: int, batch: int, warmup: int, measured: int) -> float:
    from stable_baselines3 import SAC

    model = SAC(
        "MlpPolicy", make_env(env), policy_kwargs=dict(net_arch=[hidden] * 3), batch_size=batch,
        learning_starts=warmup, seed=0, device="cpu",
    )
    model.learn(warmup)
    started = time.perf_counter()
    model.learn(measured, reset_num_timesteps=False)
    return measured / (time.perf_counter() - started)


def update_flops(obs_dim: int, action_dim: int, hidden: int, batch: int, policy_frequency: int = 2) -> float:
    """Floating-point operations of one ACE update (2 per multiply-add; backward counted as 2 forwards)."""
    actor = obs_dim * hidden + 2 * hidden * hidden + 2 * hidden * action_dim  # multiply-adds per sample
    critic = 2 * ((obs_dim + action_dim) * hidden + 2 * hidden * hidden + hidden)  # both Q networks
    every_update = actor + critic + 3 * critic  # next action, target critic, critic forward + backward
    # Actor forward + backward; critic forward, and its backward to the actions only (its weights are frozen).
    delayed = 3 * actor + 2 * critic
    return 2.0 * batch * (every_update + delayed / policy_frequency)


def matmul_peak_gflops(size: int = 2048, repeats: int = 20) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(3):
        a @ b
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - started) / 1e9


def bare_updates_per_second(env: str, hidden: int, batch: int, updates: int) -> tuple[float, float]:
    probe = make_env(env)
    obs_dim, action_dim = observation_size(probe), int(probe.action_space.shape[0])
    config = preset_config("paper", hidden_size=hidden, batch_size=batch, reset="none")
    agent = ACE(obs_dim, action_dim, probe.action_space.low, probe.action_space.high, config, torch.device("cpu"))
    replay = ReplayBuffer(10_000, obs_dim, action_dim, seed=0)
    obs = seed_env(probe, 0)
    for _ in range(5_000):
        action = probe.action_space.sample()
        next_obs, reward, terminated, truncated, _ = probe.step(action)
        replay.add(obs, action, float(reward), next_obs, terminated, truncated)
        obs = probe.reset()[0] if terminated or truncated else next_obs
    for _ in range(10):
        agent.update(replay.sample(batch))
    started = time.perf_counter()
    for _ in range(updates):
        agent.update(replay.sample(batch))
    rate = updates / (time.perf_counter() - started)
    return rate, update_flops(obs_dim, action_dim, hidden, batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="HalfCheetah-v5")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--warmup", type=int, default=2000)
    parser.add_argument("--measured", type=int, default=3000)
    parser.add_argument("--paper-updates", type=int, default=30, help="bare updates timed at the paper preset")
    args = parser.parse_args()

    loop = {}
    for name, measure in (
        ("ace-rl ACE", lambda: ace_rl_steps_per_second("ace", args.env, args.hidden, args.batch, args.warmup, args.measured)),
        ("ace-rl SAC", lambda: ace_rl_steps_per_second("sac", args.env, args.hidden, args.batch, args.warmup, args.measured)),
        ("Stable-Baselines3 SAC", lambda: sb3_steps_per_second(args.env, args.hidden, args.batch, args.warmup, args.measured)),
    ):
        loop[name] = measure()
        print(f"{name}: {loop[name]:.1f} env steps/s", flush=True)
    peak = matmul_peak_gflops()
    updates_per_second, flops = bare_updates_per_second(args.env, 1024, 512, args.paper_updates)
    fraction = updates_per_second * flops / 1e9 / peak

    print(f"\n{args.env}, 3 x {args.hidden}, batch {args.batch}, torch threads {torch.get_num_threads()}")
    print(f"{'trainer':<24}{'env steps/s':>12}{'vs SB3':>8}")
    for name, rate in loop.items():
        print(f"{name:<24}{rate:>12.1f}{rate / loop['Stable-Baselines3 SAC']:>8.2f}")
    print(f"ACE / ace-rl SAC: {loop['ace-rl ACE'] / loop['ace-rl SAC']:.3f}")
    print(
        f"paper preset (3 x 1024, batch 512): {updates_per_second:.2f} updates/s x {flops / 1e9:.2f} GFLOP = "
        f"{updates_per_second * flops / 1e9:.0f} GFLOP/s; matmul peak {peak:.0f} GFLOP/s; {100 * fraction:.0f} % of peak"
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    result = dict(
        env=args.env, hidden=args.hidden, batch=args.batch, warmup=args.warmup, measured=args.measured,
        torch_threads=torch.get_num_threads(), env_steps_per_second=loop,
        ace_over_sac=loop["ace-rl ACE"] / loop["ace-rl SAC"],
        ace_over_sb3=loop["ace-rl ACE"] / loop["Stable-Baselines3 SAC"],
        paper_updates_per_second=updates_per_second, paper_update_gflop=flops / 1e9,
        matmul_peak_gflops=peak, fraction_of_peak=fraction,
        machine=dict(platform=platform.platform(), cpus=os.cpu_count(), load_average=os.getloadavg()[0]),
        torch=torch.__version__, numpy=np.__version__,
    )
    (RESULTS / "throughput.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS / 'throughput.json'}")


if __name__ == "__main__":
    main()
