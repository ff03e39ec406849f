"""DDPG (Lillicrap et al. 2016) as a user would add an algorithm to ace-rl: one file outside the package.

Importing this module registers the agent as ``ddpg``; on the command line it is ``--algo ddpg_agent:ddpg``
(with this folder on PYTHONPATH). Nothing here is imported by ace_rl itself: the test of this file proves that
training, resuming, evaluation, export, sweeps and reports need no change to the package for a new agent.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from ace_rl.agents import register_agent
from ace_rl.config import TrainConfig
from ace_rl.replay import Batch


class DDPGPolicy(nn.Module):
    """obs -> tanh MLP -> action in the environment's bounds (its own class, not one of ace_rl's)."""

    def __init__(self, obs_dim: int, action_dim: int, hidden_size: int, low: torch.Tensor, high: torch.Tensor) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(obs_dim, hidden_size),
            nn.ReLU(),
            nn.Linear(hidden_size, hidden_size),
            nn.ReLU(),
            nn.Linear(hidden_size, action_dim),
            nn.Tanh(),
        )
        low, high = torch.as_tensor(low, dtype=torch.float32), torch.as_tensor(high, dtype=torch.float32)
        self.register_buffer("action_scale", (high - low) / 2)
        self.register_buffer("action_bias", (high + low) / 2)

    def deterministic(self, obs: torch.Tensor) -> torch.Tensor:
        return self.body(obs) * self.action_scale + self.action_bias

    forward = deterministic


class DDPG:
    def __init__(
        self,
        config: TrainConfig,
        obs_dim: int,
        action_dim: int,
        low: np.ndarray,
        high: np.ndarray,
        device: torch.device,
    ) -> None:
        self.config = config
        self.device = device
        self.actor = DDPGPolicy(obs_dim, action_dim, config.hidden_size, torch.as_tensor(low), torch.as_tensor(high))
        self.actor.to(device)
        self.critic = nn.Sequential(
            nn.Linear(obs_dim + action_dim, config.hidden_size), nn.ReLU(), nn.Linear(config.hidden_size, 1)
        ).to(device)
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=config.learning_rate)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=config.learning_rate)
        self.noise = config.exploration_noise * self.actor.action_scale
        self.low, self.high = (
            self.actor.action_bias - self.actor.action_scale,
            self.actor.action_bias + self.actor.action_scale,
        )
        self.updates = 0

    @torch.inference_mode()
    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        action = self.actor(torch.as_tensor(obs, dtype=torch.float32, device=self.device)[None])
        if not deterministic:
            action = (action + torch.randn_like(action) * self.noise).clamp(self.low, self.high)
        return action[0].cpu().numpy()

    def q(self, critic: nn.Module, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return critic(torch.cat([obs, actions], dim=-1)).squeeze(-1)

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        self.updates += 1
        with torch.no_grad():
            next_q = self.q(self.critic_target, batch.next_obs, self.actor_target(batch.next_obs))
            target = batch.rewards + self.config.gamma * (1 - batch.terminated) * next_q
        critic_loss = ((self.q(self.critic, batch.obs, batch.actions) - target) ** 2).mean()
        self.critic_optimizer.zero_grad()
        critic_loss.backward()
        self.critic_optimizer.step()
        actor_loss = -self.q(self.critic, batch.obs, self.actor(batch.obs)).mean()
        self.actor_optimizer.zero_grad()
        actor_loss.backward()
        self.actor_optimizer.step()
        with torch.no_grad():
            for target_net, online in ((self.actor_target, self.actor), (self.critic_target, self.critic)):
                for target_param, param in zip(target_net.parameters(), online.parameters()):
                    target_param.lerp_(param, self.config.tau)
        return {"loss/critic": critic_loss.detach(), "loss/actor": actor_loss.detach()}

    def trained_parameters(self) -> Iterator[tuple[str, torch.Tensor]]:
        for prefix, module in (("actor.", self.actor), ("critic.", self.critic)):
            yield from ((prefix + name, param) for name, param in module.named_parameters())

    def state_dict(self) -> dict:
        return {
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "actor_target": self.actor_target.state_dict(),
            "critic_target": self.critic_target.state_dict(),
            "actor_optimizer": self.actor_optimizer.state_dict(),
            "critic_optimizer": self.critic_optimizer.state_dict(),
            "updates": self.updates,
        }

    def load_state_dict(self, state: dict) -> None:
        for name in ("actor", "critic", "actor_target", "critic_target", "actor_optimizer", "critic_optimizer"):
            getattr(self, name).load_state_dict(state[name])
        self.updates = int(state["updates"])


def make_ddpg(
    config: TrainConfig, obs_dim: int, action_dim: int, low: np.ndarray, high: np.ndarray, device: torch.device
) -> DDPG:
    return DDPG(config, obs_dim, action_dim, low, high, device)


register_agent("ddpg", make_ddpg, DDPGPolicy, summary="DDPG, defined outside ace_rl")
