"""A run directory, a policy file and a sweep directory are data (issue 27): a file handed over by someone else names
code only as text, and no command or call imports or runs it unless the user allows it.

The attacker's files are real: a trained run's best.pt / final.pt rewritten with the values an attacker would plant
(an environment `os:system` with a command in its arguments, an environment or agent in a module of the attacker's
that runs a command when imported, placed in the working directory, which `python -m` puts on sys.path), its
config.json likewise, and a sweep.json naming the attacker's module. Every command reads them for real, and the
test checks that the command's marker file was never written.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

TINY = [
    "--preset",
    "small",
    "--total-steps",
    "300",
    "--start-steps",
    "100",
    "--batch-size",
    "32",
    "--hidden-size",
    "32",
    "--eval-every",
    "300",
    "--eval-episodes",
    "1",
    "--threads",
    "1",
    "--no-progress",
]
PAYLOAD = "evil_payload"
POINT = "examples.point_reach:PointReach-v0"
REPO = Path(__file__).resolve().parents[1]


def ace_rl(*args: str, cwd: Path, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m ace_rl.cli ARGS` in ``cwd`` (which Python puts first on sys.path, as an attacker hopes)."""
    env = {key: value for key, value in os.environ.items() if key != "ACE_RL_TRUSTED_MODULES"}
    env.update(extra_env or {})
    return subprocess.run(
        [sys.executable, "-m", "ace_rl.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=600, env=env
    )


def python(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "ACE_RL_TRUSTED_MODULES"}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=600, env=env)


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A genuine tiny run of a built-in agent on a built-in task."""
    run_dir = tmp_path_factory.mktemp("genuine") / "run"
    result = ace_rl(
        "train", "--env", "InvertedPendulum-v5", "--algo", "sac", *TINY, "--run-dir", str(run_dir), cwd=REPO
    )
    assert result.returncode == 0, result.stderr
    return run_dir


@pytest.fixture
def attacker(tmp_path: Path) -> tuple[Path, Path]:
    """The working directory the victim runs in, holding the attacker's module (which touches a marker on import),
    and that marker's path."""
    workdir = tmp_path / "work"
    workdir.mkdir()
    marker = tmp_path / "pwned"
    (workdir / f"{PAYLOAD}.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).touch()\n\ndef make(**kwargs):\n    raise SystemExit(0)\n"
    )
    return workdir, marker


def plant_policy(run_dir: Path, **values: object) -> None:
    for name in ("best.pt", "final.pt"):
        path = run_dir / "checkpoints" / name
        payload = torch.load(path, weights_only=True)
        payload.update(values)
        torch.save(payload, path)


def plant_config(run_dir: Path, **values: object) -> None:
    path = run_dir / "config.json"
    config = json.loads(path.read_text())
    config.update(values)
    path.write_text(json.dumps(config))


def copy_run(trained: Path, tmp_path: Path) -> Path:
    run_dir = tmp_path / "shared_run"
    shutil.copytree(trained, run_dir, ignore=shutil.ignore_patterns(".lock"))
    return run_dir


PLANTED = [
    pytest.param(lambda marker: {"env": "os:system", "env_kwargs": {"command": f"touch {marker}"}}, id="os-system"),
    pytest.param(lambda marker: {"env": f"{PAYLOAD}:make"}, id="env-module"),
    pytest.param(lambda marker: {"algo": f"{PAYLOAD}:agent"}, id="algo-module"),
]


@pytest.mark.parametrize("planted", PLANTED)
def test_a_planted_policy_file_runs_nothing_on_eval_export_predict_or_evaluate(
    trained: Path, tmp_path: Path, attacker: tuple[Path, Path], planted
):
    workdir, marker = attacker
    run_dir = copy_run(trained, tmp_path)
    values = planted(marker)
    plant_policy(run_dir, **values)
    module = str(values.get("env", values.get("algo"))).split(":")[0]

    evaluated = ace_rl("eval", str(run_dir), "--episodes", "1", cwd=workdir)
    assert evaluated.returncode == 2
    line = one_error_line(evaluated)
    assert repr(module) in line and ("--trust-run-code" in line or "standard-library" in line), line
    assert not marker.exists()

    exported = ace_rl("export", str(run_dir), "--out", str(tmp_path / "policy.onnx"), cwd=workdir)
    if "algo" in values:  # the policy's class is the planted module's code: refused
        assert exported.returncode == 2 and "--trust-run-code" in one_error_line(exported)
        assert not (tmp_path / "policy.onnx").exists()
    else:  # a built-in agent's policy exports from the file alone, checked on drawn observations
        assert exported.returncode == 0, exported.stderr
        assert "drawn from the recorded observation space" in exported.stdout
        assert (tmp_path / "policy.onnx").stat().st_size > 0
    assert not marker.exists()

    library = python(
        "import sys, numpy as np, ace_rl\n"
        f"run = {str(run_dir)!r}\n"
        "outcomes = []\n"
        "for call in (lambda: ace_rl.load_policy(run).predict(np.zeros(4)),\n"
        "             lambda: ace_rl.load_policy(run).predict({'observation': np.zeros(4)}),\n"
        "             lambda: ace_rl.evaluate(run, episodes=1)):\n"
        "    try:\n"
        "        call()\n"
        "        outcomes.append('ran')\n"
        "    except Exception as error:\n"
        "        outcomes.append(type(error).__name__)\n"
        "print(outcomes)\n",
        cwd=workdir,
    )
    assert library.returncode == 0, library.stderr
    outcomes = eval(library.stdout.strip().splitlines()[-1])  # a list of names printed by the snippet above
    if "algo" in values:
        assert outcomes == ["UntrustedCodeError"] * 3
    else:  # a flat observation needs no environment; a Dict one, or an evaluation, would build it
        assert outcomes[0] == "ran" and outcomes[1:] == ["UntrustedCodeError", "UntrustedCodeError"]
    assert not marker.exists()


@pytest.mark.parametrize("planted", PLANTED)
def test_a_planted_config_runs_nothing_on_resume(trained: Path, tmp_path: Path, attacker: tuple[Path, Path], planted):
    workdir, marker = attacker
    for only_config in (True, False):
        run_dir = tmp_path / f"run_{only_config}"
        if only_config:  # a run directory with nothing but config.json: resuming would start it from zero
            run_dir.mkdir()
            shutil.copy(trained / "config.json", run_dir / "config.json")
        else:
            shutil.copytree(trained, run_dir, ignore=shutil.ignore_patterns(".lock"))
        plant_config(run_dir, **planted(marker))
        before = (run_dir / "config.json").read_bytes()
        resumed = ace_rl("train", "--resume", str(run_dir), "--total-steps", "400", cwd=workdir)
        assert resumed.returncode == 2
        line = one_error_line(resumed)
        assert "config.json" in line and ("would import and run" in line or "standard-library" in line), line
        assert not marker.exists()
        assert (run_dir / "config.json").read_bytes() == before

        library = python(f"import ace_rl\nace_rl.resume({str(run_dir)!r}, total_steps=400)", cwd=workdir)
        assert "UntrustedCodeError" in library.stderr and not marker.exists()


def test_a_planted_sweep_json_runs_nothing(tmp_path: Path, attacker: tuple[Path, Path]):
    workdir, marker = attacker
    out = tmp_path / "sweep"
    out.mkdir()
    config = {"env": f"{PAYLOAD}:make", "algo": "sac", "total_steps": 300}
    document = {
        "grid": {"env": [f"{PAYLOAD}:make"], "algo": ["sac"], "seed": [0]},
        "options": [*TINY[:-4]],
        "runs": [{"name": f"{PAYLOAD}_make__sac__s0", "config": config}],
    }
    (out / "sweep.json").write_text(json.dumps(document))
    result = ace_rl("sweep", "--out", str(out), cwd=workdir)
    assert result.returncode == 2
    line = one_error_line(result)
    assert "sweep.json" in line and repr(PAYLOAD) in line and "--trust-run-code" in line, line
    assert not marker.exists()

    document["grid"]["env"] = ["InvertedPendulum-v5"]  # the module hidden in the common options instead
    document["options"] = [*TINY[:-4], "--algo", f"{PAYLOAD}:agent"]
    (out / "sweep.json").write_text(json.dumps(document))
    result = ace_rl("sweep", "--out", str(out), cwd=workdir)
    assert result.returncode == 2 and repr(PAYLOAD) in one_error_line(result)
    assert not marker.exists()


def test_a_report_over_planted_runs_runs_nothing(trained: Path, tmp_path: Path, attacker: tuple[Path, Path]):
    workdir, marker = attacker
    run_dir = copy_run(trained, tmp_path)
    plant_config(run_dir, env=f"{PAYLOAD}:make", algo=f"{PAYLOAD}:agent")
    plant_policy(run_dir, env=f"{PAYLOAD}:make", algo=f"{PAYLOAD}:agent")
    result = ace_rl("report", str(run_dir), "--out", str(tmp_path / "report"), "--reps", "50", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert not marker.exists()


def test_trust_is_given_by_the_user_and_says_what_it_imports(tmp_path: Path):
    """A run of a module's environment: refused from its files alone, continued when the user gives the id again,
    names the module with --trust-run-code, and opens to a module on the ACE_RL_TRUSTED_MODULES allow-list."""
    run_dir = tmp_path / "point"
    trained = ace_rl("train", "--env", POINT, "--algo", "sac", *TINY, "--run-dir", str(run_dir), cwd=REPO)
    assert trained.returncode == 0, trained.stderr

    refused = ace_rl("eval", str(run_dir), "--episodes", "1", cwd=REPO)
    assert refused.returncode == 2 and "'examples.point_reach'" in one_error_line(refused)
    trusted = ace_rl("eval", str(run_dir), "--episodes", "1", "--trust-run-code", cwd=REPO)
    assert trusted.returncode == 0, trusted.stderr
    assert "importing module 'examples.point_reach'" in trusted.stderr
    listed = ace_rl("eval", str(run_dir), "--episodes", "1", cwd=REPO, extra_env={"ACE_RL_TRUSTED_MODULES": "examples"})
    assert listed.returncode == 0, listed.stderr
    assert trusted.stdout == listed.stdout  # the same episodes either way

    refused = ace_rl("train", "--resume", str(run_dir), "--total-steps", "400", cwd=REPO)
    assert refused.returncode == 2 and "--trust-run-code" in one_error_line(refused)
    given_again = ace_rl("train", "--resume", str(run_dir), "--total-steps", "400", "--env", POINT, cwd=REPO)
    assert given_again.returncode == 0, given_again.stderr
    assert json.loads((run_dir / "config.json").read_text())["total_steps"] == 400
    assert "trust_run_code" not in json.loads((run_dir / "config.json").read_text())


def test_a_factory_named_by_an_id_is_checked_before_it_is_called(tmp_path: Path):
    """Even given on the command line, an id never calls a builtin or a standard-library function."""
    for env_id, fragment in (
        ("os:system", "standard library"),
        ("subprocess:run", "standard library"),
        ("numpy:zeros", "not an environment factory"),
        ("examples.point_reach:Sequence", "not a gymnasium.Env"),
    ):
        result = ace_rl("train", "--env", env_id, *TINY, "--run-dir", str(tmp_path / "run"), cwd=REPO)
        assert result.returncode == 2 and fragment in one_error_line(result), (env_id, result.stderr)
        assert not (tmp_path / "run").exists()


def test_a_dict_policy_flattens_from_its_file(tmp_path: Path):
    """A goal task's policy takes the environment's Dict observation with no environment built (no trust given): the
    recorded layout (observation, then desired goal; the achieved goal ignored) gives the same actions as the vector
    flattened by hand, one or a batch; a missing key, a wrong size or a non-number is one ValueError naming it."""
    import gymnasium as gym

    import examples.point_reach  # noqa: F401 - registers PointReach-v0 for the raw environment below
    from ace_rl.policy import load_policy

    run_dir = tmp_path / "reach"
    kwargs = '{"dict_observations": true}'
    trained = ace_rl("train", "--env", POINT, "--env-kwargs", kwargs, *TINY, "--run-dir", str(run_dir), cwd=REPO)
    assert trained.returncode == 0, trained.stderr
    policy = load_policy(run_dir)
    layout = policy.observation_layout
    assert layout == [(("observation",), 4), (("desired_goal",), 2)]

    raw = gym.make("PointReach-v0", dict_observations=True)
    observations = [raw.reset(seed=0)[0]]
    for _ in range(4):
        observations.append(raw.step(raw.action_space.sample())[0])
    by_hand = np.stack([np.concatenate([obs["observation"], obs["desired_goal"]]) for obs in observations])
    batch = {key: np.stack([obs[key] for obs in observations]) for key in observations[0]}
    np.testing.assert_array_equal(policy.predict(batch), policy.predict(by_hand))
    np.testing.assert_array_equal(policy.predict(observations[2]), policy.predict(by_hand[2]))
    with pytest.raises(ValueError, match="lacks desired_goal"):
        policy.predict({"observation": by_hand[0, :4]})
    with pytest.raises(ValueError, match="desired_goal has shape"):
        policy.predict({"observation": by_hand[0, :4], "desired_goal": np.zeros(3)})
    with pytest.raises(ValueError, match="not an array of numbers"):
        policy.predict({"observation": ["a", 1, 2, 3], "desired_goal": np.zeros(2)})
    with pytest.raises(ValueError, match="finite"):
        policy.predict([None, *by_hand[0, 1:]])
    with pytest.raises(ValueError, match="finite"):
        policy.predict(np.full(6, np.nan))
