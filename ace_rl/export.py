"""A trained policy as a file that runs without ace-rl: ONNX (onnxruntime, any language) or TorchScript (libtorch).

The exported graph maps a batch of observations to the deterministic action in the environment's units: the
network, the tanh squash and the rescaling to the action bounds, ``low + (tanh(u) + 1) / 2 * (high - low)``. A
Box observation is one input, ``observation`` of shape (batch, n). A Dict observation is one input per leaf the
policy reads, named as its key (``observation``, ``desired_goal``; ``outer/inner`` for a nested Dict), of shape
(batch, *leaf shape) and the leaf's dtype, and the graph flattens them in training's order, so that deployment code
passes the environment's dict as it is, with a batch axis; ``flat=True`` keeps the one flat input instead.

An ONNX file carries what a deployer needs as metadata (`metadata`: ``session.get_modelmeta().custom_metadata_map``
in onnxruntime); a TorchScript file the same as the extra file ``ace_rl.json``.

Before anything is written, the file's own runtime (onnxruntime, or torch.jit.load) is run on observations drawn
from the run's environment and compared with `ace_rl.policy.Policy.predict`; the export fails, writing nothing,
when they differ by more than `TOLERANCE`.
"""

from __future__ import annotations

import importlib
import importlib.util
import io
import json
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from ace_rl.agents import PolicyNetwork
from ace_rl.envs import EnvFactory, seed_env
from ace_rl.errors import AceRlError
from ace_rl.extras import install_hint, missing_modules
from ace_rl.policy_metadata import ObservationLeaf, PolicyMetadata
from ace_rl.rundir import write_atomically
from ace_rl.user_code import describe_error

EXPORT_FORMATS: tuple[str, ...] = ("onnx", "torchscript")
TOLERANCE = 1e-5
EXTRA_HINT = install_hint("export")
INPUT_NAME, OUTPUT_NAME = "observation", "action"
ONNX_OPSET = 17
TORCHSCRIPT_METADATA = "ace_rl.json"  # the extra file of a TorchScript export that holds `metadata`


class ExportError(AceRlError, ValueError):
    """The policy cannot be exported: an unknown format, a missing extra, or an export that does not match."""


class ExportablePolicy(Protocol):
    """What an export reads of a policy: ace_rl.policy.Policy, which calls the export (so this module does not
    import it)."""

    actor: nn.Module
    metadata: PolicyMetadata

    @property
    def env_id(self) -> str: ...

    @property
    def env_kwargs(self) -> dict[str, Any]: ...

    @property
    def observation_size(self) -> int: ...

    @property
    def observation_leaves(self) -> list[ObservationLeaf] | None: ...

    @property
    def observation_bounds(self) -> tuple[np.ndarray, np.ndarray] | None: ...

    @property
    def action_low(self) -> np.ndarray: ...

    @property
    def action_high(self) -> np.ndarray: ...

    def env_is_allowed(self) -> bool: ...

    def make_env(
        self, render_mode: str | None = None, env_id: str | None = None, factory: EnvFactory | None = None
    ) -> gym.Env: ...

    def predict(self, observation: Any, deterministic: bool = True) -> np.ndarray: ...


@dataclass(frozen=True)
class ExportReport:
    path: Path
    format: str
    observations: int
    """How many observations the check compared."""
    max_difference: float
    """The largest absolute difference between the exported file's actions and Policy.predict."""
    observation_source: str = "of the run's environment"
    """Where the checked observations came from: the run's environment, or drawn from the recorded observation
    space (when building the environment would import a module that is not trusted)."""
    inputs: tuple[str, ...] = (INPUT_NAME,)
    """The file's input names, in the order the graph flattens them."""


@dataclass(frozen=True)
class GraphInput:
    """One input of the exported graph: its name, the shape of one observation's part, and its dtype."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


def graph_inputs(policy: ExportablePolicy, flat: bool = False) -> list[GraphInput]:
    """The inputs of ``policy``'s exported graph: one per Dict leaf it reads, or one flat vector (``flat``, a Box
    observation, or a policy file written before ace-rl recorded the Dict's layout)."""
    leaves: list[ObservationLeaf] | None = policy.observation_leaves
    if flat or leaves is None:
        return [GraphInput(INPUT_NAME, (policy.observation_size,), np.dtype(np.float32))]
    return [GraphInput(leaf.name, leaf.shape, leaf.dtype) for leaf in leaves]


class DeterministicAction(nn.Module):
    """The exported graph: observations in (one flat batch, or one batch per Dict leaf, flattened and concatenated
    here as in training), the deterministic action in the environment's units out."""

    def __init__(self, actor: nn.Module, sizes: list[int]) -> None:
        super().__init__()
        self.actor = actor
        self.sizes = sizes

    def forward(self, *observations: torch.Tensor) -> torch.Tensor:
        flat = torch.cat(
            [part.reshape(part.shape[0], size).float() for part, size in zip(observations, self.sizes)], dim=1
        )
        return cast(PolicyNetwork, self.actor).deterministic(flat)


def metadata(policy: ExportablePolicy, inputs: list[GraphInput]) -> dict[str, str]:
    """What a deployer needs to know of the file, as strings (ONNX metadata_props; JSON where not a plain string)."""
    from ace_rl import __version__

    return {
        "ace_rl_version": __version__,
        "env": policy.env_id,
        "env_kwargs": json.dumps(policy.env_kwargs),
        "algo": policy.metadata.algo,
        "action_low": json.dumps(policy.action_low.tolist()),
        "action_high": json.dumps(policy.action_high.tolist()),
        "observation_keys": json.dumps([graph_input.name for graph_input in inputs]),
        "observation_inputs": json.dumps(
            [{"name": item.name, "shape": list(item.shape), "dtype": item.dtype.name} for item in inputs]
        ),
        "observation_flattening": (
            "each input raveled, cast to float32 and concatenated in the order of observation_keys (done inside "
            "this graph); a Dict's other keys (a goal task's achieved_goal) are not read"
        ),
        "output": f"{OUTPUT_NAME}: the deterministic action in the environment's units, shape (batch, "
        f"{policy.action_low.size})",
    }


def split_observations(flat: np.ndarray, inputs: list[GraphInput]) -> dict[str, np.ndarray]:
    """Flat observations (batch, n) as the graph's inputs: the inverse of its flattening."""
    parts: dict[str, np.ndarray] = {}
    offset = 0
    for graph_input in inputs:
        part = flat[:, offset : offset + graph_input.size]
        parts[graph_input.name] = part.reshape(len(flat), *graph_input.shape).astype(graph_input.dtype)
        offset += graph_input.size
    return parts


def sample_observations(
    policy: ExportablePolicy, count: int, seed: int = 0, factory: EnvFactory | None = None
) -> tuple[np.ndarray, str]:
    """``count`` observations for the check, and where they come from: the policy's environment (or ``factory``'s),
    visited by the policy with every other action random (so that the check covers more than the policy's own path);
    or, when that environment would import a module the policy's trust does not allow, or is a factory that cannot be
    imported and none is given, drawn from the recorded observation space."""
    if factory is not None:
        return environment_observations(policy, count, seed, factory), "of the given environment"
    if not policy.env_is_allowed():
        return drawn_observations(policy, count, seed), "drawn from the recorded observation space"
    return environment_observations(policy, count, seed), "of the run's environment"


def drawn_observations(policy: ExportablePolicy, count: int, seed: int = 0) -> np.ndarray:
    """``count`` observations drawn from the policy file's observation space: uniform within finite bounds, standard
    normal around zero (or beyond the one finite bound) where a bound is infinite, as MuJoCo's are; standard normal
    everywhere for a policy file that predates recording the bounds."""
    rng = np.random.default_rng(seed)
    size = policy.observation_size
    bounds = policy.observation_bounds
    low, high = bounds if bounds is not None else (np.full(size, -np.inf), np.full(size, np.inf))
    drawn = rng.standard_normal((count, size))
    uniform = rng.random((count, size))
    finite_low, finite_high = np.isfinite(low), np.isfinite(high)
    both = finite_low & finite_high
    drawn[:, both] = low[both] + uniform[:, both] * (high[both] - low[both])
    only_low = finite_low & ~finite_high
    drawn[:, only_low] = low[only_low] + np.abs(drawn[:, only_low])
    only_high = finite_high & ~finite_low
    drawn[:, only_high] = high[only_high] - np.abs(drawn[:, only_high])
    return drawn.astype(np.float32)


def environment_observations(
    policy: ExportablePolicy, count: int, seed: int = 0, factory: EnvFactory | None = None
) -> np.ndarray:
    """``count`` observations of the policy's own environment, or ``factory``'s (see sample_observations)."""
    env = policy.make_env(factory=factory)
    rng = np.random.default_rng(seed)
    try:
        observation = seed_env(env, seed)
        observations: list[np.ndarray] = []
        while len(observations) < count:
            observations.append(np.asarray(observation, dtype=np.float32))
            action = env.action_space.sample() if rng.random() < 0.5 else policy.predict(observation)
            observation, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                observation, _ = env.reset()
    finally:
        env.close()
    return np.stack(observations)


Runner = Callable[[Mapping[str, np.ndarray]], np.ndarray]


def _example_inputs(inputs: list[GraphInput]) -> tuple[torch.Tensor, ...]:
    return tuple(torch.from_numpy(np.zeros((1, *item.shape), dtype=item.dtype)) for item in inputs)


def _onnx_bytes(module: nn.Module, inputs: list[GraphInput], properties: dict[str, str]) -> bytes:
    import onnx

    buffer = io.BytesIO()
    names = [item.name for item in inputs]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter announces its deprecation
        torch.onnx.export(
            module,
            _example_inputs(inputs),
            buffer,  # type: ignore[arg-type]  # the stubs say a path; this (TorchScript-based) exporter takes a file
            input_names=names,
            output_names=[OUTPUT_NAME],
            dynamic_axes={name: {0: "batch"} for name in [*names, OUTPUT_NAME]},
            opset_version=ONNX_OPSET,
            dynamo=False,
        )
    model = onnx.load_from_string(buffer.getvalue())
    onnx.helper.set_model_props(model, properties)
    return model.SerializeToString()


def _onnx_runner(data: bytes) -> Runner:
    import onnxruntime

    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    return lambda observations: session.run([OUTPUT_NAME], dict(observations))[0]


def _torchscript_bytes(module: nn.Module, inputs: list[GraphInput], properties: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    traced = torch.jit.trace(module, _example_inputs(inputs))
    torch.jit.save(traced, buffer, _extra_files={TORCHSCRIPT_METADATA: json.dumps(properties)})
    return buffer.getvalue()


def _torchscript_runner(data: bytes, inputs: list[GraphInput]) -> Runner:
    loaded = torch.jit.load(io.BytesIO(data))

    def run(observations: Mapping[str, np.ndarray]) -> np.ndarray:
        with torch.no_grad():
            return loaded(*(torch.as_tensor(observations[item.name]) for item in inputs)).numpy()

    return run


def check_format(format: str) -> None:
    """Refuse an unknown format, or ONNX without the export extra, in one line."""
    if format not in EXPORT_FORMATS:
        raise ExportError(f"unknown export format {format!r}; accepted: {', '.join(EXPORT_FORMATS)}")
    missing = missing_modules("onnx", "onnxruntime")
    if format == "onnx" and missing:
        raise ExportError(f"ONNX export needs {' and '.join(missing)}, not installed; install with: {EXTRA_HINT}")
    if format == "onnx":
        for module in ("onnx", "onnxruntime"):
            try:
                importlib.import_module(module)
            except Exception as error:  # a broken install raises anything: ImportError, OSError, ...
                spec = importlib.util.find_spec(module)
                where = f" at {spec.origin}" if spec is not None and spec.origin else ""
                raise ExportError(
                    f"ONNX export needs {module}, but the {module}{where} fails to import ({describe_error(error)}); "
                    f"repair or remove it, then: {EXTRA_HINT}"
                ) from error


def export_policy(
    policy: ExportablePolicy,
    out: Path,
    format: str = "onnx",
    observations: int = 1000,
    flat: bool = False,
    env: EnvFactory | None = None,
) -> ExportReport:
    """Export ``policy`` to ``out``, having checked the exported graph against ``policy.predict`` first.

    ``flat``: one flat input for a Dict observation too. ``env``: a factory whose environment gives the checked
    observations (a policy trained from a factory that cannot be imported)."""
    check_format(format)
    if observations < 1:
        raise ExportError(f"the check needs at least one observation, got {observations}")
    if env is not None and not callable(env):
        raise ExportError(f"env must be a callable that returns a gymnasium.Env, got {type(env).__name__}")
    inputs = graph_inputs(policy, flat)
    module = DeterministicAction(policy.actor.cpu(), [item.size for item in inputs]).eval()
    properties = metadata(policy, inputs)
    run: Runner
    if format == "onnx":
        data = _onnx_bytes(module, inputs, properties)
        run = _onnx_runner(data)
    else:
        data = _torchscript_bytes(module, inputs, properties)
        run = _torchscript_runner(data, inputs)
    try:
        sample, source = sample_observations(policy, observations, factory=env)
    except Exception as error:  # the run's environment may fail in any way
        raise ExportError(
            f"the check of the export could not draw observations from {policy.env_id} "
            f"({describe_error(error)}); nothing was written"
        ) from error
    if not np.all(np.isfinite(sample)):
        raise ExportError(
            f"the check of the export drew observations of {policy.env_id} that are not finite (NaN or infinite): "
            "the environment's fault, not the export's; nothing was written"
        )
    difference = float(np.max(np.abs(run(split_observations(sample, inputs)) - policy.predict(sample))))
    if not difference <= TOLERANCE:
        raise ExportError(
            f"the exported {format} policy differs from Policy.predict by up to {difference:.3g} on {len(sample)} "
            f"observations {source} ({policy.env_id}; tolerance {TOLERANCE:g}); nothing was written"
        )
    write_atomically(out, lambda file: file.write(data))
    return ExportReport(out, format, len(sample), difference, source, tuple(item.name for item in inputs))
