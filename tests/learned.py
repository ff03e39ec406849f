"""Whether a finished run's agent learned anything: a run with a finite evaluation is not evidence of it, since an
agent whose `update` does nothing finishes one just as well."""

from __future__ import annotations

from pathlib import Path

import torch

from ace_rl.agents import make_agent
from ace_rl.checkpoint import load_training_state
from ace_rl.config import TrainConfig
from ace_rl.envs import observation_size
from ace_rl.trainer import make_run_env


def assert_learned(run_dir: Path, config: TrainConfig) -> None:
    """Every parameter of the actor and the critic in the run's last checkpoint differs from the same agent's
    initial value (the agent as training made it: same configuration and seed, so the same initial weights)."""
    state, _, _ = load_training_state(run_dir)
    env = make_run_env(config)
    try:
        low, high = env.action_space.low, env.action_space.high  # type: ignore[attr-defined]
        initial = make_agent(config, observation_size(env), low.shape[0], low, high, torch.device("cpu"))
    finally:
        env.close()
    unchanged = []
    for network in ("actor", "critic"):
        trained = state["agent"][network]
        for name, value in getattr(initial, network).named_parameters():
            if torch.equal(trained[name], value.detach()):
                unchanged.append(f"{network}.{name}")
    assert state["agent"]["updates"] > 0, "the agent made no update"
    assert not unchanged, f"training left these parameters at their initial values: {', '.join(unchanged)}"
