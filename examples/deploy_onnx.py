"""Run an exported ace-rl policy with onnxruntime, NumPy and Gymnasium alone (no PyTorch, no ace-rl), on the
environment's own observations (a Dict as it is), seeded as ``ace-rl eval`` and ``ace_rl.evaluate`` seed.

    ace-rl export runs/reach-dict --out reach.onnx --trust-run-code
    python examples/deploy_onnx.py reach.onnx --env-module examples/point_reach.py --episodes 10 --seed 0

The file says what it needs in its metadata: the environment's id and constructor arguments, the inputs (one per
Dict key the policy reads, in the order the graph flattens them) and the action bounds. ``--env-module`` is the
file of the module that registers the environment, loaded by path (its id's ``module:`` part is not needed).
Prints the return of every episode, and their mean and standard deviation, as JSON.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import onnxruntime

EVAL_MAX_EPISODE_STEPS = 1000  # ace-rl's limit for an environment without a time limit of its own


def load_module(path: Path) -> None:
    """Import a module from its file, so that it registers its environment with Gymnasium."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load a module from {path}")
    spec.loader.exec_module(importlib.util.module_from_spec(spec))


def leaf(observation: Any, name: str) -> np.ndarray:
    """The part of an observation that the input ``name`` takes: a Dict's key (``outer/inner`` for a nested one),
    or the whole observation for a flat input."""
    if not isinstance(observation, dict):
        return np.asarray(observation)
    for key in name.split("/"):
        observation = observation[key]
    return np.asarray(observation)


def run_episodes(session: onnxruntime.InferenceSession, env: gym.Env, episodes: int, seed: int) -> list[float]:
    """ace-rl's evaluation: the environment is reset with ``seed`` once (that observation is not used), and every
    episode then starts with a plain ``reset()``, continuing the environment's own generator; an episode ends when
    the task terminates or truncates it (or after 1,000 steps without a time limit)."""
    inputs = [graph_input.name for graph_input in session.get_inputs()]
    env.action_space.seed(seed)
    env.reset(seed=seed)
    limit = env.spec.max_episode_steps if env.spec is not None and env.spec.max_episode_steps else None
    returns = []
    for _ in range(episodes):
        observation, _ = env.reset()
        total = 0.0
        for _ in range(limit or EVAL_MAX_EPISODE_STEPS):
            feed = {name: leaf(observation, name)[None] for name in inputs}  # a batch of one
            action = session.run(["action"], feed)[0][0]
            observation, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            if terminated or truncated:
                break
        returns.append(total)
    return returns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("policy", type=Path, help="the .onnx file written by ace-rl export")
    parser.add_argument("--env-module", type=Path, help="the file of the module that registers the environment")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    session = onnxruntime.InferenceSession(str(args.policy), providers=["CPUExecutionProvider"])
    metadata = session.get_modelmeta().custom_metadata_map
    if args.env_module is not None:
        load_module(args.env_module)
    env_id = metadata["env"].rpartition(":")[2] if args.env_module is not None else metadata["env"]
    env = gym.make(env_id, **json.loads(metadata["env_kwargs"]))
    returns = run_episodes(session, env, args.episodes, args.seed)
    print(json.dumps({"returns": returns, "mean": float(np.mean(returns)), "std": float(np.std(returns))}))


if __name__ == "__main__":
    main()
