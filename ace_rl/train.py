"""The training loop: collect, fit the causal model, update, evaluate, log, checkpoint."""

from __future__ import annotations

import json
import random
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ace_rl.ace import ACE
from ace_rl.causal import causal_weights
from ace_rl.checkpoint import save_policy
from ace_rl.config import ConfigError, TrainConfig, to_json_dict, validate
from ace_rl.envs import make_env, observation_size, seed_env
from ace_rl.evaluate import run_episodes
from ace_rl.logger import RunLogger
from ace_rl.replay import ReplayBuffer

EVAL_SEED_OFFSET = 10_000  # the evaluation environment gets a seed of its own


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: CUDA is not available here; use --device cpu or auto")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def default_run_dir(config: TrainConfig) -> Path:
    env_name = "".join(char if char.isalnum() or char in "-_." else "_" for char in config.env)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{env_name}__{config.algo}__s{config.seed}__{stamp}"


def prepare_run_dir(run_dir: Path) -> None:
    """Create the run directory; refuse one that already holds files, so nothing written is overwritten."""
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"--run-dir {run_dir} is a file, not a directory")
    if run_dir.is_dir() and any(run_dir.iterdir()):
        raise ConfigError(f"--run-dir {run_dir} already holds files; choose a new or empty directory")
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)


def train(config: TrainConfig) -> Path:
    """Train as configured and return the run directory."""
    validate(config)
    device = pick_device(config.device)
    env = make_env(config.env)
    eval_env = make_env(config.env)
    run_dir = config.run_dir if config.run_dir is not None else default_run_dir(config)
    prepare_run_dir(run_dir)
    config.run_dir = run_dir
    (run_dir / "config.json").write_text(json.dumps(to_json_dict(config), indent=2) + "\n")

    if config.threads > 0:
        torch.set_num_threads(config.threads)
    seed_everything(config.seed)
    obs = seed_env(env, config.seed)
    seed_env(eval_env, config.seed + EVAL_SEED_OFFSET)
    obs_dim = observation_size(env)
    action_dim = int(env.action_space.shape[0])
    agent = ACE(obs_dim, action_dim, env.action_space.low, env.action_space.high, config, device)
    # A run never holds more transitions than it collects: don't allocate more.
    replay = ReplayBuffer(min(config.buffer_size, config.total_steps), obs_dim, action_dim, config.seed)
    logger = RunLogger(run_dir, action_dim)
    checkpoint_metadata = {"env": config.env, "algo": config.algo, "seed": config.seed}

    start_time = time.perf_counter()
    best_return = -float("inf")
    episode, episode_return, episode_length = 0, 0.0, 0
    pending_metrics: dict[str, torch.Tensor] = {}
    progress = tqdm(total=config.total_steps, unit="step", disable=not config.progress, mininterval=1.0)
    try:
        for env_step in range(1, config.total_steps + 1):
            if env_step <= config.start_steps:
                action = env.action_space.sample()
            else:
                action = agent.act(obs)
            next_obs, reward, terminated, truncated, _ = env.step(action)
            # Only a terminal state stops bootstrapping; a time limit (truncation) does not.
            replay.add(obs, action, float(reward), next_obs, terminated)
            episode_return += float(reward)
            episode_length += 1
            if terminated or truncated:
                episode += 1
                logger.episodes.write(
                    env_step=env_step, episode=episode, **{"return": episode_return}, length=episode_length,
                    terminated=int(terminated), wall_time=time.perf_counter() - start_time,
                )
                logger.scalars({"train/episode_return": episode_return}, env_step)
                obs, _ = env.reset()
                episode_return, episode_length = 0.0, 0
            else:
                obs = next_obs

            if (
                config.algo == "ace"
                and env_step % config.causal_interval == 0
                and len(replay) >= config.causal_samples
            ):
                fit = causal_weights(*replay.latest(config.causal_samples), method=config.causal_method)
                agent.set_causal_weights(fit.weights)
                logger.causal.write(
                    env_step=env_step, **{f"w{i}": float(w) for i, w in enumerate(fit.weights)},
                    method=fit.method, seconds=fit.seconds, dropped_columns=len(fit.dropped), note=fit.note,
                )
                logger.scalars(
                    {**{f"causal/w{i}": float(w) for i, w in enumerate(fit.weights)}, "causal/seconds": fit.seconds},
                    env_step,
                )

            if len(replay) >= config.batch_size:
                for _ in range(config.updates_per_step):
                    metrics, reset = agent.update(replay.sample(config.batch_size, device))
                    pending_metrics.update(metrics)
                    if reset is not None:
                        logger.resets.write(
                            env_step=env_step, update=reset.update, dormancy_ratio=reset.dormancy_ratio,
                            reset_factor=reset.factor, kind=reset.kind,
                        )
                        logger.scalars({"reset/dormancy_ratio": reset.dormancy_ratio, "reset/factor": reset.factor}, env_step)

            if env_step % config.log_every == 0 and pending_metrics:
                logger.scalars({name: float(value) for name, value in pending_metrics.items()}, env_step)
                logger.scalars({"train/steps_per_second": env_step / (time.perf_counter() - start_time)}, env_step)

            if env_step % config.eval_every == 0 or env_step == config.total_steps:
                returns = run_episodes(lambda o: agent.act(o, deterministic=True), eval_env, config.eval_episodes)
                mean_return, std_return = float(returns.mean()), float(returns.std())
                logger.metrics.write(
                    env_step=env_step, updates=agent.updates, eval_return_mean=mean_return,
                    eval_return_std=std_return, wall_time=time.perf_counter() - start_time,
                )
                logger.scalars({"eval/return_mean": mean_return, "eval/return_std": std_return}, env_step)
                if mean_return > best_return:
                    best_return = mean_return
                    save_policy(run_dir / "checkpoints" / "best.pt", agent.actor,
                                {**checkpoint_metadata, "env_step": env_step, "eval_return_mean": mean_return})
                progress.set_postfix(eval_return=f"{mean_return:.1f}", refresh=False)
            progress.update(1)
        save_policy(run_dir / "checkpoints" / "final.pt", agent.actor,
                    {**checkpoint_metadata, "env_step": config.total_steps, "eval_return_mean": mean_return})
    finally:
        progress.close()
        logger.close()
        env.close()
        eval_env.close()
    return run_dir
