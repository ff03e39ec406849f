"""Training configuration: a run's settings, the agent's hyperparameters, and the checks that turn bad input into
clear errors.

`RunSettings` (task, seed, budget, evaluation, checkpoints, logging, execution) belongs to the run; each agent's
hyperparameters belong to the agent (`ace_rl.hyperparameters`, registered with it in `ace_rl.agents`).
`TrainConfig` is both together, flat, as the command line takes them and config.json holds them. Whatever way it
is built (``TrainConfig(algo="sac", preset="small")``, `preset_config`, the command line, `compose`), a setting
left unset takes the preset's and the agent's default, so that the same choices give the same run.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, get_args

import tyro

from ace_rl.agents import AgentSpec, UnknownAgentError, agent_spec
from ace_rl.errors import ConfigError
from ace_rl.extras import install_hint, missing_modules
from ace_rl.hyperparameters import (
    CAUSAL_METHODS,
    CAUSAL_TARGETS,
    LOG_PROB_CORRECTIONS,
    PRESETS,
    RESET_KINDS,
    UNSET,
    ACESettings,
    OffPolicySettings,
    Preset,
    TD3Settings,
    fill_unset,
    preset_table,
)
from ace_rl.trust import CodeTrust

Reward = Literal["dense", "sparse"]
REWARDS: tuple[str, ...] = get_args(Reward)


def _json_object(arguments: list[str]) -> dict[str, Any]:
    value = json.loads(arguments[0])
    if not isinstance(value, dict):
        raise ValueError(f"a JSON object is expected, such as '{{\"goal\": 0.3}}', got {arguments[0]}")
    return value


# A JSON object on the command line (--env-kwargs '{"goal": 0.3}'), a JSON object in config.json.
JsonObject = Annotated[
    dict[str, Any],
    tyro.constructors.PrimitiveConstructorSpec(
        nargs=1,
        metavar="JSON",
        instance_from_str=_json_object,
        is_instance=lambda value: isinstance(value, dict),
        str_from_instance=lambda value: [json.dumps(value)],
    ),
]


@dataclass
class AgentChoice:
    """Which agent trains, and which preset gives the defaults of everything left unset."""

    algo: str = "ace"
    """ace: causal weights and resets; sac: the same code with all-ones weights and no reset; td3: TD3
    (Fujimoto et al. 2018) with the same network sizes; module:name: an agent that a module registers on import
    (ace_rl.agents.register_agent)."""
    preset: Preset = "paper"
    """Defaults for every setting below that is left unset."""


@dataclass
class RunSettings:
    """A run's own settings: the task, the seed, the budget, evaluation, checkpoints, logging and where and how it
    executes; nothing an agent reads."""

    env: str = "Hopper-v5"
    """Task id: a Gymnasium id (Hopper-v5, Humanoid-v5, AdroitHandDoor-v1, ...), dmc:DOMAIN-TASK, metaworld:TASK
    (`ace-rl envs` lists the suites), or module:EnvName-vN for an environment that a module registers on import."""
    env_kwargs: JsonObject = field(default_factory=dict)
    """Constructor arguments of a Gymnasium environment, as a JSON object: '{"goal": [0.5, -0.3]}'."""
    distractor_actions: int = 0
    """Append this many action dimensions that the environment ignores (the agent acts in A + K, the environment
    gets the first A, the causal fit sees all): ground truth for the causal weights, whose distractors should get 0."""
    reward: Reward = "dense"
    """dense: the task's reward; sparse: 1.0 on steps where the task reports success, else 0.0."""
    seed: int = 0
    """Seeds the run's own generators (the agent's, the replay buffer's, the environments': each seeded once);
    Python's, NumPy's and PyTorch's global ones too, for agents of other modules."""
    total_steps: int = UNSET
    """Environment steps to train for (paper: 1,000,000; small: 100,000)."""
    eval_every: int = UNSET
    """Evaluate every this many environment steps (paper: 10,000; small: 5,000)."""
    eval_episodes: int = 10
    """Deterministic episodes per evaluation, on an environment of its own."""
    log_every: int = 1000
    """Write losses, temperature and entropy to TensorBoard every this many environment steps."""
    video_every: int = 0
    """Record one deterministic evaluation episode every this many environment steps into RUN/videos/step-*.mp4
    and TensorBoard (0: never; needs the video extra, and EGL or OSMesa for MuJoCo tasks)."""
    wandb_project: str | None = None
    """Also log to this Weights & Biases project (needs the wandb extra; WANDB_MODE=offline logs without a
    network)."""
    wandb_entity: str | None = None
    """W&B entity (user or team) that owns the project (default: your W&B default entity)."""
    wandb_group: str | None = None
    """W&B group of the run (a sweep groups its runs by the sweep's name)."""
    wandb_tags: tuple[str, ...] = ()
    """W&B tags of the run."""
    device: str = "auto"
    """auto (cuda when available, else cpu), cpu, cuda or cuda:N."""
    threads: int = 0
    """PyTorch CPU threads (0: the process's current count); a run is bit-identical only at the same count, and a
    count other than that of a run already running in this process is refused."""
    compile: bool = False
    """Run the critic and actor losses through torch.compile; the update computes the same. Off unless given: on
    a 2-core CPU it measured within the noise of the default path, and the first updates wait for the compiler
    (20-40 s)."""
    run_dir: Path | None = None
    """Where to write the run (default: runs/ENV__ALGO__sSEED__TIME)."""
    checkpoint_every: int = 20_000
    """Write a full-state checkpoint at the first episode end after every this many env steps (the latest 3 are kept)."""
    resume: Path | None = None
    """Continue the run in this directory from its latest intact checkpoint, with its config.json."""
    trust_run_code: bool = False
    """With --resume: import the module that the run's config.json names as its --env or --algo (module:NAME), which
    runs that module's code. Without it such a run is continued only when --env / --algo is given again, or its
    module is listed in ACE_RL_TRUSTED_MODULES. Never stored in config.json."""
    progress: bool = True
    """Show a progress bar."""
    budget_scale: float = 1.0
    """The fraction of its plan's budget this run was given: `ace-rl sweep --budget-scale F` multiplies the total
    steps and the schedule's intervals (BUDGET_SCALED_SETTINGS) itself and records F here, so that a report shows
    a smaller run as such. `ace-rl train` only records it."""

    PRESET_DEFAULTS: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {"total_steps": 1_000_000, "eval_every": 10_000},
        "small": {"total_steps": 100_000, "eval_every": 5_000},
    }

    def __post_init__(self) -> None:
        fill_unset(self, preset_table(type(self), "paper"))

    @classmethod
    def for_preset(cls, preset: str, **settings: Any) -> RunSettings:
        """The run settings at ``preset``, with ``settings`` on top."""
        return cls(**{**preset_table(cls, preset), **settings})


# Bases in reverse order of their fields: the choice of agent and preset, the run, then the agents' settings.
@dataclass
class TrainConfig(TD3Settings, ACESettings, RunSettings, AgentChoice):
    """Train ACE (or the SAC baseline) on a Gymnasium task.

    --preset sets the defaults shown here: `paper` is the official code's configuration (3 x 1024 networks,
    batch 512); `small` is sized for a CPU (3 x 256, batch 256, intervals scaled so that a 50,000-step run
    sees several causal fits and at least one reset). Options given explicitly override the preset.
    """

    def __post_init__(self) -> None:
        if any(getattr(self, field.name) is UNSET for field in dataclasses.fields(self)):
            fill_unset(self, default_values(self.preset, self.algo))

    @property
    def run_settings(self) -> RunSettings:
        """The run's own settings."""
        return RunSettings(**{field.name: getattr(self, field.name) for field in dataclasses.fields(RunSettings)})

    def agent_settings(self) -> OffPolicySettings:
        """The hyperparameters of the agent --algo names, as the dataclass it is registered with."""
        return _agent(self.algo).settings.of(self)


# The settings whose defaults differ between the presets, at each preset.
PRESET_VALUES: dict[str, dict[str, Any]] = {
    preset: {
        **RunSettings.PRESET_DEFAULTS[preset],
        **OffPolicySettings.PRESET_DEFAULTS[preset],
        **ACESettings.PRESET_DEFAULTS[preset],
    }
    for preset in PRESETS
}


def default_values(preset: str, algo: str) -> dict[str, Any]:
    """Every setting's default for ``algo`` at ``preset``: the run's preset defaults, the agent's own (its
    registered settings class at the preset, with the defaults it registered), and for the settings of other
    agents the defaults of the built-in agent that owns them."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown --preset {preset!r}; accepted: {', '.join(PRESETS)}")
    agent = _agent(algo)
    values: dict[str, Any] = {
        **preset_table(RunSettings, preset),
        **preset_table(TD3Settings, preset),
        **preset_table(ACESettings, preset),
    }
    values.update(dataclasses.asdict(agent.default_settings(preset)))
    if not agent.resets:
        values["reset"] = "none"
    return values


def compose(run: RunSettings, agent_settings: OffPolicySettings, algo: str, preset: str = "paper") -> TrainConfig:
    """The configuration of a run with ``run`` settings training ``algo`` with ``agent_settings`` (an instance of
    the settings class the agent is registered with); what the two leave out takes ``preset``'s defaults."""
    expected = _agent(algo).settings
    if type(agent_settings) is not expected:
        raise ConfigError(
            f"--algo {algo} takes its hyperparameters as {expected.__name__}, got {type(agent_settings).__name__}"
        )
    values = {**dataclasses.asdict(run), **dataclasses.asdict(agent_settings)}
    return TrainConfig(algo=algo, preset=preset, **values)  # type: ignore[arg-type]  # validate() checks preset


def preset_config(preset: str = "paper", algo: str = "ace", **settings: object) -> TrainConfig:
    """The configuration of ``preset`` for ``algo``, overridden by ``settings``: ``TrainConfig(preset=preset,
    algo=algo, **settings)``, with unknown settings and presets refused."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown --preset {preset!r}; accepted: {', '.join(PRESETS)}")
    unknown = sorted(set(settings) - {field.name for field in dataclasses.fields(TrainConfig)})
    if unknown:
        raise ConfigError(f"unknown settings {unknown}")
    return TrainConfig(preset=preset, algo=algo, **settings)  # type: ignore[arg-type]  # validate() checks the values


MAX_DISTRACTORS = 64  # --distractor-actions at most
MAX_SEED = (
    2**32 - 1 - 20_000
)  # NumPy seeds are 32-bit; the evaluation and video environments take seed + 10,000, + 20,000


def validate(config: TrainConfig) -> None:
    """Raise ConfigError naming the first invalid setting, the value given (with its type where that is what is
    wrong) and what it accepts. Settings given from Python are checked here as the command line's are: a bool is
    not an integer, a number is an int or a float (not a string), and env_kwargs is plain JSON."""
    _check_types(config)
    _check_counts(config)
    _check_agent(config)
    _check_learning(config)
    _check_budget(config)
    _check_causal(config)
    _check_execution(config)


def _check_counts(config: TrainConfig) -> None:
    """The seed, the settings that count steps, updates or units, and the distractor actions."""
    if not 0 <= config.seed <= MAX_SEED:
        raise ConfigError(f"--seed must be an integer from 0 to {MAX_SEED}, got {config.seed}")
    for name in POSITIVE_INTS:
        value = getattr(config, name)
        if value <= 0:
            raise ConfigError(f"--{_flag(name)} must be a positive integer, got {value}")
    for name in NON_NEGATIVE_INTS:
        value = getattr(config, name)
        if value < 0:
            raise ConfigError(f"--{_flag(name)} must be zero or a positive integer, got {value}")
    if not 0 <= config.distractor_actions <= MAX_DISTRACTORS:
        raise ConfigError(
            f"--distractor-actions must be an integer from 0 to {MAX_DISTRACTORS}, got {config.distractor_actions}"
        )


def _check_agent(config: TrainConfig) -> None:
    """--algo names a registered agent, and --reset is given only to one that resets."""
    agent = _agent(config.algo)
    if not agent.resets and config.reset != "none":
        raise ConfigError(f"--algo {config.algo} runs without resets; drop --reset {config.reset} or use --algo ace")


def _check_learning(config: TrainConfig) -> None:
    """The numbers of the updates: exploration noise, discount, Polyak factor, dormancy threshold, learning rate."""
    for name in ("policy_noise", "noise_clip", "exploration_noise"):
        value = getattr(config, name)
        if not (math.isfinite(value) and value >= 0):
            raise ConfigError(f"--{_flag(name)} must be a non-negative number, got {value}")
    for name, low, high in (("gamma", 0.0, 1.0), ("tau", 0.0, 1.0), ("dormancy_threshold", 0.0, 1.0)):
        value = getattr(config, name)
        if not (math.isfinite(value) and low < value <= high):
            raise ConfigError(f"--{_flag(name)} must lie in ({low}, {high}], got {value}")
    if not (math.isfinite(config.learning_rate) and config.learning_rate > 0):
        raise ConfigError(f"--learning-rate must be a positive number, got {config.learning_rate}")


def _check_budget(config: TrainConfig) -> None:
    """What must fit in the replay buffer, and the budget's scale."""
    if config.batch_size > config.buffer_size:
        raise ConfigError(f"--batch-size ({config.batch_size}) must not exceed --buffer-size ({config.buffer_size})")
    if config.causal_samples > config.buffer_size:
        raise ConfigError(
            f"--causal-samples ({config.causal_samples}) must not exceed --buffer-size ({config.buffer_size})"
        )
    if not (math.isfinite(config.budget_scale) and config.budget_scale > 0):
        raise ConfigError(f"--budget-scale must be a positive number, got {config.budget_scale}")


def _check_causal(config: TrainConfig) -> None:
    """The causal fit's method with its target, and its time limit."""
    if config.causal_target != "reward" and config.causal_method == "directlingam":
        raise ConfigError(
            f"--causal-method directlingam estimates the reward target's linear row; --causal-target "
            f"{config.causal_target} fits its own regression: drop one of them"
        )
    if config.causal_time_limit is not None and not config.causal_time_limit > 0:
        raise ConfigError(f"--causal-time-limit must be a positive number of seconds, got {config.causal_time_limit}")


def _check_execution(config: TrainConfig) -> None:
    """The device, and the videos and W&B logging with the extras they need."""
    if not _valid_device(config.device):
        raise ConfigError(f"unknown --device {config.device!r}; accepted: auto, cpu, cuda, cuda:N")
    if config.video_every < 0:
        raise ConfigError(f"--video-every must be zero (no videos) or a positive integer, got {config.video_every}")
    if config.video_every > 0 and missing_modules("imageio", "imageio_ffmpeg"):
        raise ConfigError(
            "--video-every needs imageio with its ffmpeg plugin, which is not installed; "
            f"install it with: {install_hint('video')}"
        )
    if config.wandb_project is not None and not config.wandb_project.strip():
        raise ConfigError("--wandb-project must name a project, got an empty name")
    if config.wandb_project is not None and missing_modules("wandb"):
        raise ConfigError(
            f"--wandb-project needs wandb, which is not installed; install it with: {install_hint('wandb')}"
        )


POSITIVE_INTS = (
    "total_steps",
    "hidden_size",
    "batch_size",
    "buffer_size",
    "causal_interval",
    "causal_samples",
    "reset_interval",
    "eval_every",
    "eval_episodes",
    "log_every",
    "checkpoint_every",
    "policy_frequency",
    "updates_per_step",
)
NON_NEGATIVE_INTS = ("start_steps", "reset_start", "threads")
NUMBERS = (
    "budget_scale",
    "dormancy_threshold",
    "learning_rate",
    "gamma",
    "tau",
    "policy_noise",
    "noise_clip",
    "exploration_noise",
)
CHOICES: dict[str, tuple[str, ...]] = {
    "preset": PRESETS,
    "reward": REWARDS,
    "reset": RESET_KINDS,
    "causal_method": CAUSAL_METHODS,
    "causal_target": CAUSAL_TARGETS,
    "log_prob_correction": LOG_PROB_CORRECTIONS,
}


def _check_types(config: TrainConfig) -> None:
    """Refuse a setting of the wrong type (from Python: the command line parses each to its type), so that the
    checks of values after it compare numbers with numbers and config.json and checkpoints can hold it."""
    _check_number_types(config)
    _check_choices(config)
    _check_text_and_path_types(config)
    _check_env_kwargs(config)


def _check_number_types(config: TrainConfig) -> None:
    if not isinstance(config.env, str) or not config.env:
        raise _wrong_type("env", "a task id (a non-empty str)", config.env)
    for name in ("seed", "distractor_actions", "video_every", *POSITIVE_INTS, *NON_NEGATIVE_INTS):
        if type(getattr(config, name)) is not int:  # a bool or a numpy.int64 is not
            raise _wrong_type(name, "an integer (int)", getattr(config, name))
    for name in NUMBERS:
        if type(getattr(config, name)) not in (int, float):
            raise _wrong_type(name, "a number (int or float)", getattr(config, name))
    if config.causal_time_limit is not None and type(config.causal_time_limit) not in (int, float):
        raise _wrong_type("causal_time_limit", "a number of seconds (int or float) or None", config.causal_time_limit)
    if config.causal_method_reason is not None and not isinstance(config.causal_method_reason, str):
        raise _wrong_type("causal_method_reason", "a str or None", config.causal_method_reason)
    for name in ("warmup_updates", "compile", "progress", "trust_run_code"):
        if not isinstance(getattr(config, name), bool):
            raise _wrong_type(name, "true or false", getattr(config, name))


def _check_choices(config: TrainConfig) -> None:
    for name, accepted in CHOICES.items():
        value = getattr(config, name)
        if not isinstance(value, str) or value not in accepted:
            shown = repr(value) if isinstance(value, str) else _shown(value)
            raise ConfigError(f"unknown --{_flag(name)} {shown}; accepted: {', '.join(accepted)}")
    if not isinstance(config.device, str):
        raise _wrong_type("device", "a str: auto, cpu, cuda or cuda:N", config.device)


def _check_text_and_path_types(config: TrainConfig) -> None:
    for name in ("wandb_project", "wandb_entity", "wandb_group"):
        if getattr(config, name) is not None and not isinstance(getattr(config, name), str):
            raise _wrong_type(name, "a str or None", getattr(config, name))
    tags = config.wandb_tags
    if not isinstance(tags, (tuple, list)) or not all(isinstance(tag, str) for tag in tags):
        raise _wrong_type("wandb_tags", "a tuple (or list) of str", tags)
    for name in ("run_dir", "resume"):
        if getattr(config, name) is not None and not isinstance(getattr(config, name), Path):
            raise _wrong_type(name, "a pathlib.Path or None", getattr(config, name))


def _check_env_kwargs(config: TrainConfig) -> None:
    if not isinstance(config.env_kwargs, dict):
        raise _wrong_type("env_kwargs", "a JSON object (a dict)", config.env_kwargs)
    problem = _json_problem(config.env_kwargs, "env_kwargs")
    if problem is not None:
        raise ConfigError(
            f"--env-kwargs must be plain JSON (str keys; str, int, float, bool, None, lists and dicts of them), so "
            f"that config.json holds it and reads back equal: {problem}"
        )


def _json_problem(value: object, where: str) -> str | None:
    """Why ``value`` (named ``where``) would not read back equal from JSON, or None when it would."""
    if type(value) is dict:
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{where} has the key {_shown(key)}, not a str"
            problem = _json_problem(item, f"{where}[{key!r}]")
            if problem is not None:
                return problem
        return None
    if type(value) is list:
        for index, item in enumerate(value):
            problem = _json_problem(item, f"{where}[{index}]")
            if problem is not None:
                return problem
        return None
    if type(value) is float and math.isnan(value):
        return f"{where} is nan, which equals nothing, not even itself read back"
    if type(value) in (str, int, float, bool, type(None)):
        return None
    hint = " (JSON reads it back as a list: pass a list)" if isinstance(value, tuple) else ""
    return f"{where} is a {_type_name(value)}{hint}"


def _type_name(value: object) -> str:
    kind = type(value)
    return kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


def _shown(value: object) -> str:
    """``value`` for an error message about its type: as Python writes it (shortened), and its type."""
    text = repr(value)
    return f"{text if len(text) <= 60 else text[:57] + '...'} ({_type_name(value)})"


def _wrong_type(name: str, accepted: str, value: object) -> ConfigError:
    return ConfigError(f"--{_flag(name)} must be {accepted}, got {_shown(value)}")


def _agent(algo: object) -> AgentSpec:
    """The registered agent --algo names (ace_rl.agents), or ConfigError."""
    if not isinstance(algo, str):
        raise ConfigError(f"--algo must name an agent, got {algo!r}")
    try:
        return agent_spec(algo)
    except UnknownAgentError as error:
        raise ConfigError(str(error)) from error


# What `--budget-scale F` multiplies: the budget and every interval of the schedule that counts env steps or
# updates, so that a smaller run keeps the shape of the full one (as many evaluations, checkpoints, causal fits and
# resets, random steps as the same share of the run). causal_samples scales with causal_interval: every transition
# enters one fit, as in the paper (both 10,000). Sizes do not scale (networks, replay, evaluation episodes), except
# that a batch never exceeds the run's steps.
BUDGET_SCALED_SETTINGS = (
    "total_steps",
    "start_steps",
    "eval_every",
    "checkpoint_every",
    "log_every",
    "causal_interval",
    "causal_samples",
    "reset_interval",
    "reset_start",
)
_MAY_BE_ZERO = frozenset({"start_steps", "reset_start"})


def scaled_budget(config: TrainConfig, factor: float) -> dict[str, Any]:
    """The settings ``config`` takes at ``factor`` times its budget: each of BUDGET_SCALED_SETTINGS times
    ``factor``, rounded (at least 1; start_steps and reset_start at least 0), batch_size at most the scaled
    total_steps, and budget_scale = config.budget_scale * factor. Only settings that change are returned."""
    if not (isinstance(factor, (int, float)) and math.isfinite(factor) and factor > 0):
        raise ConfigError(f"--budget-scale must be a positive number, got {factor}")
    values: dict[str, Any] = {}
    for name in BUDGET_SCALED_SETTINGS:
        values[name] = max(0 if name in _MAY_BE_ZERO else 1, round(getattr(config, name) * factor))
    values["batch_size"] = min(config.batch_size, int(values["total_steps"]))
    values["budget_scale"] = config.budget_scale * factor
    return {name: value for name, value in values.items() if getattr(config, name) != value}


def causal_fit_due_step(config: TrainConfig) -> int:
    """The env step at which an ACE run's first causal fit is due: the first multiple of --causal-interval at
    which the replay holds --causal-samples transitions (validate() keeps them within --buffer-size)."""
    return -(-config.causal_samples // config.causal_interval) * config.causal_interval


def reset_due_update(config: TrainConfig) -> int:
    """The update at which an ACE run's first reset is due: the first multiple of --reset-interval beyond
    --reset-start."""
    return (config.reset_start // config.reset_interval + 1) * config.reset_interval


def update_count(config: TrainConfig) -> int:
    """Gradient updates a run makes: --updates-per-step on every step once the replay holds a batch."""
    return config.updates_per_step * max(0, config.total_steps - config.batch_size + 1)


def equals_sac_reason(config: TrainConfig) -> str | None:
    """Why an ACE run computes exactly what --algo sac computes, or None when it does not: with no causal fit
    (all-ones weights) and no reset within its budget, ACE is SAC bit for bit."""
    if config.algo != "ace":
        return None
    first_fit = causal_fit_due_step(config)
    first_reset = reset_due_update(config)
    updates = update_count(config)
    fits = config.causal_method != "none"
    if (fits and first_fit <= config.total_steps) or (config.reset != "none" and first_reset <= updates):
        return None
    resets = (
        "--reset none"
        if config.reset == "none"
        else f"no reset (the first is due at update {first_reset:,}; the run makes {updates:,})"
    )
    no_fit = (
        "no causal fit (--causal-method none)"
        if not fits
        else (
            f"no causal fit (the first is due at env step {first_fit:,}: --causal-samples {config.causal_samples:,} at a "
            f"multiple of --causal-interval {config.causal_interval:,}; --total-steps is {config.total_steps:,})"
        )
    )
    return f"{no_fit} and {resets}"


def equal_sac_flags(config: TrainConfig) -> str:
    """The --algo sac flags that compute what ``config`` (an ACE run of equals_sac_reason) computes: SAC's own
    --policy-frequency default (1) is not ACE's (2)."""
    flags = "--algo sac"
    if config.policy_frequency != _agent("sac").default_settings(config.preset).policy_frequency:
        flags += f" --policy-frequency {config.policy_frequency}"
    return flags


def _valid_device(device: str) -> bool:
    if device in ("auto", "cpu", "cuda"):
        return True
    prefix, _, index = device.partition(":")
    return prefix == "cuda" and index.isdigit()


def _flag(name: str) -> str:
    return name.replace("_", "-")


# Which settings define an experiment, in one place. Every other list of settings derives from these.
#
# Where and how one process executes a run, never what the run is. A sweep decides them for its runs (they are
# not sweep options) and leaves them out when it compares a stored specification with a command.
EXECUTION_SETTINGS = frozenset({"run_dir", "resume", "threads", "progress", "trust_run_code"})
# Settings that may change when a run is resumed: how long it runs, where and how it reports. Everything
# else would make the continued run a different experiment.
RESUMABLE_SETTINGS = frozenset(
    {
        "total_steps",
        "device",
        "threads",
        "compile",
        "progress",
        "checkpoint_every",
        "log_every",
        "resume",
        "trust_run_code",
        "video_every",
        "wandb_project",
        "wandb_entity",
        "wandb_group",
        "wandb_tags",
    }
)
# What a run records about itself when it starts, never an option: why it uses its causal method.
RECORDED_SETTINGS = frozenset({"causal_method_reason"})
# Settings that do not define the experiment: two runs that differ only in them are the same experiment.
NON_EXPERIMENT_SETTINGS = RESUMABLE_SETTINGS | EXECUTION_SETTINGS | RECORDED_SETTINGS
# What a report leaves out when it groups runs into one curve: the settings above, the seed (the runs of a group
# differ in it), the evaluation schedule (curves of other lengths and periods are aligned, not split) and the
# causal fit's time limit (a guard, not a setting of the algorithm).
UNGROUPED_SETTINGS = NON_EXPERIMENT_SETTINGS | {"seed", "eval_every", "eval_episodes", "causal_time_limit"}


# The settings every config.json has held since the first release; settings added later take their
# defaults when an older run is resumed.
REQUIRED_SETTINGS = (
    "env",
    "reward",
    "seed",
    "algo",
    "preset",
    "total_steps",
    "hidden_size",
    "batch_size",
    "start_steps",
    "buffer_size",
    "causal_interval",
    "causal_samples",
    "causal_method",
    "causal_time_limit",
    "reset",
    "reset_interval",
    "reset_start",
    "dormancy_threshold",
    "learning_rate",
    "gamma",
    "tau",
    "policy_frequency",
    "updates_per_step",
    "eval_every",
    "eval_episodes",
    "log_every",
    "device",
    "threads",
    "compile",
    "run_dir",
    "checkpoint_every",
)


LEGACY_DEFAULTS: dict[str, Any] = {
    name: value
    for name, value in {
        **dataclasses.asdict(RunSettings()),
        **dataclasses.asdict(TD3Settings()),
        **dataclasses.asdict(ACESettings()),
    }.items()
    if name not in REQUIRED_SETTINGS
}


def config_from_json_dict(values: object, source: str, trust: CodeTrust) -> TrainConfig:
    """A TrainConfig from the JSON object of a config.json (or a checkpoint); ConfigError naming ``source``
    when it is not an object, lacks settings or has unknown ones.

    The file is data: an --env or --algo that would import a module is refused (UntrustedCodeError) unless
    ``trust`` allows that module, before anything is imported."""
    if not isinstance(values, dict):
        raise ConfigError(f"{source} is not a JSON object of settings (found {type(values).__name__})")
    missing = [name for name in REQUIRED_SETTINGS if name not in values]
    if missing:
        raise ConfigError(f"{source} lacks the settings {', '.join(missing)}; it was not written by ace-rl train")
    known = {field.name for field in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{source} has unknown settings {', '.join(unknown)} (written by a newer ace-rl?)")
    trust.check("env", values["env"], source)
    trust.check("algo", values["algo"], source)
    # Settings added after a run was written take the defaults they had then (the paper preset's, ACE's), given
    # here in full so that reading a file never looks up its agent.
    values = {**LEGACY_DEFAULTS, **values}
    values["run_dir"] = Path(values["run_dir"]) if values.get("run_dir") else None
    values["resume"] = None
    values["trust_run_code"] = False  # a file never grants itself trust
    for name in ("wandb_tags",):
        if isinstance(values.get(name), list):
            values[name] = tuple(values[name])
    try:
        config = TrainConfig(**values)
    except TypeError as error:
        raise ConfigError(f"{source} is not a valid ace-rl configuration ({error})") from None
    try:
        validate(config)
    except ConfigError as error:
        raise ConfigError(f"{source}: {error}") from None
    return config


def code_trust(config: TrainConfig) -> CodeTrust:
    """What a configuration that was accepted (given by the user, or read with their trust) allows the other files
    of its run to import: the modules of its own --env and --algo, which those files must name anyway."""
    return CodeTrust.given(ids=[("env", config.env), ("algo", config.algo)])


def load_run_config(run_dir: Path, trust: CodeTrust) -> TrainConfig:
    """The configuration a run was started with, from its config.json; ``trust``: the modules its --env and --algo
    may import (config_from_json_dict)."""
    path = run_dir / "config.json"
    if not run_dir.is_dir():
        raise ConfigError(f"--resume {run_dir}: no such run directory")
    if not path.is_file():
        raise ConfigError(f"--resume {run_dir}: no run there (config.json is missing)")
    try:
        values = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ConfigError(f"--resume {run_dir}: config.json is not readable JSON ({error})") from None
    return config_from_json_dict(values, f"--resume {run_dir}: config.json", trust)


def experiment_differences(first: TrainConfig, second: TrainConfig) -> list[str]:
    """The settings that define the experiment (all but NON_EXPERIMENT_SETTINGS) and differ."""
    return [
        field.name
        for field in dataclasses.fields(TrainConfig)
        if field.name not in NON_EXPERIMENT_SETTINGS and getattr(first, field.name) != getattr(second, field.name)
    ]


def check_resume_overrides(stored: TrainConfig, requested: TrainConfig, given: set[str]) -> None:
    """Refuse options given with --resume that contradict the run's config.json (`--causal-method auto` does not:
    the run keeps the method it recorded, see resumed_config)."""
    for name in sorted(given - RESUMABLE_SETTINGS):
        if not hasattr(stored, name):
            continue
        if name == "causal_method" and requested.causal_method == "auto":
            continue
        if getattr(requested, name) != getattr(stored, name):
            raise ConfigError(
                f"--{_flag(name)} {getattr(requested, name)} contradicts the resumed run's {name} = "
                f"{getattr(stored, name)}; only {', '.join('--' + _flag(n) for n in sorted(RESUMABLE_SETTINGS - {'resume'}))} "
                "may change on --resume"
            )


def resumed_config(stored: TrainConfig, requested: TrainConfig, given: set[str]) -> TrainConfig:
    """The configuration a resumed run continues with: ``requested`` (``stored`` with the options ``given`` on
    top), checked by check_resume_overrides, keeping the causal method the run recorded (and why) where
    ``requested`` says auto. A config.json from before auto existed recorded its method explicitly."""
    check_resume_overrides(stored, requested, given)
    return dataclasses.replace(
        requested, causal_method=stored.causal_method, causal_method_reason=stored.causal_method_reason
    )


def to_json_dict(config: TrainConfig) -> dict:
    values = dataclasses.asdict(config)
    values["run_dir"] = None if config.run_dir is None else str(config.run_dir)
    values["resume"] = None
    del values["trust_run_code"]  # what this process was allowed to import, not part of the run
    return values
