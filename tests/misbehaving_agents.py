"""Agents that break what ace-rl's loop needs, one way each; registered when this module is imported
(``--algo misbehaving_agents:NAME``, with tests/ on PYTHONPATH). Each is tests/ddpg_agent.py's DDPG but for its
fault."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ace_rl.agents import register_agent
from ace_rl.config import TrainConfig
from ace_rl.replay import Batch
from ddpg_agent import DDPG, DDPGPolicy


class FloatLosses(DDPG):
    """Returns its losses as Python floats, not tensors."""

    def update(self, batch: Batch) -> dict[str, Any]:
        return {name: float(value) for name, value in super().update(batch).items()}


class NoStateDict(DDPG):
    """Builds its state but forgets to return it."""

    def state_dict(self) -> Any:
        super().state_dict()


class WithoutTrainedParameters:
    """Has everything of DDPG but trained_parameters."""

    def __init__(self, inner: DDPG) -> None:
        self.inner = inner
        self.actor = inner.actor
        self.updates = 0

    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        return self.inner.act(obs, deterministic)

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        self.updates += 1
        return self.inner.update(batch)

    def state_dict(self) -> dict:
        return self.inner.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.inner.load_state_dict(state)


def make_float_losses(config: TrainConfig, obs_dim: int, action_dim: int, low, high, device) -> FloatLosses:
    return FloatLosses(config, obs_dim, action_dim, low, high, device)


def make_no_state_dict(config: TrainConfig, obs_dim: int, action_dim: int, low, high, device) -> NoStateDict:
    return NoStateDict(config, obs_dim, action_dim, low, high, device)


def make_without_trained_parameters(
    config: TrainConfig, obs_dim: int, action_dim: int, low, high, device
) -> WithoutTrainedParameters:
    return WithoutTrainedParameters(DDPG(config, obs_dim, action_dim, low, high, device))


def make_causal_ddpg(config: TrainConfig, obs_dim: int, action_dim: int, low, high, device) -> DDPG:
    return DDPG(config, obs_dim, action_dim, low, high, device)


register_agent("float-losses", make_float_losses, DDPGPolicy)
register_agent("no-state-dict", make_no_state_dict, DDPGPolicy)
register_agent("without-trained-parameters", make_without_trained_parameters, DDPGPolicy)
# Registered as causal, so that the loop will hand it causal weights, which it has no method to take.
register_agent("causal-without-weights", make_causal_ddpg, DDPGPolicy, causal=True)
