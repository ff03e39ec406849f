"""What the training loop asks of an agent, and the one registry that maps ``--algo`` to an agent.

An algorithm is one file: a class that satisfies `Agent` and a call of `register_agent`. The built-in
ones are ACE (and its SAC ablation, the same class with all-ones causal weights and no reset) in
`ace_rl.ace` and TD3 in `ace_rl.td3`. An agent defined outside the package is named on the command
line as ``--algo my_pkg.agents:ddpg``: the module is imported (it calls `register_agent` on import, as a
Gymnasium environment module calls ``gymnasium.register``) and ``ddpg`` is looked up in the registry. The name
is stored in the run's ``config.json``, so resuming, ``eval``, ``export``, sweeps (on every Ray worker) and
reports import the module the same way.

This module imports neither PyTorch nor the agents: checking an ``--algo`` name stays fast.
"""

from __future__ import annotations

import dataclasses
import importlib
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ace_rl.errors import AceRlError
from ace_rl.hyperparameters import SAC_DEFAULTS, ACESettings, OffPolicySettings, TD3Settings
from ace_rl.user_code import describe_error

if TYPE_CHECKING:
    import numpy as np
    import torch
    from torch import nn

    from ace_rl.ace import ResetEvent
    from ace_rl.config import TrainConfig
    from ace_rl.replay import Batch


class Agent(Protocol):
    """Everything ``train``, checkpoints, ``eval``, ``export``, sweeps and reports need of an agent."""

    @property
    def actor(self) -> nn.Module:
        """The policy that evaluation uses, best.pt / final.pt store and ``export`` writes. Its
        ``deterministic(obs)`` maps a batch of observations to actions in the environment's units
        (`PolicyNetwork`); a stochastic policy also has ``sample_action(obs)``. A plain attribute
        fulfils this (read-only here, so that an agent's own nn.Module subclass fits)."""
        ...

    updates: int
    """Gradient updates made so far."""

    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        """The action for one observation: exploratory in training, ``deterministic`` in evaluation."""
        ...

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One update; its losses as tensors (read only when logged, so a GPU is not synchronised)."""
        ...

    def trained_parameters(self) -> Iterator[tuple[str, torch.Tensor]]:
        """Every trained parameter by name, for the finiteness check before anything is saved."""
        ...

    def state_dict(self) -> dict:
        """Everything needed to continue training exactly (networks, optimizers, counters)."""
        ...

    def load_state_dict(self, state: dict) -> None: ...


class PolicyNetwork(Protocol):
    """What evaluation, `ace_rl.policy.Policy` and export call on an agent's actor (an nn.Module)."""

    def deterministic(self, obs: torch.Tensor) -> torch.Tensor:
        """The actions of a batch of observations, in the environment's units."""
        ...


@runtime_checkable
class CausallyWeighted(Protocol):
    """Optional capability (ACE): an agent registered with ``causal=True`` is handed the weights of each causal
    fit, which the loop makes every ``--causal-interval`` env steps."""

    def set_causal_weights(self, causal_weights: np.ndarray) -> None: ...


@runtime_checkable
class Resetting(Protocol):
    """Optional capability (ACE): the reset the latest `Agent.update` made, or None, for the resets log."""

    last_reset: ResetEvent | None


AgentMaker = Callable[["TrainConfig", int, int, "np.ndarray", "np.ndarray", "torch.device"], Agent]
"""(config, obs_dim, action_dim, action_low, action_high, device) -> a new agent; the action bounds are the
environment's, as NumPy arrays of shape (action_dim,)."""
PolicyMaker = Callable[[int, int, int, "torch.Tensor", "torch.Tensor"], "nn.Module"]
"""(obs_dim, action_dim, hidden_size, action_low, action_high) -> an untrained policy of the saved kind, whose
weights a best.pt / final.pt then loads; the action bounds are float32 CPU tensors of shape (action_dim,), as the
policy file stores them (not NumPy arrays, unlike AgentMaker's)."""


@dataclass(frozen=True)
class AgentSpec:
    name: str
    make: AgentMaker
    make_policy: PolicyMaker
    causal: bool = False
    """Whether the loop fits the causal model and hands the agent its weights (the agent is CausallyWeighted)."""
    resets: bool = False
    """Whether the agent makes resets (then --reset defaults to `reset`; otherwise only --reset none is accepted)."""
    settings: type[OffPolicySettings] = OffPolicySettings
    """The dataclass of the agent's hyperparameters (ace_rl.hyperparameters), with its defaults per preset."""
    defaults: Mapping[str, Any] = field(default_factory=dict)
    """The agent's own defaults on top of its settings class's (SAC: no reset, the actor on every update)."""
    summary: str = ""
    module: str = ""
    """The module that registered it (an agent registered outside ace_rl is named module:name)."""

    def default_settings(self, preset: str) -> OffPolicySettings:
        """The agent's hyperparameters at ``preset`` before any is given."""
        return self.settings.for_preset(preset, **self.defaults)


_REGISTRY: dict[str, AgentSpec] = {}


class UnknownAgentError(ValueError):
    """An --algo that names no registered agent, or a module that cannot be imported."""


class AgentError(AceRlError, TypeError):
    """An agent that does not do what the loop asks of it (`Agent`): a method missing, a causal agent without
    set_causal_weights, a state_dict that is not a dict, an update that does not return tensors."""


AGENT_METHODS = ("act", "update", "trained_parameters", "state_dict", "load_state_dict")


def register_agent(
    name: str,
    make: AgentMaker,
    make_policy: PolicyMaker,
    *,
    causal: bool = False,
    resets: bool = False,
    settings: type[OffPolicySettings] = OffPolicySettings,
    defaults: Mapping[str, Any] | None = None,
    warmup_updates: bool | None = None,
    policy_frequency: int | None = None,
    summary: str = "",
) -> AgentSpec:
    """Register an agent under ``name`` (``--algo name``, or ``--algo module:name`` from outside ace_rl).

    ``settings`` is the dataclass of its hyperparameters (OffPolicySettings or a dataclass extending it) and
    ``defaults`` its own defaults on top of that class's; ``warmup_updates`` and ``policy_frequency`` are two such
    defaults, kept as keywords for agents registered before ``defaults`` existed.
    Registering a name again from the same module (a reload) replaces it; taking another module's name is refused.
    """
    if not name or ":" in name or not name.replace("-", "_").replace(".", "_").isidentifier():
        raise ValueError(f"agent name {name!r}: use letters, digits, '-', '_' (no ':')")
    if not (isinstance(settings, type) and issubclass(settings, OffPolicySettings)):
        raise ValueError(f"agent {name!r}: settings must be OffPolicySettings or a dataclass extending it")
    own_defaults = dict(defaults or {})
    for keyword, value in (("warmup_updates", warmup_updates), ("policy_frequency", policy_frequency)):
        if value is not None:
            own_defaults[keyword] = value
    known = {field.name for field in dataclasses.fields(settings)}
    if set(own_defaults) - known:
        raise ValueError(f"agent {name!r}: {settings.__name__} has no settings {sorted(set(own_defaults) - known)}")
    # The module whose code calls register_agent: --algo MODULE:NAME finds NAME only among MODULE's agents.
    module = sys._getframe(1).f_globals.get("__name__") or getattr(make, "__module__", "") or ""
    existing = _REGISTRY.get(name)
    if existing is not None and existing.module != module:
        raise ValueError(f"agent name {name!r} is already registered by {existing.module}")
    spec = AgentSpec(
        name,
        make,
        make_policy,
        causal=causal,
        resets=resets,
        settings=settings,
        defaults=own_defaults,
        summary=summary,
        module=module,
    )
    _REGISTRY[name] = spec
    return spec


def agent_spec(algo: str) -> AgentSpec:
    """The registered agent ``algo`` names: a registered name, or ``module:name`` (the module is imported first)."""
    if algo in _REGISTRY:
        return _REGISTRY[algo]
    module, separator, name = algo.rpartition(":")
    if separator and module:
        try:
            importlib.import_module(module)
        except Exception as error:  # a user's module may fail in any way: one line, where in its code, chained
            raise UnknownAgentError(
                f"--algo {algo}: module {module!r} does not import ({_import_failure(error, module)})"
            ) from error
        spec = _REGISTRY.get(name)
        if spec is not None and (spec.module == module or spec.module.startswith(module + ".")):
            return spec
        own = sorted(
            spec.name for spec in _REGISTRY.values() if spec.module == module or spec.module.startswith(module + ".")
        )
        registered = f"it registers {', '.join(own)}" if own else "it registers none"
        elsewhere = f"; {name!r} is registered by {spec.module}" if spec is not None else ""
        raise UnknownAgentError(
            f"--algo {algo}: module {module!r} registered no agent {name!r} (ace_rl.agents.register_agent); "
            f"{registered}{elsewhere}"
        )
    raise UnknownAgentError(
        f"unknown --algo {algo!r}; accepted: {', '.join(_REGISTRY)}, or module:name for an agent that a module "
        "registers on import"
    )


def _import_failure(error: Exception, module: str) -> str:
    """Why ``module`` did not import, in a few words: the module missing, or what its code raised and where."""
    missing = error.name if isinstance(error, ModuleNotFoundError) else None
    if missing is not None and (module == missing or module.startswith(missing + ".")):
        return f"{type(error).__name__}: {error}"  # not found: no line of the user's to name
    return describe_error(error)


def registered_agents() -> dict[str, AgentSpec]:
    return dict(_REGISTRY)


def builtin_agent_names() -> list[str]:
    """The agents ace-rl itself registers (ace, sac, td3), whatever other modules have registered since."""
    return [name for name, spec in _REGISTRY.items() if spec.module.split(".")[0] == "ace_rl"]


def make_agent(
    config: TrainConfig,
    obs_dim: int,
    action_dim: int,
    action_low: np.ndarray,
    action_high: np.ndarray,
    device: torch.device,
) -> Agent:
    """A new agent of ``config.algo``, checked to have what the loop will call (one AgentError line if not)."""
    spec = agent_spec(config.algo)
    agent = spec.make(config, obs_dim, action_dim, action_low, action_high, device)
    check_agent(agent, config.algo, causal=spec.causal and config.causal_method != "none")
    return agent


def check_agent(agent: object, algo: str, causal: bool) -> None:
    """Refuse, when it is made, an agent without `Agent`'s members, without set_causal_weights when the loop will
    fit causal weights for it (``causal``), or whose state_dict is not a dict: named as the agent's fault, in one
    line, rather than as a traceback from inside the loop."""
    from torch import nn

    name = f"--algo {algo}: the agent {type(agent).__module__}.{type(agent).__qualname__}"
    missing = []
    if not isinstance(getattr(agent, "actor", None), nn.Module):
        missing.append("actor (an nn.Module)")
    if not isinstance(getattr(agent, "updates", None), int):
        missing.append("updates (an int)")
    missing += [method for method in AGENT_METHODS if not callable(getattr(agent, method, None))]
    if missing:
        raise AgentError(
            f"{name} lacks {', '.join(missing)}; an agent needs actor, updates, {', '.join(AGENT_METHODS)} "
            "(ace_rl.agents.Agent)"
        )
    if causal and not isinstance(agent, CausallyWeighted):
        raise AgentError(
            f"{name} is registered with causal=True but has no set_causal_weights(causal_weights); add it, "
            "register the agent without causal=True, or train with --causal-method none"
        )
    state = agent.state_dict()  # type: ignore[attr-defined]  # checked to be callable above
    if not isinstance(state, dict):
        raise AgentError(f"{name}: state_dict() returned {type(state).__name__}; it must return a dict")


# --------------------------------------------------------------------------------------------------
# The built-in agents (imported when first made, so that naming them costs nothing)
# --------------------------------------------------------------------------------------------------
def _make_ace(
    config: TrainConfig, obs_dim: int, action_dim: int, low: np.ndarray, high: np.ndarray, device: torch.device
) -> Agent:
    from ace_rl.ace import ACE

    settings = ACESettings.of(config)
    return ACE(obs_dim, action_dim, low, high, settings, device, compile_losses=config.compile, seed=config.seed)


def _make_td3(
    config: TrainConfig, obs_dim: int, action_dim: int, low: np.ndarray, high: np.ndarray, device: torch.device
) -> Agent:
    from ace_rl.td3 import TD3

    return TD3(obs_dim, action_dim, low, high, TD3Settings.of(config), device, seed=config.seed)


def _gaussian_policy(
    obs_dim: int, action_dim: int, hidden_size: int, low: torch.Tensor, high: torch.Tensor
) -> nn.Module:
    from ace_rl.networks import Actor

    return Actor(obs_dim, action_dim, hidden_size, low, high)


def _deterministic_policy(
    obs_dim: int, action_dim: int, hidden_size: int, low: torch.Tensor, high: torch.Tensor
) -> nn.Module:
    from ace_rl.networks import DeterministicActor

    return DeterministicActor(obs_dim, action_dim, hidden_size, low, high)


register_agent(
    "ace",
    _make_ace,
    _gaussian_policy,
    causal=True,
    resets=True,
    settings=ACESettings,
    summary="causally weighted entropy and dormancy-guided resets",
)
register_agent(
    "sac",
    _make_ace,
    _gaussian_policy,
    settings=ACESettings,
    defaults=SAC_DEFAULTS,
    summary="SAC: ACE's code with all-ones weights, no reset, the actor updated with every critic update",
)
register_agent("td3", _make_td3, _deterministic_policy, settings=TD3Settings, summary="TD3 (Fujimoto et al. 2018)")
