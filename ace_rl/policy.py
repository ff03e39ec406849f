"""A trained policy outside training: loaded from a run directory or a policy file, it maps observations as the
environment returns them (one, or a batch; Dict observations included) to actions in the environment's units.

    policy = load_policy("runs/reach")            # the run's best.pt; or a best.pt / final.pt file
    action = policy.predict(observation)          # numpy in, numpy out, deterministic by default
    policy.export("reach.onnx")                   # ONNX or TorchScript, checked against predict (ace_rl.export)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from ace_rl.agents import PolicyNetwork
from ace_rl.checkpoint import CHECKPOINT_NAMES, CheckpointError
from ace_rl.checkpoint import load_policy as load_policy_file
from ace_rl.envs import EnvFactory, make_env
from ace_rl.rundir import RunDir

if TYPE_CHECKING:
    from ace_rl.export import ExportReport


class Policy:
    """The deterministic (or, for Gaussian policies, sampled) action of a trained actor, on numpy arrays."""

    def __init__(self, actor: nn.Module, metadata: dict[str, Any], path: Path) -> None:
        self.actor = actor.eval()
        self.metadata = metadata
        self.path = path
        self._flatten: Callable[[Any], np.ndarray] | None = None

    @property
    def env_id(self) -> str:
        return str(self.metadata["env"])

    @property
    def env_kwargs(self) -> dict[str, Any]:
        return dict(self.metadata.get("env_kwargs") or {})

    @property
    def distractor_actions(self) -> int:
        """The last this many action dimensions are distractors the environment ignores (--distractor-actions)."""
        return int(self.metadata.get("distractor_actions", 0))

    @property
    def observation_size(self) -> int:
        return int(self.metadata["obs_dim"])

    @property
    def action_low(self) -> np.ndarray:
        return np.asarray(self.metadata["action_low"], dtype=np.float32)

    @property
    def action_high(self) -> np.ndarray:
        return np.asarray(self.metadata["action_high"], dtype=np.float32)

    def make_env(
        self, render_mode: str | None = None, env_id: str | None = None, factory: EnvFactory | None = None
    ) -> gym.Env:
        """The environment the policy was trained on, as training built it (flat observations); ``env_id`` or
        ``factory`` build another task (or a factory that cannot be imported) with the same reward and arguments."""
        return make_env(
            env_id or self.env_id,
            reward=self.metadata.get("reward", "dense"),
            render_mode=render_mode,
            env_kwargs=self.env_kwargs,
            factory=factory,
            distractor_actions=self.distractor_actions,
        )

    def flatten(self, observation: Any) -> np.ndarray:
        """An observation as training saw it: a Dict observation flattened as ace_rl.envs does, a flat one as is."""
        if not isinstance(observation, dict):
            return np.asarray(observation, dtype=np.float32)
        if self._flatten is None:
            env = self.make_env()
            self._flatten = _observation_flattener(env)
            env.close()
        return np.asarray(self._flatten(observation), dtype=np.float32)

    def predict(self, observation: Any, deterministic: bool = True) -> np.ndarray:
        """The action for one observation (shape (obs,)) or a batch (shape (n, obs)), in the env's units.

        A Dict observation (as the environment returns it) is flattened as in training; a batch of Dict
        observations is a dict of stacked arrays. ``deterministic=False`` draws from a Gaussian policy (ACE, SAC).
        """
        flat = self._batch(observation)
        single = flat.ndim == 1
        with torch.no_grad():
            obs = torch.as_tensor(flat[None] if single else flat, dtype=torch.float32)
            sample_action = getattr(self.actor, "sample_action", None)  # Gaussian policies (ACE, SAC) only
            if deterministic:
                actions = cast(PolicyNetwork, self.actor).deterministic(obs)
            elif sample_action is not None:
                actions = sample_action(obs)
            else:
                raise ValueError(f"the {self.metadata.get('algo', '')} policy is deterministic; use deterministic=True")
        result = actions.numpy()
        return result[0] if single else result

    def _batch(self, observation: Any) -> np.ndarray:
        if isinstance(observation, dict):
            flat = self.flatten(observation)
            if flat.size != self.observation_size:  # a batch: a dict of arrays with a leading batch axis
                count = len(next(iter(observation.values())))
                flat = np.stack(
                    [self.flatten({key: value[i] for key, value in observation.items()}) for i in range(count)]
                )
        else:
            flat = np.asarray(observation, dtype=np.float32)
        if flat.ndim not in (1, 2) or flat.shape[-1] != self.observation_size:
            raise ValueError(
                f"observation of shape {flat.shape}; the policy takes {self.observation_size} values, or a batch of "
                f"shape (n, {self.observation_size}) (Dict observations as the environment returns them)"
            )
        return flat

    def export(self, out: str | Path, format: str = "onnx", observations: int = 1000) -> ExportReport:
        """Write the policy as ONNX or TorchScript and check the file against `predict` (ace_rl.export)."""
        from ace_rl.export import export_policy

        return export_policy(self, Path(out), format, observations)

    def __repr__(self) -> str:
        return f"Policy({self.metadata.get('algo', '?')} on {self.env_id}, from {self.path})"


def _observation_flattener(env: gym.Env) -> Callable[[Any], np.ndarray]:
    """The observation() of the wrappers make_env put between the raw environment and the agent."""
    wrappers = []
    while isinstance(env, gym.Wrapper):
        if isinstance(env, gym.ObservationWrapper):
            wrappers.append(env)
        env = env.env
    wrappers.reverse()  # innermost first

    def flatten(observation: Any) -> np.ndarray:
        for wrapper in wrappers:
            observation = wrapper.observation(observation)
        return observation

    return flatten


def resolve_policy_path(source: str | Path, checkpoint: str = "best") -> Path:
    """A run directory's best.pt / final.pt, or a policy file given directly."""
    path = Path(source)
    if path.is_dir():
        if checkpoint not in CHECKPOINT_NAMES:
            raise CheckpointError(f"unknown checkpoint {checkpoint!r}; accepted: {', '.join(CHECKPOINT_NAMES)}")
        return RunDir(path).policy(checkpoint)
    if path.exists():
        return path
    raise CheckpointError(f"no run directory or policy file at {path}")


def load_policy(source: str | Path, checkpoint: str = "best", device: str = "cpu") -> Policy:
    """The policy of a run directory (its ``checkpoint``: best or final) or of a best.pt / final.pt file."""
    path = resolve_policy_path(source, checkpoint)
    actor, metadata = load_policy_file(path, device)
    return Policy(actor, metadata, path)
