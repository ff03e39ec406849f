"""A trained policy as a file that runs without ace-rl: ONNX (onnxruntime, any language) or TorchScript (libtorch).

The exported graph maps a batch of flat observations (Dict observations flattened as in training) to the
deterministic action in the environment's units: the network, the tanh squash and the rescaling to the action
bounds, ``low + (tanh(u) + 1) / 2 * (high - low)``. Before anything is written, the file's own runtime
(onnxruntime, or torch.jit.load) is run on observations drawn from the run's environment and compared with
`ace_rl.policy.Policy.predict`; the export fails, writing nothing, when they differ by more than
`TOLERANCE`.
"""

from __future__ import annotations

import importlib
import importlib.util
import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np
import torch
from torch import nn

from ace_rl.agents import PolicyNetwork
from ace_rl.envs import seed_env
from ace_rl.extras import install_hint, missing_modules
from ace_rl.rundir import write_atomically
from ace_rl.user_code import describe_error

if TYPE_CHECKING:
    from ace_rl.policy import Policy

EXPORT_FORMATS: tuple[str, ...] = ("onnx", "torchscript")
TOLERANCE = 1e-5
EXTRA_HINT = install_hint("export")
INPUT_NAME, OUTPUT_NAME = "observation", "action"
ONNX_OPSET = 17


class ExportError(ValueError):
    """The policy cannot be exported: an unknown format, a missing extra, or an export that does not match."""


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


class DeterministicAction(nn.Module):
    """The exported graph: observations in, the deterministic action in the environment's units out."""

    def __init__(self, actor: nn.Module) -> None:
        super().__init__()
        self.actor = actor

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        return cast(PolicyNetwork, self.actor).deterministic(observation)


def sample_observations(policy: Policy, count: int, seed: int = 0) -> tuple[np.ndarray, str]:
    """``count`` observations for the check, and where they come from: the policy's environment, visited by the
    policy with every other action random (so that the check covers more than the policy's own path); or, when that
    environment would import a module the policy's trust does not allow, drawn from the recorded observation space."""
    if not policy.env_is_allowed():
        return drawn_observations(policy, count, seed), "drawn from the recorded observation space"
    return environment_observations(policy, count, seed), "of the run's environment"


def drawn_observations(policy: Policy, count: int, seed: int = 0) -> np.ndarray:
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


def environment_observations(policy: Policy, count: int, seed: int = 0) -> np.ndarray:
    """``count`` observations of the policy's own environment (see sample_observations)."""
    env = policy.make_env()
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


def _onnx_bytes(module: nn.Module, observation_size: int) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter announces its deprecation
        torch.onnx.export(
            module,
            (torch.zeros(1, observation_size),),
            buffer,  # type: ignore[arg-type]  # the stubs say a path; this (TorchScript-based) exporter takes a file
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=ONNX_OPSET,
            dynamo=False,
        )
    return buffer.getvalue()


def _onnx_runner(data: bytes) -> Callable[[np.ndarray], np.ndarray]:
    import onnxruntime

    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    return lambda observations: session.run([OUTPUT_NAME], {INPUT_NAME: observations})[0]


def _torchscript_bytes(module: nn.Module, observation_size: int) -> bytes:
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.trace(module, torch.zeros(1, observation_size)), buffer)
    return buffer.getvalue()


def _torchscript_runner(data: bytes) -> Callable[[np.ndarray], np.ndarray]:
    loaded = torch.jit.load(io.BytesIO(data))

    def run(observations: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return loaded(torch.as_tensor(observations)).numpy()

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
            except Exception as error:  # noqa: BLE001 - a broken install raises anything: ImportError, OSError, ...
                spec = importlib.util.find_spec(module)
                where = f" at {spec.origin}" if spec is not None and spec.origin else ""
                raise ExportError(
                    f"ONNX export needs {module}, but the {module}{where} fails to import ({describe_error(error)}); "
                    f"repair or remove it, then: {EXTRA_HINT}"
                ) from error


def export_policy(policy: Policy, out: Path, format: str = "onnx", observations: int = 1000) -> ExportReport:
    """Export ``policy`` to ``out``, having checked the exported graph against ``policy.predict`` first."""
    check_format(format)
    if observations < 1:
        raise ExportError(f"the check needs at least one observation, got {observations}")
    module = DeterministicAction(policy.actor.cpu()).eval()
    if format == "onnx":
        data = _onnx_bytes(module, policy.observation_size)
        run = _onnx_runner(data)
    else:
        data = _torchscript_bytes(module, policy.observation_size)
        run = _torchscript_runner(data)
    try:
        sample, source = sample_observations(policy, observations)
    except Exception as error:  # noqa: BLE001 - the run's environment may fail in any way
        raise ExportError(
            f"the check of the export could not draw observations from {policy.env_id} "
            f"({describe_error(error)}); nothing was written"
        ) from error
    if not np.all(np.isfinite(sample)):
        raise ExportError(
            f"the check of the export drew observations of {policy.env_id} that are not finite (NaN or infinite): "
            "the environment's fault, not the export's; nothing was written"
        )
    difference = float(np.max(np.abs(run(sample) - policy.predict(sample))))
    if not difference <= TOLERANCE:
        raise ExportError(
            f"the exported {format} policy differs from Policy.predict by up to {difference:.3g} on {len(sample)} "
            f"observations {source} ({policy.env_id}; tolerance {TOLERANCE:g}); nothing was written"
        )
    write_atomically(out, lambda file: file.write(data))
    return ExportReport(out, format, len(sample), difference, source)
