"""Size and write/read time of a full-state checkpoint holding a full 1,000,000-transition replay buffer.

The default is the largest MuJoCo case, Humanoid-v5 (348 observations, 17 actions, 1000-step episodes) with
the paper preset's networks. The buffer is filled with synthetic values (the cost depends only on sizes).

    python benchmarks/checkpoint_size.py [--obs-dim 348 --action-dim 17 --transitions 1000000]
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import cast

import numpy as np
import torch

from ace_rl.ace import ACE
from ace_rl.checkpoint import TrainingState, load_training_state, save_training_state
from ace_rl.config import preset_config
from ace_rl.replay import ReplayBuffer, bytes_per_transition

RESULTS = Path(__file__).resolve().parent / "results"


def filled_buffer(obs_dim: int, action_dim: int, transitions: int, episode_length: int) -> ReplayBuffer:
    replay = ReplayBuffer(transitions, obs_dim, action_dim, seed=0)
    replay.obs.normal_()
    replay.actions.uniform_(-1, 1)
    replay.rewards.normal_()
    ends = torch.arange(episode_length - 1, transitions, episode_length)
    replay.episode_end[ends] = True
    replay.final_index[ends] = torch.arange(len(ends), dtype=torch.int32)
    replay.final_obs[: len(ends)].normal_()
    replay.final_count = replay.final_position = len(ends)
    replay.size, replay.position = transitions, 0
    return replay


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--obs-dim", type=int, default=348)
    parser.add_argument("--action-dim", type=int, default=17)
    parser.add_argument("--transitions", type=int, default=1_000_000)
    parser.add_argument("--episode-length", type=int, default=1000)
    parser.add_argument("--directory", type=Path, default=None, help="where to write (default: a temporary folder)")
    args = parser.parse_args()

    config = preset_config("paper")
    bounds = np.ones(args.action_dim)
    agent = ACE(args.obs_dim, args.action_dim, -bounds, bounds, config, torch.device("cpu"))
    replay = filled_buffer(args.obs_dim, args.action_dim, args.transitions, args.episode_length)
    # Only the two entries that make a checkpoint's size, not a whole TrainingState.
    state = cast(TrainingState, {"agent": agent.state_dict(), "replay": replay.state_dict()})
    root = Path(tempfile.mkdtemp(dir=args.directory))
    try:
        started = time.perf_counter()
        path = save_training_state(root, args.transitions, state)
        write_seconds = time.perf_counter() - started
        size = path.stat().st_size
        started = time.perf_counter()
        load_training_state(root)
        read_seconds = time.perf_counter() - started
    finally:
        shutil.rmtree(root)
    per_transition = bytes_per_transition(args.obs_dim, args.action_dim, args.episode_length)
    doubled = (2 * args.obs_dim + args.action_dim + 2) * 4
    result = dict(
        obs_dim=args.obs_dim,
        action_dim=args.action_dim,
        transitions=args.transitions,
        bytes_per_transition=per_transition,
        bytes_per_transition_if_obs_stored_twice=doubled,
        checkpoint_bytes=size,
        write_seconds=write_seconds,
        verify_and_load_seconds=read_seconds,
        machine=dict(platform=platform.platform(), cpus=__import__("os").cpu_count()),
    )
    print(f"{'bytes/transition':>17}{'(obs twice)':>12}{'checkpoint GB':>15}{'write s':>9}{'verify+load s':>15}")
    print(f"{per_transition:>17.1f}{doubled:>12}{size / 1e9:>15.2f}{write_seconds:>9.1f}{read_seconds:>15.1f}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "checkpoint_size.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
