"""Each built-in agent's hyperparameters: a dataclass per agent, with its defaults per preset.

`OffPolicySettings` holds what every agent of the training loop has (networks, replay, updates);
`ACESettings` adds ACE's causal weights and resets (SAC is ACE's code, so it takes `ACESettings` too, with no
reset and its own schedule); `TD3Settings` adds TD3's noise. An agent is registered with its class
(`ace_rl.agents.register_agent(..., settings=...)`), and `settings.for_preset(preset)` gives its defaults. A run's
own settings (task, seed, budget, evaluation, logging) are `ace_rl.config.RunSettings`; `ace_rl.config.TrainConfig`
is both together, flat, as the command line and config.json hold them.

Settings whose default depends on the preset or the agent hold `UNSET` until they are given or filled in; a
settings object made directly (``ACESettings()``) fills them from the paper preset. This module imports nothing of
the package, so that the registry, the agents and the configuration can all import it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeVar, get_args

import tyro

Preset = Literal["paper", "small"]
ResetKind = Literal["none", "reset", "causal_reset", "dormant_reset", "causal_dormant_reset"]
CausalMethod = Literal["auto", "sink", "directlingam", "none"]
CausalTarget = Literal["reward", "reward-interaction"]
LogProbCorrection = Literal["exact", "official"]

PRESETS: tuple[str, ...] = get_args(Preset)
RESET_KINDS: tuple[str, ...] = get_args(ResetKind)
CAUSAL_METHODS: tuple[str, ...] = get_args(CausalMethod)
CAUSAL_TARGETS: tuple[str, ...] = get_args(CausalTarget)
LOG_PROB_CORRECTIONS: tuple[str, ...] = get_args(LogProbCorrection)


class _Unset:
    """The default of a setting that the preset or the agent decides."""

    def __repr__(self) -> str:
        return "UNSET"

    def __deepcopy__(self, memo: dict[int, object]) -> _Unset:
        return self  # one sentinel, compared by identity


UNSET: Any = _Unset()

SettingsT = TypeVar("SettingsT", bound="OffPolicySettings")


def preset_table(cls: type, preset: str) -> dict[str, Any]:
    """The defaults of ``cls`` (a settings dataclass) at ``preset``: its own DEFAULTS and PRESET_DEFAULTS and its
    bases', the most derived class winning."""
    values: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        values.update(vars(klass).get("DEFAULTS", {}))
        values.update(vars(klass).get("PRESET_DEFAULTS", {}).get(preset, {}))
    return values


def fill_unset(settings: object, defaults: dict[str, Any]) -> None:
    """Give every UNSET setting of ``settings`` (a dataclass) its value in ``defaults``."""
    for field in dataclasses.fields(settings):  # type: ignore[arg-type]  # a dataclass instance
        if getattr(settings, field.name) is UNSET and field.name in defaults:
            object.__setattr__(settings, field.name, defaults[field.name])


@dataclass
class OffPolicySettings:
    """What every agent that the training loop drives has: its networks, its replay and the pace of its updates."""

    hidden_size: int = UNSET
    """Width of each of the 3 hidden layers (paper: 1024; small: 256)."""
    batch_size: int = UNSET
    """Transitions per update (paper: 512; small: 256)."""
    start_steps: int = UNSET
    """Environment steps taken with uniformly random actions before the policy acts (paper: 10,000; small: 5,000)."""
    warmup_updates: bool = UNSET
    """Update during the start steps, from the first full batch on (ace, sac: as the official ACE code); td3 waits
    for the policy's first step (as the reference TD3 and Stable-Baselines3), since thousands of updates on random
    data alone drive its deterministic actor to the action bounds."""
    buffer_size: int = UNSET
    """Replay capacity in transitions (paper: 1,000,000; small: 1,000,000)."""
    learning_rate: float = 3e-4
    """Adam learning rate of the policy, the critics and the temperature."""
    gamma: float = 0.99
    """Discount factor."""
    tau: float = 0.005
    """Target-network smoothing coefficient."""
    policy_frequency: int = UNSET
    """Actor, temperature and target-network updates happen every this many critic updates (the agent's default:
    ace and td3 2, as the official ACE code and the reference TD3; sac 1, as the reference SAC)."""
    updates_per_step: int = 1
    """Gradient updates per environment step."""

    DEFAULTS: ClassVar[dict[str, Any]] = {"warmup_updates": True, "policy_frequency": 2}
    PRESET_DEFAULTS: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {"hidden_size": 1024, "batch_size": 512, "start_steps": 10_000, "buffer_size": 1_000_000},
        "small": {"hidden_size": 256, "batch_size": 256, "start_steps": 5_000, "buffer_size": 1_000_000},
    }

    def __post_init__(self) -> None:
        fill_unset(self, preset_table(type(self), "paper"))

    @classmethod
    def for_preset(cls: type[SettingsT], preset: str, **settings: Any) -> SettingsT:
        """This agent's settings at ``preset``, with ``settings`` on top."""
        return cls(**{**preset_table(cls, preset), **settings})

    @classmethod
    def of(cls: type[SettingsT], values: object) -> SettingsT:
        """The settings of this class that ``values`` (a TrainConfig, or any object with these attributes) holds."""
        return cls(**{field.name: getattr(values, field.name) for field in dataclasses.fields(cls)})


@dataclass
class ACESettings(OffPolicySettings):
    """ACE's hyperparameters: the causal weights and the gradient-dormancy-guided resets (and SAC's: the same
    code, registered without a causal fit, without resets and with the actor updated on every critic update)."""

    causal_interval: int = UNSET
    """Refit the causal weights every this many environment steps (paper: 10,000; small: 5,000)."""
    causal_samples: int = UNSET
    """Fit on the latest this many transitions (paper: 10,000; small: 5,000)."""
    causal_method: CausalMethod = "auto"
    """directlingam: lingam.DirectLiNGAM, the official code's estimator; sink: adaptive lasso of the reward on all
    states and actions (fast; DirectLiNGAM's reward row only where DirectLiNGAM orders the reward last); auto:
    directlingam where its fits are estimated at most 1 % of training time (from the task's size and the preset:
    up to 14 variables at small and 33 at paper), else sink, chosen when a run starts
    and recorded in config.json; none: no fit, the weights stay 1 (the uniform-weights ablation of ACE; resets as
    configured)."""
    causal_method_reason: tyro.conf.Suppress[str | None] = None
    """Why the run uses its causal method: `given`, or `auto: ...` with the estimated cost (written by a new run
    into config.json; not an option)."""
    causal_target: CausalTarget = "reward"
    """What the causal weights measure. reward (the official ACE): the linear direct effect b of each action on the
    immediate reward given the state, weights n * softmax(b). reward-interaction: the effect of each action on the
    immediate reward in units of the reward's spread, with quadratic and state-dependent terms, weights
    n * softmax(effect / 0.1) (docs/algorithm.md, "Causal targets"); it fits its own regression, so
    --causal-method only switches fits off (none). In a 50,000-step study it did not improve learning
    (docs/algorithm.md, "The causal-target study")."""
    causal_time_limit: float | None = None
    """Refuse directlingam fits estimated to take longer than this many seconds (default: no limit)."""
    reset: ResetKind = UNSET
    """Reset variant (ace: reset; sac: none). dormant_* variants only reset dormant neurons; causal_* take the
    reset factor from the spread of the causal weights instead of the dormancy ratio."""
    reset_interval: int = UNSET
    """Updates between resets (paper: 100,000; small: 20,000)."""
    reset_start: int = UNSET
    """No reset before this many updates (paper: 5,000; small: 5,000)."""
    dormancy_threshold: float = 0.05
    """A neuron is gradient-dormant when its gradient norm is below this fraction of its layer's mean."""
    log_prob_correction: LogProbCorrection = "exact"
    """Tanh correction of the policy's log-probability: exact, or official: log(scale * (1 - tanh(u)^2) + 1e-6) as
    the official ACE code, which stops at 13.8 nats per dimension once tanh saturates (docs/algorithm.md)."""

    DEFAULTS: ClassVar[dict[str, Any]] = {"reset": "reset"}
    PRESET_DEFAULTS: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {"causal_interval": 10_000, "causal_samples": 10_000, "reset_interval": 100_000, "reset_start": 5_000},
        "small": {"causal_interval": 5_000, "causal_samples": 5_000, "reset_interval": 20_000, "reset_start": 5_000},
    }


# SAC is ACE's code never handed a causal fit, without resets, and on SAC's own schedule: the reference SAC
# (Haarnoja et al. 2018) and Stable-Baselines3 update the actor, the temperature and the target critic with every
# critic update. ACE's official code does so on every 2nd update, which at 50,000 steps left this SAC behind
# Stable-Baselines3's on HalfCheetah-v5 (docs/benchmarks.md).
SAC_DEFAULTS: dict[str, Any] = {"reset": "none", "policy_frequency": 1}


@dataclass
class TD3Settings(OffPolicySettings):
    """TD3's hyperparameters (Fujimoto et al. 2018): target policy smoothing and exploration noise."""

    policy_noise: float = 0.2
    """td3: std of the target policy smoothing noise, as a fraction of the action's half-range."""
    noise_clip: float = 0.5
    """td3: the smoothing noise is clipped to +- this fraction of the action's half-range."""
    exploration_noise: float = 0.1
    """td3: std of the Gaussian exploration noise added when acting, as a fraction of the half-range."""

    # The reference TD3 trains only once its policy acts: thousands of updates on the random start steps alone
    # saturate the deterministic actor at the action bounds (Hopper-v5: 85-100% of actions within 1% of a bound;
    # benchmarks/td3_warmup.py).
    DEFAULTS: ClassVar[dict[str, Any]] = {"warmup_updates": False}
