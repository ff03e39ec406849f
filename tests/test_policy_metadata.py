"""Policy files' metadata as `PolicyMetadata`: files in the format written before it existed (a plain dict of
entries) still load, a written file holds the same entries as before, and reading the metadata imports nothing."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from ace_rl.agents import agent_spec
from ace_rl.checkpoint import CheckpointError, read_policy_file, save_policy
from ace_rl.policy import load_policy
from ace_rl.policy_metadata import ObservationLeaf, PolicyMetadata
from ace_rl.trust import UntrustedCodeError

OBS_DIM, ACTION_DIM, HIDDEN = 6, 2, 8
LOW, HIGH = torch.tensor([-1.0, -2.0]), torch.tensor([1.0, 2.0])

# The entries a best.pt holds besides "actor", as the trainer wrote them before PolicyMetadata (trainer.py's
# checkpoint_metadata with env_step and eval_return_mean): the format of every policy file of older runs.
ENTRIES_BEFORE_POLICY_METADATA: dict[str, Any] = {
    "env": "PointReach-v0",
    "env_kwargs": {"dict_observations": True},
    "reward": "sparse",
    "algo": "sac",
    "seed": 3,
    "distractor_actions": 1,
    "obs_dim": OBS_DIM,
    "action_dim": ACTION_DIM,
    "hidden_size": HIDDEN,
    "action_low": LOW,
    "action_high": HIGH,
    "observation_layout": [
        {"keys": ["observation"], "size": 4, "shape": [4], "dtype": "float32"},
        {"keys": ["desired_goal"], "size": 2, "shape": [2], "dtype": "float64"},
    ],
    "observation_low": torch.full((OBS_DIM,), -float("inf")),
    "observation_high": torch.full((OBS_DIM,), float("inf")),
    "env_step": 1200,
    "eval_return_mean": -3.5,
}
# A file of a version before Dict layouts, observation bounds, distractor actions and seeds were recorded.
OLDEST_ENTRIES = {
    name: ENTRIES_BEFORE_POLICY_METADATA[name]
    for name in ("env", "algo", "obs_dim", "action_dim", "hidden_size", "action_low", "action_high")
}


def sac_actor() -> torch.nn.Module:
    torch.manual_seed(0)
    return agent_spec("sac").make_policy(OBS_DIM, ACTION_DIM, HIDDEN, LOW, HIGH)


def write_dict_file(path: Path, entries: dict[str, Any], actor: torch.nn.Module) -> Path:
    torch.save({"actor": actor.state_dict(), **entries}, path)
    return path


def test_a_policy_file_of_the_dict_format_loads_with_its_metadata_typed(tmp_path: Path) -> None:
    actor = sac_actor()
    path = write_dict_file(tmp_path / "best.pt", ENTRIES_BEFORE_POLICY_METADATA, actor)

    loaded, metadata = read_policy_file(path)

    assert (metadata.env, metadata.algo, metadata.reward, metadata.seed) == ("PointReach-v0", "sac", "sparse", 3)
    assert (metadata.obs_dim, metadata.action_dim, metadata.hidden_size) == (OBS_DIM, ACTION_DIM, HIDDEN)
    assert metadata.env_kwargs == {"dict_observations": True} and metadata.distractor_actions == 1
    assert (metadata.env_step, metadata.eval_return_mean) == (1200, -3.5)
    assert torch.equal(metadata.action_low, LOW) and torch.equal(metadata.action_high, HIGH)
    assert metadata.observation_layout == (
        ObservationLeaf(("observation",), 4, (4,), np.dtype("float32")),
        ObservationLeaf(("desired_goal",), 2, (2,), np.dtype("float64")),
    )
    observations = torch.randn(5, OBS_DIM)
    assert torch.equal(loaded.deterministic(observations), actor.deterministic(observations))

    policy = load_policy(path)
    assert policy.env_id == "PointReach-v0" and policy.distractor_actions == 1
    assert policy.observation_layout == [(("observation",), 4), (("desired_goal",), 2)]
    np.testing.assert_array_equal(policy.action_low, LOW.numpy())
    bounds = policy.observation_bounds
    assert bounds is not None and np.all(np.isinf(bounds[0]))


def test_a_policy_file_of_the_oldest_format_loads_with_the_defaults(tmp_path: Path) -> None:
    path = write_dict_file(tmp_path / "final.pt", OLDEST_ENTRIES, sac_actor())

    policy = load_policy(path)

    metadata = policy.metadata
    assert (metadata.env_kwargs, metadata.reward, metadata.distractor_actions, metadata.seed) == ({}, "dense", 0, None)
    assert (metadata.observation_layout, metadata.observation_low, metadata.env_step) == (None, None, None)
    assert policy.observation_layout is None and policy.observation_bounds is None
    assert policy.predict(np.zeros(OBS_DIM)).shape == (ACTION_DIM,)


def test_an_old_layout_without_shapes_reads_as_vectors_of_float32() -> None:
    entries = {**OLDEST_ENTRIES, "observation_layout": [{"keys": ["a", "b"], "size": 3}]}
    layout = PolicyMetadata.from_entries(entries).observation_layout
    assert layout == (ObservationLeaf(("a", "b"), 3, (3,), np.dtype("float32")),)


def test_a_written_policy_file_holds_the_entries_of_the_dict_format(tmp_path: Path) -> None:
    actor = sac_actor()
    path = tmp_path / "best.pt"

    save_policy(path, actor, PolicyMetadata.from_entries(ENTRIES_BEFORE_POLICY_METADATA))

    written = torch.load(path, weights_only=True)
    assert written.keys() == {"actor", *ENTRIES_BEFORE_POLICY_METADATA}
    for name, value in ENTRIES_BEFORE_POLICY_METADATA.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(written[name], value), name
        else:
            assert written[name] == value, name


@pytest.mark.parametrize(
    "change, cause",
    [
        ({"obs_dim": None}, "no 'obs_dim' entry"),
        ({"env": 7}, "the 'env' entry is a int, not a string"),
        ({"env_kwargs": [1, 2]}, "the 'env_kwargs' entry is a list, not a dict"),
        ({"hidden_size": "wide"}, "invalid literal"),
    ],
)
def test_a_malformed_entry_is_one_checkpoint_error(tmp_path: Path, change: dict[str, Any], cause: str) -> None:
    entries = {**ENTRIES_BEFORE_POLICY_METADATA, **change}
    entries = {name: value for name, value in entries.items() if value is not None}
    path = write_dict_file(tmp_path / "best.pt", entries, sac_actor())
    with pytest.raises(CheckpointError, match="not a readable ace-rl policy checkpoint") as raised:
        read_policy_file(path)
    assert cause in str(raised.value)


def test_reading_metadata_imports_nothing_it_names(tmp_path: Path) -> None:
    planted = {**OLDEST_ENTRIES, "env": "planted_env_module:make", "algo": "planted_agent_module:agent"}

    metadata = PolicyMetadata.from_entries(planted)

    assert (metadata.env, metadata.algo) == ("planted_env_module:make", "planted_agent_module:agent")
    path = write_dict_file(tmp_path / "best.pt", planted, sac_actor())
    with pytest.raises(UntrustedCodeError, match="planted_agent_module"):
        read_policy_file(path)
    assert "planted_env_module" not in sys.modules and "planted_agent_module" not in sys.modules
