"""What a policy file (best.pt, final.pt) holds besides the actor's weights: `PolicyMetadata`, read from and written
to the file's plain dict of entries.

Reading it imports nothing: the ids it holds (its environment, its agent) are data, checked against a `CodeTrust`
(ace_rl.trust) only where something is built from them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

REQUIRED_ENTRIES: tuple[str, ...] = ("obs_dim", "action_dim", "hidden_size", "action_low", "action_high", "env", "algo")
"""The entries without which the policy cannot be rebuilt (the others have defaults, for files of older versions)."""


@dataclass(frozen=True)
class ObservationLeaf:
    """One leaf of a Dict observation, as the environment returns it and training flattens it."""

    keys: tuple[str, ...]
    size: int
    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def name(self) -> str:
        """The leaf's key path, as an exported file names its input: ``observation``, ``sensors/joints``."""
        return "/".join(self.keys)

    @staticmethod
    def from_entry(entry: Mapping[str, Any]) -> ObservationLeaf:
        """A leaf as ace_rl.envs.observation_layout writes it; a file written before shape and dtype were recorded
        holds a vector of float32."""
        size = int(entry["size"])
        return ObservationLeaf(
            tuple(str(key) for key in entry["keys"]),
            size,
            tuple(int(length) for length in entry.get("shape", [size])),
            np.dtype(str(entry.get("dtype", "float32"))),
        )

    def to_entry(self) -> dict[str, Any]:
        return {"keys": list(self.keys), "size": self.size, "shape": list(self.shape), "dtype": self.dtype.name}


@dataclass(frozen=True)
class PolicyMetadata:
    """A policy file's entries besides "actor" (the weights), under the names the file uses.

    The agent's registered name (``algo``) rebuilds the policy network from the sizes and action bounds
    (ace_rl.agents.AgentSpec.make_policy); ``env`` with its reward, arguments and distractor actions rebuilds the
    task (ace_rl.policy.Policy.make_env)."""

    env: str
    algo: str
    obs_dim: int
    action_dim: int
    hidden_size: int
    action_low: torch.Tensor
    action_high: torch.Tensor
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    reward: str = "dense"
    seed: int | None = None
    distractor_actions: int = 0
    """The last this many action dimensions are distractors the environment ignores (--distractor-actions)."""
    observation_layout: tuple[ObservationLeaf, ...] | None = None
    """The leaves of a Dict observation in training's order; None for a flat observation, or an older file."""
    observation_low: torch.Tensor | None = None
    observation_high: torch.Tensor | None = None
    """The flat observation space's bounds as training saw them; None in a file older than their recording."""
    env_step: int | None = None
    """The env step the policy was written at."""
    eval_return_mean: float | None = None
    """The evaluation return that made it the best policy; None where it was not evaluated."""

    @staticmethod
    def from_entries(entries: Mapping[str, Any]) -> PolicyMetadata:
        """The metadata of a policy file's entries (today's, or an older version's). KeyError names the first
        required entry missing; TypeError or ValueError an entry of the wrong kind."""
        if not isinstance(entries, Mapping):
            raise TypeError(f"it holds a {type(entries).__name__}, not a dict of entries")
        for name in REQUIRED_ENTRIES:
            if name not in entries:
                raise KeyError(name)
        for name in ("env", "algo", "reward"):
            if name in entries and not isinstance(entries[name], str):
                raise TypeError(f"the {name!r} entry is a {type(entries[name]).__name__}, not a string")
        env_kwargs = entries.get("env_kwargs") or {}
        if not isinstance(env_kwargs, Mapping):
            raise TypeError(f"the 'env_kwargs' entry is a {type(env_kwargs).__name__}, not a dict")
        layout = entries.get("observation_layout")
        eval_return = entries.get("eval_return_mean")
        return PolicyMetadata(
            env=entries["env"],
            algo=entries["algo"],
            obs_dim=int(entries["obs_dim"]),
            action_dim=int(entries["action_dim"]),
            hidden_size=int(entries["hidden_size"]),
            action_low=_floats(entries["action_low"]),
            action_high=_floats(entries["action_high"]),
            env_kwargs=dict(env_kwargs),
            reward=entries.get("reward", "dense"),
            seed=_optional_int(entries.get("seed")),
            distractor_actions=int(entries.get("distractor_actions", 0)),
            # An older file's layout that is not a list reads as none recorded, as it always has.
            observation_layout=tuple(ObservationLeaf.from_entry(leaf) for leaf in layout)
            if isinstance(layout, list)
            else None,
            observation_low=_optional_floats(entries.get("observation_low")),
            observation_high=_optional_floats(entries.get("observation_high")),
            env_step=_optional_int(entries.get("env_step")),
            eval_return_mean=None if eval_return is None else float(eval_return),
        )

    def to_entries(self) -> dict[str, Any]:
        """The file's entries: tensors and plain values, which torch.load(weights_only=True) reads back."""
        return {
            "env": self.env,
            "env_kwargs": dict(self.env_kwargs),
            "reward": self.reward,
            "algo": self.algo,
            "seed": self.seed,
            "distractor_actions": self.distractor_actions,
            "obs_dim": self.obs_dim,
            "action_dim": self.action_dim,
            "hidden_size": self.hidden_size,
            "action_low": self.action_low,
            "action_high": self.action_high,
            "observation_layout": None
            if self.observation_layout is None
            else [leaf.to_entry() for leaf in self.observation_layout],
            "observation_low": self.observation_low,
            "observation_high": self.observation_high,
            "env_step": self.env_step,
            "eval_return_mean": self.eval_return_mean,
        }


def _floats(values: Any) -> torch.Tensor:
    return torch.as_tensor(values, dtype=torch.float32)


def _optional_floats(values: Any) -> torch.Tensor | None:
    return None if values is None else _floats(values)


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)
