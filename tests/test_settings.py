"""A run's settings and each agent's hyperparameters are separate objects; however a configuration is built (the
command line, ``TrainConfig(...)``, `compose` of the parts), the same choices give the same run.

The expected defaults are written out from the paper and the reference algorithms (shared/design.md), not read
from the package's tables."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

import ace_rl as library
from ace_rl.agents import agent_spec
from ace_rl.config import ConfigError, RunSettings, TrainConfig, compose, config_from_json_dict, to_json_dict
from ace_rl.hyperparameters import ACESettings, OffPolicySettings, TD3Settings
from ace_rl.trust import CodeTrust
from test_end_to_end import ace_rl

# What every configuration of this file chooses; everything else is left to the preset and the agent.
CHOSEN = dict(env="Pendulum-v1", total_steps=300, start_steps=100, batch_size=32, hidden_size=16, eval_every=300)
CHOSEN_RUN = dict(eval_episodes=1, progress=False, threads=1)
CHOSEN_AGENT = {name: CHOSEN[name] for name in ("start_steps", "batch_size", "hidden_size")}
CHOSEN_RUN_PART = {name: CHOSEN[name] for name in ("env", "total_steps", "eval_every")}


def _flags(values: dict[str, object]) -> list[str]:
    return [part for name, value in values.items() for part in (f"--{name.replace('_', '-')}", str(value))]


@pytest.mark.parametrize(
    ("preset", "algo", "expected"),
    [
        # The paper preset: 3 x 1024 networks, batch 512, 10,000 random steps, fits and evaluations every 10,000
        # steps, resets every 100,000 updates after 5,000 (the official code's configuration).
        (
            "paper",
            "ace",
            dict(
                hidden_size=1024,
                batch_size=512,
                start_steps=10_000,
                total_steps=1_000_000,
                eval_every=10_000,
                causal_interval=10_000,
                causal_samples=10_000,
                reset="reset",
                reset_interval=100_000,
                reset_start=5_000,
                policy_frequency=2,
                warmup_updates=True,
            ),
        ),
        # SAC: ACE's code without resets, the actor updated on every critic update (Haarnoja et al. 2018).
        ("paper", "sac", dict(hidden_size=1024, batch_size=512, reset="none", policy_frequency=1, warmup_updates=True)),
        # TD3: delayed policy updates every 2nd critic update, no updates before the policy acts (Fujimoto et al.).
        (
            "paper",
            "td3",
            dict(
                hidden_size=1024,
                reset="none",
                policy_frequency=2,
                warmup_updates=False,
                policy_noise=0.2,
                noise_clip=0.5,
                exploration_noise=0.1,
            ),
        ),
        # The small preset: 3 x 256, batch 256, 5,000 random steps, 100,000 steps, fits every 5,000.
        (
            "small",
            "ace",
            dict(
                hidden_size=256,
                batch_size=256,
                start_steps=5_000,
                total_steps=100_000,
                eval_every=5_000,
                causal_interval=5_000,
                causal_samples=5_000,
                reset="reset",
                reset_interval=20_000,
                policy_frequency=2,
            ),
        ),
        ("small", "sac", dict(hidden_size=256, batch_size=256, reset="none", policy_frequency=1)),
        ("small", "td3", dict(hidden_size=256, start_steps=5_000, policy_frequency=2, warmup_updates=False)),
    ],
)
def test_a_configuration_built_in_python_takes_its_presets_and_its_agents_defaults(preset, algo, expected):
    built = TrainConfig(preset=preset, algo=algo)
    assert {name: getattr(built, name) for name in expected} == expected
    # The agent's own settings object says the same, and holds nothing of the run or of another agent.
    agent_settings = built.agent_settings()
    assert type(agent_settings) is {"ace": ACESettings, "sac": ACESettings, "td3": TD3Settings}[algo]
    not_the_agents = {"total_steps", "eval_every"} | ({"reset"} if algo == "td3" else set())
    own = {name: value for name, value in expected.items() if name not in not_the_agents}
    assert {name: getattr(agent_settings, name) for name in own} == own
    assert not hasattr(agent_settings, "env") and not hasattr(agent_settings, "total_steps")
    assert hasattr(agent_settings, "policy_noise") == (algo == "td3")
    assert hasattr(agent_settings, "causal_interval") == (algo != "td3")


def test_sac_keeps_its_schedule_however_it_is_built():
    """The defect this replaces: TrainConfig(algo="sac", reset="none") trained SAC on ACE's schedule."""
    for built in (
        TrainConfig(algo="sac"),
        TrainConfig(algo="sac", reset="none"),
        library.preset_config("paper", "sac"),
        compose(RunSettings(), agent_spec("sac").default_settings("paper"), "sac"),
    ):
        assert (built.policy_frequency, built.reset) == (1, "none")
    # Given explicitly, a setting wins over the agent's default.
    assert TrainConfig(algo="sac", policy_frequency=2).policy_frequency == 2


def test_the_parts_are_separate_objects_and_compose_into_the_whole():
    run = RunSettings.for_preset("small", env="Walker2d-v5", seed=4)
    assert (run.total_steps, run.eval_every, run.seed) == (100_000, 5_000, 4)
    assert not hasattr(run, "hidden_size") and not hasattr(run, "algo")
    td3 = TD3Settings.for_preset("small", exploration_noise=0.3)
    whole = compose(run, td3, "td3", "small")
    assert whole.run_settings == run and whole.agent_settings() == td3
    assert whole == TrainConfig(preset="small", algo="td3", env="Walker2d-v5", seed=4, exploration_noise=0.3)
    with pytest.raises(ConfigError, match="--algo td3 takes its hyperparameters as TD3Settings, got ACESettings"):
        compose(run, ACESettings(), "td3")
    # A settings object made on its own holds the paper preset's values.
    assert (OffPolicySettings().hidden_size, ACESettings().reset_interval, TD3Settings().warmup_updates) == (
        1024,
        100_000,
        False,
    )


def test_unknown_preset_or_agent_is_one_line():
    with pytest.raises(ConfigError, match="unknown --preset 'tiny'; accepted: paper, small"):
        TrainConfig(preset="tiny")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="unknown --algo 'ppo'"):
        TrainConfig(algo="ppo")


def test_an_old_config_json_reads_with_the_defaults_it_had(tmp_path: Path):
    """A config.json written before the settings were split (today's flat file, here without the settings added
    since the first release) reads back with the values it meant: nothing of its agent is looked up again."""
    written = to_json_dict(TrainConfig(algo="td3", preset="small"))
    for later in ("warmup_updates", "policy_noise", "causal_target", "budget_scale", "distractor_actions"):
        del written[later]
    read = config_from_json_dict(written, "config.json", CodeTrust.given())
    # The settings that were missing take what they defaulted to before they existed: updates during the start
    # steps (TD3's own default came later), the paper's noise, the official target, the whole budget.
    assert (read.warmup_updates, read.policy_noise, read.causal_target, read.budget_scale) == (True, 0.2, "reward", 1.0)
    assert read.hidden_size == 256 and read.reset == "none"


@pytest.mark.parametrize("algo", ["ace", "sac", "td3"])
def test_the_python_parts_write_the_config_json_the_command_line_writes(tmp_path: Path, algo: str):
    """The same run chosen three ways: `ace-rl train`, ``ace_rl.train(TrainConfig(...))`` and ``ace_rl.train``
    of `compose` of a RunSettings and the agent's settings; the three config.json files are equal but for where
    the run is."""
    cli_dir = tmp_path / "cli"
    result = ace_rl(
        "train",
        "--algo",
        algo,
        "--preset",
        "small",
        *_flags({**CHOSEN, "eval_episodes": 1, "threads": 1}),
        "--run-dir",
        str(cli_dir),
        "--no-progress",
    )
    assert result.returncode == 0, result.stderr
    direct = TrainConfig(algo=algo, preset="small", run_dir=tmp_path / "direct", **CHOSEN, **CHOSEN_RUN)
    run = RunSettings.for_preset("small", run_dir=tmp_path / "parts", **CHOSEN_RUN_PART, **CHOSEN_RUN)
    agent_settings = dataclasses.replace(agent_spec(algo).default_settings("small"), **CHOSEN_AGENT)
    parts = compose(run, agent_settings, algo, "small")
    written = {}
    for config in (direct, parts):
        library.train(config)
    for name in ("cli", "direct", "parts"):
        values = json.loads((tmp_path / name / "config.json").read_text())
        values.pop("run_dir")
        written[name] = values
    assert written["direct"] == written["cli"]
    assert written["parts"] == written["cli"]
    # ...and each took its agent's own schedule, not ACE's.
    assert (written["cli"]["policy_frequency"], written["cli"]["reset"]) == {
        "ace": (2, "reset"),
        "sac": (1, "none"),
        "td3": (2, "none"),
    }[algo]


def test_the_reset_choice_and_the_reset_variants_name_the_same_resets():
    """--reset's one list of choices (the ResetKind literal) and the variants ACE acts on agree, both ways."""
    from ace_rl.hyperparameters import RESET_KINDS
    from ace_rl.resets import NO_RESET, RESET_VARIANTS, ResetVariant

    assert sorted(RESET_KINDS) == sorted([NO_RESET, *RESET_VARIANTS])
    for name in RESET_KINDS:
        variant = ResetVariant.from_name(name)
        assert (variant is None) == (name == "none") and (variant is None or variant.name == name)
