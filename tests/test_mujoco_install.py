"""The check for a MuJoCo 3.3.0 installed over the leftovers of MuJoCo 4, on simulated package metadata."""

from importlib import metadata

import pytest

from ace_rl import mujoco_install
from ace_rl.envs import EnvError, check_env_id


@pytest.fixture
def installed(monkeypatch):
    """Pretend that exactly the given distributions (name -> version) are installed."""

    def pretend(**versions: str) -> None:
        def version(name: str) -> str:
            if name not in versions:
                raise metadata.PackageNotFoundError(name)
            return versions[name]

        monkeypatch.setattr(mujoco_install.metadata, "version", version)
        mujoco_install.mujoco_install_problem.cache_clear()

    yield pretend
    mujoco_install.mujoco_install_problem.cache_clear()


def test_leftovers_of_mujoco_4_under_mujoco_3_are_named_with_the_fix(installed):
    installed(**{"mujoco": "3.3.0", "mujoco-core": "4.0.0", "mujoco-studio": "4.0.0"})
    problem = mujoco_install.mujoco_install_problem()
    assert "\n" not in problem
    assert "mujoco 3.3.0" in problem and "mujoco-core 4.0.0, mujoco-studio 4.0.0" in problem
    assert problem.endswith(
        "pip uninstall -y mujoco-core mujoco-studio && pip install --force-reinstall --no-deps mujoco==3.3.0"
    )


def test_only_the_leftover_parts_are_uninstalled(installed):
    installed(**{"mujoco": "3.3.0", "mujoco-core": "4.0.1"})
    assert "pip uninstall -y mujoco-core && " in mujoco_install.mujoco_install_problem()


@pytest.mark.parametrize(
    "versions",
    [
        {"mujoco": "3.3.0"},
        {"mujoco": "4.0.0", "mujoco-core": "4.0.0", "mujoco-studio": "4.0.0"},
        {},
    ],
    ids=["mujoco 3 alone", "whole mujoco 4", "no mujoco"],
)
def test_consistent_installs_pass(installed, versions):
    installed(**versions)
    assert mujoco_install.mujoco_install_problem() is None


def test_environment_ids_are_refused_before_mujoco_is_imported(installed):
    installed(**{"mujoco": "3.3.0", "mujoco-core": "4.0.0"})
    with pytest.raises(EnvError, match="MuJoCo is broken"):
        check_env_id("Hopper-v5")


def test_this_environment_is_whole():
    mujoco_install.mujoco_install_problem.cache_clear()
    assert mujoco_install.mujoco_install_problem() is None
