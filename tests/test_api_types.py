"""Settings given from Python are type-checked as the command line's are, before anything is written.

`ace_rl.train` (keywords or a TrainConfig) and `ace_rl.resume` refuse a setting of the wrong type in one ConfigError
naming the setting, the value's type and what is accepted: no run directory, no .lock, no changed file.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import ace_rl
from ace_rl.config import ConfigError, preset_config, to_json_dict, validate

SMALL = dict(env="InvertedPendulum-v5", preset="small", total_steps=300, threads=1, progress=False)

# (settings, what the one-line error must say: the option, the type given, what is accepted)
WRONG_TYPES = [
    (dict(learning_rate="3e-4"), ["--learning-rate", "'3e-4' (str)", "a number (int or float)"]),
    (dict(gamma="x"), ["--gamma", "'x' (str)", "a number"]),
    (dict(tau=np.float32(0.005)), ["--tau", "numpy.float32", "a number"]),
    (dict(device=None), ["--device", "None (NoneType)", "auto, cpu, cuda or cuda:N"]),
    (dict(total_steps=True), ["--total-steps", "True (bool)", "an integer (int)"]),
    (dict(total_steps=np.int64(300)), ["--total-steps", "numpy.int64", "an integer (int)"]),
    (dict(seed=False), ["--seed", "False (bool)", "an integer"]),
    (dict(batch_size=32.0), ["--batch-size", "32.0 (float)", "an integer"]),
    (dict(causal_time_limit="10"), ["--causal-time-limit", "'10' (str)", "a number of seconds"]),
    (dict(compile="yes"), ["--compile", "'yes' (str)", "true or false"]),
    (dict(progress=1), ["--progress", "1", "true or false"]),
    (dict(wandb_project=5), ["--wandb-project", "5", "a str or None"]),
    (dict(wandb_tags="ace"), ["--wandb-tags", "'ace' (str)", "a tuple (or list) of str"]),
    (dict(run_dir=5), ["--run-dir", "5", "a pathlib.Path or None"]),
    (dict(reward=1), ["--reward", "1", "accepted: dense, sparse"]),
    (dict(env_kwargs=["goal", 0.3]), ["--env-kwargs", "(list)", "a JSON object (a dict)"]),
    (dict(env_kwargs='{"goal": 0.3}'), ["--env-kwargs", "(str)", "a JSON object (a dict)"]),
    (dict(env_kwargs={"goal": np.int64(3)}), ["--env-kwargs", "env_kwargs['goal'] is a numpy.int64"]),
    (dict(env_kwargs={"goal": [0.5, np.float64(0.3)]}), ["env_kwargs['goal'][1] is a numpy.float64"]),
    (dict(env_kwargs={"make": print}), ["env_kwargs['make'] is a builtin_function_or_method"]),
    (dict(env_kwargs={"goal": (0.5, 0.3)}), ["env_kwargs['goal'] is a tuple", "pass a list"]),
    (dict(env_kwargs={3: 0.5}), ["env_kwargs has the key 3", "not a str"]),
    (dict(env_kwargs={"goal": float("nan")}), ["env_kwargs['goal'] is nan"]),
]


def assert_one_line(error: ConfigError, fragments: list[str]) -> None:
    message = str(error)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


@pytest.mark.parametrize("settings, fragments", WRONG_TYPES, ids=repr)
def test_train_keywords_of_the_wrong_type_are_refused_before_anything_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings: dict, fragments: list[str]
):
    monkeypatch.chdir(tmp_path)  # a run_dir of the wrong type would otherwise default to runs/ here
    run_dir = tmp_path / "run"
    with pytest.raises(ConfigError) as refused:
        ace_rl.train(**{**SMALL, "run_dir": run_dir, **settings})
    assert_one_line(refused.value, fragments)
    assert list(tmp_path.iterdir()) == []  # no run directory, no .lock


@pytest.mark.parametrize("settings, fragments", WRONG_TYPES, ids=repr)
def test_a_train_config_of_the_wrong_type_is_refused_before_anything_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings: dict, fragments: list[str]
):
    monkeypatch.chdir(tmp_path)
    config = preset_config("small", env="InvertedPendulum-v5", run_dir=tmp_path / "run", threads=1, progress=False)
    given = dataclasses.replace(config, **settings)
    with pytest.raises(ConfigError) as refused:
        ace_rl.train(given)
    assert_one_line(refused.value, fragments)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "settings, fragments",
    [
        (dict(total_steps=True), ["--total-steps", "True (bool)", "an integer"]),
        (dict(total_steps="4000"), ["--total-steps", "'4000' (str)"]),
        (dict(device=None), ["--device", "None (NoneType)"]),
        (dict(checkpoint_every=np.int64(100)), ["--checkpoint-every", "numpy.int64"]),
        (dict(wandb_tags=["ok", 3]), ["--wandb-tags", "a tuple (or list) of str"]),
    ],
    ids=repr,
)
def test_resume_settings_of_the_wrong_type_change_nothing(tmp_path: Path, settings: dict, fragments: list[str]):
    # A run stopped before its first checkpoint: its config.json, as ace-rl train writes it.
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    config = preset_config("small", env="InvertedPendulum-v5", run_dir=run_dir, total_steps=300)
    (run_dir / "config.json").write_text(json.dumps(to_json_dict(config), indent=2) + "\n")
    before = {path.name: (path.stat().st_mtime_ns, path.read_bytes()) for path in run_dir.iterdir()}
    with pytest.raises(ConfigError) as refused:
        ace_rl.resume(run_dir, **settings)
    assert_one_line(refused.value, fragments)
    assert {path.name: (path.stat().st_mtime_ns, path.read_bytes()) for path in run_dir.iterdir()} == before


def test_resume_takes_a_path(tmp_path: Path):
    with pytest.raises(ConfigError, match=r"resume takes a run directory .* got a int"):
        ace_rl.resume(5)


def json_and_checkpoint_round_trip(value: object, tmp_path: Path) -> bool:
    """Whether ``value`` reads back equal from JSON (config.json) and loads from a checkpoint (best.pt, state-*.pt
    hold env_kwargs), the two places a run keeps its env_kwargs."""
    try:
        if json.loads(json.dumps(value)) != value:
            return False
    except (TypeError, ValueError):
        return False
    torch.save({"env_kwargs": value}, tmp_path / "value.pt")
    try:
        torch.load(tmp_path / "value.pt", weights_only=True)
    except Exception:  # noqa: BLE001 - refused, whichever way
        return False
    return True


@pytest.mark.parametrize(
    "env_kwargs",
    [
        {},
        {"goal": [0.5, -0.3], "size": 4, "name": "a", "flag": True, "none": None, "nested": {"x": [[1, 2], {}]}},
        {"goal": (0.5, -0.3)},
        {"goal": np.int64(3)},
        {"goal": np.float64(0.3)},
        {"goal": np.array([0.5])},
        {"make": print},
        {"goal": float("inf")},
        {1: "a"},
        {"goal": {"x": {2: 1}}},
        {"goal": {0.5, 0.3}},
    ],
    ids=repr,
)
def test_env_kwargs_are_accepted_exactly_when_config_json_and_checkpoints_hold_them(env_kwargs: dict, tmp_path: Path):
    config = preset_config("small", env="InvertedPendulum-v5", env_kwargs=env_kwargs)
    try:
        validate(config)
        accepted = True
    except ConfigError:
        accepted = False
    assert accepted == json_and_checkpoint_round_trip(env_kwargs, tmp_path)


def test_settings_of_the_right_types_pass(tmp_path: Path):
    validate(
        preset_config(
            "small",
            env="InvertedPendulum-v5",
            learning_rate=1,  # an int is a number
            gamma=0.99,
            causal_time_limit=30,
            wandb_tags=["a", "b"],
            env_kwargs={"goal": [0.5, -0.3]},
            run_dir=tmp_path,
        )
    )
