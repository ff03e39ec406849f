"""What the training loop asks of an agent, and the one place that picks the agent for ``--algo``.

ACE (and its SAC ablation, the same code with all-ones causal weights and no reset) lives in
:mod:`ace_rl.ace`, TD3 in :mod:`ace_rl.td3`; the loop in :mod:`ace_rl.trainer` talks to them only through
:class:`Agent`.
"""

from __future__ import annotations

from typing import Iterator, Protocol

import numpy as np
import torch
from torch import nn

from ace_rl.ace import ACE, ResetEvent
from ace_rl.config import TrainConfig
from ace_rl.replay import Batch
from ace_rl.td3 import TD3


class Agent(Protocol):
    actor: nn.Module
    """The policy that evaluation uses and best.pt / final.pt store."""
    updates: int
    """Gradient updates made so far."""
    fits_causal_model: bool
    """Whether the loop should fit the causal model and hand the agent its weights."""

    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray: ...

    def update(self, batch: Batch) -> tuple[dict[str, torch.Tensor], ResetEvent | None]:
        """One update; its losses as tensors (read only when logged) and the reset it made, if any."""
        ...

    def set_causal_weights(self, causal_weights: np.ndarray) -> None: ...

    def trained_parameters(self) -> Iterator[tuple[str, torch.Tensor]]:
        """Every trained parameter by name, for the finiteness check before anything is saved."""
        ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


def make_agent(
    config: TrainConfig,
    obs_dim: int,
    action_dim: int,
    action_low: np.ndarray,
    action_high: np.ndarray,
    device: torch.device,
) -> Agent:
    if config.algo == "td3":
        return TD3(obs_dim, action_dim, action_low, action_high, config, device)
    return ACE(obs_dim, action_dim, action_low, action_high, config, device, compile_losses=config.compile)
