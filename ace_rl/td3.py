"""TD3, the paper's second baseline (Fujimoto, van Hoof and Meger, ICML 2018), behind the same interface as ACE.

One call of `TD3.update` is one TD3 update, and reads top to bottom:

1. critic: both Q networks regress on r + gamma * (1 - terminated) * min_j Q'_j(s', a~'), where
   a~' = clip(pi'(s') + clip(N(0, sigma), -c, c), low, high) is the target policy's action smoothed by
   clipped Gaussian noise (sigma = 0.2 and c = 0.5 times the action's half-range);
2. every ``policy_frequency`` critic updates (2): the deterministic actor ascends Q_1(s, pi(s)), then both
   target networks move towards the online ones by Polyak averaging (tau).

Acting adds Gaussian exploration noise N(0, 0.1 times the half-range) to the deterministic action. The
networks have the presets' sizes (three hidden layers, ELU then ReLU, as ACE's), so the comparison with ACE
changes the algorithm and nothing else. TD3 fits no causal model and never resets.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterator

import numpy as np
import torch

from ace_rl.ace import frozen
from ace_rl.hyperparameters import TD3Settings
from ace_rl.networks import DeterministicActor, TwinCritic, standard_normal
from ace_rl.replay import Batch
from ace_rl.rng import agent_generators


def smoothed_target_actions(
    target_actions: torch.Tensor,
    noise: torch.Tensor,
    noise_clip: torch.Tensor,
    action_low: torch.Tensor,
    action_high: torch.Tensor,
) -> torch.Tensor:
    """Target policy smoothing: clip(a' + clip(noise, -c, c), low, high), ``noise`` already scaled."""
    return (target_actions + noise.clamp(-noise_clip, noise_clip)).clamp(action_low, action_high)


def clipped_double_q_target(
    rewards: torch.Tensor, terminated: torch.Tensor, next_q: torch.Tensor, gamma: float
) -> torch.Tensor:
    """r + gamma * (1 - terminated) * min_j Q'_j(s', a~'), ``next_q`` of shape (2, batch)."""
    return rewards + gamma * (1.0 - terminated) * next_q.min(dim=0).values


class TD3:
    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        action_low: np.ndarray,
        action_high: np.ndarray,
        config: TD3Settings,
        device: torch.device,
        seed: int | None = None,
    ) -> None:
        """``seed``: the agent draws from generators of its own, seeded from it (ace_rl.rng.agent_generators); None
        draws from PyTorch's global generator."""
        self.config = config
        self.device = device
        initial: torch.Generator | None = None
        self.generator: torch.Generator | None = None
        if seed is not None:
            initial, self.generator = agent_generators(seed, device)
        low = torch.as_tensor(action_low, dtype=torch.float32)
        high = torch.as_tensor(action_high, dtype=torch.float32)
        self.actor = DeterministicActor(obs_dim, action_dim, config.hidden_size, low, high, initial).to(device)
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.critic = TwinCritic(obs_dim, action_dim, config.hidden_size, initial).to(device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        adam = functools.partial(torch.optim.Adam, lr=config.learning_rate, fused=True)
        self.actor_optimizer = adam(self.actor.parameters())
        self.critic_optimizer = adam(self.critic.parameters())
        self.action_low, self.action_high = low.to(device), high.to(device)
        half_range = self.actor.action_scale
        self.policy_noise = config.policy_noise * half_range
        self.noise_clip = config.noise_clip * half_range
        self.exploration_noise = config.exploration_noise * half_range
        self.updates = 0

    # ----------------------------------------------------------------------------------------------
    # Acting
    # ----------------------------------------------------------------------------------------------
    @torch.inference_mode()
    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        obs_tensor = torch.as_tensor(obs, dtype=torch.float32, device=self.device).unsqueeze(0)
        action = self.actor(obs_tensor)
        if not deterministic:
            noise = standard_normal(action.shape, action, self.generator) * self.exploration_noise
            action = (action + noise).clamp(self.action_low, self.action_high)
        return action[0].cpu().numpy()

    def trained_parameters(self) -> Iterator[tuple[str, torch.Tensor]]:
        yield from (("actor." + name, param) for name, param in self.actor.named_parameters())
        yield from (("critic." + name, param) for name, param in self.critic.named_parameters())
        for prefix, target in (("actor_target.", self.actor_target), ("critic_target.", self.critic_target)):
            yield from ((prefix + name, param) for name, param in target.named_parameters())

    def state_dict(self) -> dict:
        return {
            "actor": self.actor.state_dict(),
            "actor_target": self.actor_target.state_dict(),
            "critic": self.critic.state_dict(),
            "critic_target": self.critic_target.state_dict(),
            "actor_optimizer": self.actor_optimizer.state_dict(),
            "critic_optimizer": self.critic_optimizer.state_dict(),
            "updates": self.updates,
            **({"generator": self.generator.get_state()} if self.generator is not None else {}),
        }

    def load_state_dict(self, state: dict) -> None:
        self.actor.load_state_dict(state["actor"])
        self.actor_target.load_state_dict(state["actor_target"])
        self.critic.load_state_dict(state["critic"])
        self.critic_target.load_state_dict(state["critic_target"])
        self.actor_optimizer.load_state_dict(state["actor_optimizer"])
        self.critic_optimizer.load_state_dict(state["critic_optimizer"])
        self.updates = int(state["updates"])
        if self.generator is not None and "generator" in state:  # absent from checkpoints before it had its own
            self.generator.set_state(state["generator"])

    # ----------------------------------------------------------------------------------------------
    # One TD3 update
    # ----------------------------------------------------------------------------------------------
    def critic_loss(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Q1 loss + Q2 loss against the clipped double-Q target with target policy smoothing."""
        with torch.no_grad():
            noise = standard_normal(batch.actions.shape, batch.actions, self.generator) * self.policy_noise
            next_actions = smoothed_target_actions(
                self.actor_target(batch.next_obs), noise, self.noise_clip, self.action_low, self.action_high
            )
            next_q = self.critic_target(batch.next_obs, next_actions)
            target_q = clipped_double_q_target(batch.rewards, batch.terminated, next_q, self.config.gamma)
        q_values = self.critic(batch.obs, batch.actions)  # (2, batch)
        return ((q_values - target_q) ** 2).mean(dim=1).sum(), q_values.detach()

    def actor_loss(self, obs: torch.Tensor) -> torch.Tensor:
        """-Q_1(s, pi(s)): the deterministic policy gradient through the first critic."""
        return -self.critic(obs, self.actor(obs))[0].mean()

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        self.updates += 1
        # 1. Critic.
        critic_loss, q_values = self.critic_loss(batch)
        self.critic_optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_optimizer.step()
        metrics = {"loss/critic": critic_loss.detach(), "q/mean": q_values.mean()}

        if self.updates % self.config.policy_frequency == 0:
            # 2a. Actor, through the first critic without gradients for the critic's own weights.
            with frozen(self.critic):
                actor_loss = self.actor_loss(batch.obs)
            self.actor_optimizer.zero_grad(set_to_none=True)
            actor_loss.backward()
            self.actor_optimizer.step()
            # 2b. Both targets: Polyak averaging.
            with torch.no_grad():
                for target, online in ((self.actor_target, self.actor), (self.critic_target, self.critic)):
                    torch._foreach_lerp_(list(target.parameters()), list(online.parameters()), self.config.tau)
            metrics["loss/actor"] = actor_loss.detach()
        return metrics
