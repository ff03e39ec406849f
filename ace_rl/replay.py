"""Replay storage: preallocated tensors written in a ring, sampled uniformly.

The latest ``n`` transitions, in the order they were collected, are also what the causal model is fitted
on, so ACE needs no second buffer for its causal samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Batch:
    obs: torch.Tensor  # (batch, obs_dim)
    actions: torch.Tensor  # (batch, action_dim)
    rewards: torch.Tensor  # (batch,)
    next_obs: torch.Tensor  # (batch, obs_dim)
    terminated: torch.Tensor  # (batch,) 1.0 where the episode ended in a terminal state: no bootstrapping


class ReplayBuffer:
    def __init__(self, capacity: int, obs_dim: int, action_dim: int, seed: int) -> None:
        self.capacity = capacity
        self.obs = torch.zeros((capacity, obs_dim), dtype=torch.float32)
        self.next_obs = torch.zeros((capacity, obs_dim), dtype=torch.float32)
        self.actions = torch.zeros((capacity, action_dim), dtype=torch.float32)
        self.rewards = torch.zeros(capacity, dtype=torch.float32)
        self.terminated = torch.zeros(capacity, dtype=torch.float32)
        self.position = 0  # where the next transition goes
        self.size = 0
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return self.size

    def add(
        self, obs: np.ndarray, action: np.ndarray, reward: float, next_obs: np.ndarray, terminated: bool
    ) -> None:
        """Store one transition. A truncated (timed-out) episode is stored with terminated=False."""
        index = self.position
        self.obs[index] = torch.from_numpy(np.asarray(obs, dtype=np.float32))
        self.next_obs[index] = torch.from_numpy(np.asarray(next_obs, dtype=np.float32))
        self.actions[index] = torch.from_numpy(np.asarray(action, dtype=np.float32))
        self.rewards[index] = float(reward)
        self.terminated[index] = float(terminated)
        self.position = (index + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size: int, device: torch.device | str = "cpu") -> Batch:
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        indices = torch.randint(0, self.size, (batch_size,), generator=self.generator)
        return Batch(
            obs=self.obs[indices].to(device, non_blocking=True),
            actions=self.actions[indices].to(device, non_blocking=True),
            rewards=self.rewards[indices].to(device, non_blocking=True),
            next_obs=self.next_obs[indices].to(device, non_blocking=True),
            terminated=self.terminated[indices].to(device, non_blocking=True),
        )

    def state_dict(self) -> dict:
        """The stored transitions (only the filled rows), the write position and the sampling RNG."""
        def filled(tensor: torch.Tensor) -> torch.Tensor:
            # torch.save writes a view's whole storage: copy a partly filled buffer's rows, not the empty rest.
            return tensor if self.size == self.capacity else tensor[: self.size].clone()

        return {
            "capacity": self.capacity,
            "obs": filled(self.obs),
            "next_obs": filled(self.next_obs),
            "actions": filled(self.actions),
            "rewards": filled(self.rewards),
            "terminated": filled(self.terminated),
            "position": self.position,
            "size": self.size,
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        if state["capacity"] != self.capacity:
            raise ValueError(f"replay capacity {self.capacity} differs from the checkpoint's {state['capacity']}")
        size = int(state["size"])
        for name in ("obs", "next_obs", "actions", "rewards", "terminated"):
            getattr(self, name)[:size] = state[name]
        self.position = int(state["position"])
        self.size = size
        self.generator.set_state(state["generator"])

    def latest(self, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """States, actions and rewards of the latest ``count`` transitions, oldest first."""
        if count > self.size:
            raise ValueError(f"asked for the latest {count} transitions, but only {self.size} are stored")
        indices = (torch.arange(self.position - count, self.position)) % self.capacity
        return (
            self.obs[indices].numpy().astype(np.float64),
            self.actions[indices].numpy().astype(np.float64),
            self.rewards[indices].numpy().astype(np.float64),
        )
