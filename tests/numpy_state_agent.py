"""An agent whose state_dict() holds a NumPy array, as a user's agent might (tests/test_run_finishing.py).

``--algo numpy_state_agent:numpy_state`` (with this folder on PYTHONPATH): DDPG from tests/ddpg_agent.py that also
counts its actions per sign in a NumPy array and keeps that array, as is, in its state. torch.save writes such a
state, but torch.load(weights_only=True), which --resume uses, refuses it.
"""

from __future__ import annotations

import numpy as np
import torch

from ace_rl.agents import register_agent
from ace_rl.config import TrainConfig
from ddpg_agent import DDPG, DDPGPolicy


class CountingDDPG(DDPG):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.counts = np.zeros(2, dtype=np.int64)  # actions below zero, at or above zero

    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        action = super().act(obs, deterministic)
        self.counts += [int((action < 0).sum()), int((action >= 0).sum())]
        return action

    def state_dict(self) -> dict:
        return {**super().state_dict(), "extra": {"counts": self.counts}}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.counts = np.asarray(state["extra"]["counts"])


def make_counting_ddpg(
    config: TrainConfig, obs_dim: int, action_dim: int, low: np.ndarray, high: np.ndarray, device: torch.device
) -> CountingDDPG:
    return CountingDDPG(config, obs_dim, action_dim, low, high, device)


register_agent("numpy_state", make_counting_ddpg, DDPGPolicy, summary="DDPG with a NumPy array in its state")
