"""A trained policy outside training: loaded from a run directory or a policy file, it maps observations as the
environment returns them (one, or a batch; Dict observations included) to actions in the environment's units.

    policy = load_policy("runs/reach")            # the run's best.pt; or a best.pt / final.pt file
    action = policy.predict(observation)          # numpy in, numpy out, deterministic by default
    policy.export("reach.onnx")                   # ONNX or TorchScript, checked against predict (ace_rl.export)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, cast

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from ace_rl.agents import PolicyNetwork
from ace_rl.checkpoint import CHECKPOINT_NAMES, CheckpointError, read_policy_file
from ace_rl.envs import EnvFactory, importable_factory, make_env
from ace_rl.export import ExportReport, export_policy
from ace_rl.policy_metadata import ObservationLeaf, PolicyMetadata
from ace_rl.rundir import RunDir
from ace_rl.trust import CodeTrust, env_module


class Policy:
    """The deterministic (or, for Gaussian policies, sampled) action of a trained actor, on numpy arrays."""

    def __init__(self, actor: nn.Module, metadata: PolicyMetadata, path: Path, trust: CodeTrust | None = None) -> None:
        """``trust``: which modules the file's environment id may import when the environment is built
        (ace_rl.trust); predicting and exporting never build it unless it can be built as allowed."""
        self.actor = actor.eval()
        self.metadata = metadata
        self.path = path
        self.trust = CodeTrust.given() if trust is None else trust
        self._flatten: Callable[[Any], np.ndarray] | None = None

    @property
    def env_id(self) -> str:
        return self.metadata.env

    @property
    def env_kwargs(self) -> dict[str, Any]:
        return dict(self.metadata.env_kwargs)

    @property
    def distractor_actions(self) -> int:
        """The last this many action dimensions are distractors the environment ignores (--distractor-actions)."""
        return self.metadata.distractor_actions

    @property
    def observation_size(self) -> int:
        return self.metadata.obs_dim

    @property
    def observation_layout(self) -> list[tuple[tuple[str, ...], int]] | None:
        """The leaves of a Dict observation in the order training flattened them, as (key path, size); None for
        a flat observation, or a policy file written before ace-rl recorded it."""
        leaves = self.metadata.observation_layout
        return None if leaves is None else [(leaf.keys, leaf.size) for leaf in leaves]

    @property
    def observation_leaves(self) -> list[ObservationLeaf] | None:
        """`observation_layout` with each leaf's shape and dtype as the environment returns it (a policy file written
        before they were recorded: a vector of float32)."""
        leaves = self.metadata.observation_layout
        return None if leaves is None else list(leaves)

    @property
    def observation_bounds(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The flat observation space's low and high as training saw it; None for an older policy file."""
        low, high = self.metadata.observation_low, self.metadata.observation_high
        if low is None or high is None:
            return None
        return np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)

    def env_is_allowed(self) -> bool:
        """Whether the policy's own environment may be built: its id imports no module, or one that is trusted; and
        it names no factory that cannot be imported again (a lambda's)."""
        module = env_module(self.env_id)
        if module is None:
            return True
        return self.trust.allows(module) and importable_factory(self.env_id)

    @property
    def action_low(self) -> np.ndarray:
        return np.asarray(self.metadata.action_low, dtype=np.float32)

    @property
    def action_high(self) -> np.ndarray:
        return np.asarray(self.metadata.action_high, dtype=np.float32)

    def make_env(
        self, render_mode: str | None = None, env_id: str | None = None, factory: EnvFactory | None = None
    ) -> gym.Env:
        """The environment the policy was trained on, as training built it (flat observations, its reward, arguments
        and distractor actions): the one way to rebuild it from the policy file's metadata. ``env_id`` or ``factory``
        build another task (or a factory that cannot be imported) with the same reward and arguments.
        ``render_mode="rgb_array"`` (videos) first chooses MuJoCo's OpenGL back-end (ace_rl.video).

        The file's own id is data: building it imports a module only as the policy's trust allows (ace_rl.trust)."""
        if env_id is None and factory is None:
            self.trust.check("env", self.env_id, f"policy file {self.path}")
        if render_mode == "rgb_array":
            from ace_rl.video import check_video_support  # imageio and OpenGL: only for videos

            check_video_support(env_id or self.env_id)
        return make_env(
            env_id or self.env_id,
            reward=self.metadata.reward,
            render_mode=render_mode,
            env_kwargs=self.env_kwargs,
            factory=factory,
            distractor_actions=self.distractor_actions,
        )

    def flatten(self, observation: Any) -> np.ndarray:
        """An observation as training saw it: a Dict observation (one, or a batch as a dict of stacked arrays)
        flattened as ace_rl.envs does, from the layout recorded in the policy file; a flat one as is."""
        if not isinstance(observation, Mapping):
            return _as_floats(observation)
        layout = self.observation_layout
        if layout is not None:
            return _flatten_leaves(observation, layout)
        if self._flatten is None:  # a policy file without the layout: the flattening of its environment's wrappers
            env = self.make_env()
            self._flatten = _observation_flattener(env)
            env.close()
        try:
            return _as_floats(self._flatten(observation))
        except (KeyError, ValueError, TypeError) as error:
            raise ValueError(
                f"Dict observation not as the environment {self.env_id} returns it ({type(error).__name__}: {error})"
            ) from None

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
                raise ValueError(f"the {self.metadata.algo} policy is deterministic; use deterministic=True")
        result = actions.numpy()
        return result[0] if single else result

    def _batch(self, observation: Any) -> np.ndarray:
        if isinstance(observation, Mapping) and self.observation_layout is None:
            flat = self.flatten(observation)
            if flat.size != self.observation_size:  # a batch: a dict of arrays with a leading batch axis
                count = len(next(iter(observation.values())))
                flat = np.stack(
                    [self.flatten({key: value[i] for key, value in observation.items()}) for i in range(count)]
                )
        else:
            flat = self.flatten(observation)
        if flat.ndim not in (1, 2) or flat.shape[-1] != self.observation_size:
            raise ValueError(
                f"observation of shape {flat.shape}; the policy takes {self.observation_size} values, or a batch of "
                f"shape (n, {self.observation_size}) (Dict observations as the environment returns them)"
            )
        if not np.all(np.isfinite(flat)):
            where = np.argwhere(~np.isfinite(flat))[0]
            raise ValueError(
                f"observation holds {flat[tuple(where)]} at index {tuple(int(i) for i in where)}; the policy takes "
                "finite numbers (None becomes nan)"
            )
        return flat

    def export(
        self,
        out: str | Path,
        format: str = "onnx",
        observations: int = 1000,
        flat: bool = False,
        env: EnvFactory | None = None,
    ) -> ExportReport:
        """Write the policy as ONNX or TorchScript and check the file against `predict` (ace_rl.export).

        A Dict observation's policy takes one input per leaf it reads, named as the key (``flat``: one flat vector
        instead). ``env``: a factory of the task whose observations check the file (the one the policy was trained
        with, when it cannot be imported); by default the policy's own task, when it may be built."""
        return export_policy(self, Path(out), format, observations, flat=flat, env=env)

    def __repr__(self) -> str:
        return f"Policy({self.metadata.algo} on {self.env_id}, from {self.path})"


def _as_floats(values: Any) -> np.ndarray:
    try:
        return np.asarray(values, dtype=np.float32)
    except (TypeError, ValueError) as error:
        raise ValueError(f"observation is not an array of numbers ({type(error).__name__}: {error})") from None


def _flatten_leaves(observation: Mapping[str, Any], layout: list[tuple[tuple[str, ...], int]]) -> np.ndarray:
    """A Dict observation (or a batch: every leaf with a leading batch axis) as training's flat vector(s): the
    leaves of ``layout`` in its order, each flattened; keys outside it (a goal task's achieved goal) are ignored."""
    expected = ", ".join("/".join(keys) for keys, _ in layout)
    parts: list[np.ndarray] = []
    batch_sizes: set[int | None] = set()
    for keys, size in layout:
        value: Any = observation
        for depth, key in enumerate(keys):
            if not isinstance(value, Mapping) or key not in value:
                raise ValueError(
                    f"Dict observation lacks {'/'.join(keys[: depth + 1])}; the policy takes the keys {expected}"
                )
            value = value[key]
        leaf = _as_floats(value)
        if leaf.size == size:
            batch_sizes.add(None)
            parts.append(leaf.reshape(1, size))
        elif leaf.ndim >= (1 if size == 1 else 2) and leaf.shape[0] > 0 and leaf.size == leaf.shape[0] * size:
            batch_sizes.add(leaf.shape[0])
            parts.append(leaf.reshape(leaf.shape[0], size))
        else:
            raise ValueError(
                f"Dict observation's {'/'.join(keys)} has shape {leaf.shape}; the policy takes {size} values there "
                f"(or a batch of shape (n, {size}))"
            )
    if len(batch_sizes) > 1:
        raise ValueError(f"Dict observation's leaves disagree on the batch size ({expected})")
    flat = np.concatenate(parts, axis=1)
    return flat[0] if batch_sizes == {None} else flat


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


def load_policy(
    source: str | Path, checkpoint: str = "best", device: str = "cpu", trust_run_code: bool | CodeTrust = False
) -> Policy:
    """The policy of a run directory (its ``checkpoint``: best or final) or of a best.pt / final.pt file.

    The file is data: an agent or environment it names as ``module:NAME`` is imported only with
    ``trust_run_code=True`` (or a module listed in ACE_RL_TRUSTED_MODULES; see ace_rl.trust). A built-in agent's
    policy loads, predicts and exports from the file alone."""
    trust = trust_run_code if isinstance(trust_run_code, CodeTrust) else CodeTrust.given(trust_run_code)
    path = resolve_policy_path(source, checkpoint)
    actor, metadata = read_policy_file(path, device, trust)
    return Policy(actor, metadata, path, trust)
