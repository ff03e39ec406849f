"""Replay storage: preallocated tensors written in a ring, sampled uniformly.

Each observation is stored once. The next observation of a transition is the observation of the
transition after it, except where an episode ended (terminated or truncated): that final observation is
never the start of another transition, so it goes to a ring of its own, ``final_obs``, whose rows are
written only at episode ends. The next observation of the newest transition is held aside until the
following transition arrives.

The latest ``n`` transitions, in the order they were collected, are also what the causal model is fitted
on, so ACE needs no second buffer for its causal samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Batch:
    """Transitions drawn uniformly from the replay buffer: what an agent's ``update`` gets. Every field is a float32
    tensor on the run's device."""

    obs: torch.Tensor
    """(batch, obs_dim): the observations, flat as the agent sees them (a Dict observation flattened)."""
    actions: torch.Tensor
    """(batch, action_dim): the actions taken, in the environment's units (within its bounds, not rescaled)."""
    rewards: torch.Tensor
    """(batch,): the rewards."""
    next_obs: torch.Tensor
    """(batch, obs_dim): the next observations (an episode's final observation where it ended)."""
    terminated: torch.Tensor
    """(batch,): 1.0 where the episode ended in a terminal state (no bootstrapping), else 0.0; a float, so that
    ``1 - terminated`` masks the bootstrap. A time limit (truncation) is not terminal."""


def bytes_per_transition(obs_dim: int, action_dim: int, episode_length: float) -> float:
    """Memory of one stored transition, the final observation of each episode shared over its steps."""
    float_bytes = 4
    per_step = (obs_dim + action_dim + 1) * float_bytes + 2 + 4  # + terminated, episode_end, final_index
    return per_step + obs_dim * float_bytes / episode_length


def allocated_bytes(capacity: int, obs_dim: int, action_dim: int) -> int:
    """What a `ReplayBuffer` of ``capacity`` allocates: every row of its storage, the final observations' ring
    included (mapped into memory only as it is written)."""
    float_bytes = 4
    return capacity * ((2 * obs_dim + action_dim + 1) * float_bytes + 1 + 1 + 4)


class ReplayBuffer:
    def __init__(self, capacity: int, obs_dim: int, action_dim: int, seed: int) -> None:
        self.capacity = capacity
        # Uninitialised storage: the operating system maps memory in only as rows are first written, so a
        # short run with a large capacity costs what it stores. Only written rows are ever read.
        self.obs = torch.empty((capacity, obs_dim), dtype=torch.float32)
        self.actions = torch.empty((capacity, action_dim), dtype=torch.float32)
        self.rewards = torch.empty(capacity, dtype=torch.float32)
        self.terminated = torch.empty(capacity, dtype=torch.bool)
        self.episode_end = torch.empty(capacity, dtype=torch.bool)
        # By the time `capacity` episodes have ended, every transition pointing at the oldest row is gone.
        self.final_obs = torch.empty((capacity, obs_dim), dtype=torch.float32)
        self.final_index = torch.empty(capacity, dtype=torch.int32)
        self.final_position = 0
        self.final_count = 0
        self.pending_next_obs = torch.zeros(obs_dim, dtype=torch.float32)
        self.position = 0  # where the next transition goes
        self.size = 0
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return self.size

    @property
    def newest(self) -> int:
        return (self.position - 1) % self.capacity

    def add(
        self,
        obs: np.ndarray,
        action: np.ndarray,
        reward: float,
        next_obs: np.ndarray,
        terminated: bool,
        truncated: bool = False,
    ) -> None:
        """Store one transition. ``obs`` must be the previous transition's ``next_obs`` within an episode.

        A truncated (timed-out) episode keeps terminated=False: its value is bootstrapped.
        """
        index = self.position
        self.obs[index] = torch.from_numpy(np.asarray(obs, dtype=np.float32))
        self.actions[index] = torch.from_numpy(np.asarray(action, dtype=np.float32))
        self.rewards[index] = float(reward)
        self.terminated[index] = bool(terminated)
        self.episode_end[index] = False
        self.pending_next_obs = torch.from_numpy(np.asarray(next_obs, dtype=np.float32)).clone()
        self.position = (index + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)
        if terminated or truncated:
            self.end_episode()

    def end_episode(self) -> None:
        """Mark the newest transition as the last of its episode (also used when a run resumes mid-episode)."""
        if self.size == 0 or self.episode_end[self.newest]:
            return
        self.final_obs[self.final_position] = self.pending_next_obs
        self.final_index[self.newest] = self.final_position
        self.episode_end[self.newest] = True
        self.final_position = (self.final_position + 1) % self.capacity
        self.final_count = min(self.final_count + 1, self.capacity)

    def next_observations(self, indices: torch.Tensor) -> torch.Tensor:
        following = self.obs[(indices + 1) % self.capacity]
        following[indices == self.newest] = self.pending_next_obs
        ends = self.episode_end[indices]
        following[ends] = self.final_obs[self.final_index[indices[ends]].long()]
        return following

    def sample(self, batch_size: int, device: torch.device | str = "cpu") -> Batch:
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        indices = torch.randint(0, self.size, (batch_size,), generator=self.generator)
        return Batch(
            obs=self.obs[indices].to(device, non_blocking=True),
            actions=self.actions[indices].to(device, non_blocking=True),
            rewards=self.rewards[indices].to(device, non_blocking=True),
            next_obs=self.next_observations(indices).to(device, non_blocking=True),
            terminated=self.terminated[indices].float().to(device, non_blocking=True),
        )

    def state_dict(self) -> dict:
        """The stored transitions (only the filled rows), the write positions and the sampling RNG."""

        def rows(tensor: torch.Tensor, count: int) -> torch.Tensor:
            # torch.save writes a view's whole storage: copy a partly filled ring's rows, not the empty rest.
            return tensor if count == tensor.shape[0] else tensor[:count].clone()

        return {
            "capacity": self.capacity,
            "obs": rows(self.obs, self.size),
            "actions": rows(self.actions, self.size),
            "rewards": rows(self.rewards, self.size),
            "terminated": rows(self.terminated, self.size),
            "episode_end": rows(self.episode_end, self.size),
            "final_index": rows(self.final_index, self.size),
            "final_obs": rows(self.final_obs, self.final_count),
            "final_position": self.final_position,
            "final_count": self.final_count,
            "pending_next_obs": self.pending_next_obs.clone(),
            "position": self.position,
            "size": self.size,
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        if state["capacity"] != self.capacity:
            raise ValueError(f"replay capacity {self.capacity} differs from the checkpoint's {state['capacity']}")
        size, final_count = int(state["size"]), int(state["final_count"])
        for name in ("obs", "actions", "rewards", "terminated", "episode_end", "final_index"):
            getattr(self, name)[:size] = state[name]
        self.final_obs[:final_count] = state["final_obs"]
        self.final_position = int(state["final_position"])
        self.final_count = final_count
        self.pending_next_obs = state["pending_next_obs"].clone()
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
