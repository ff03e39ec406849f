"""`ace-rl sweep --plan`: the shipped paper plan against the paper's tasks, budgets and rewards (written out here from
design.md section 6, independently of its TOML), --budget-scale against hand-computed values, bad plan files refused
in one line writing nothing, a user's plan of two tiny blocks run for real on Ray (interrupted, continued, shown by
--status, reported beside its reference), and --gpus-per-run on a `ray start --head --num-gpus 2` cluster."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from ace_rl.cli import main, parse_train
from ace_rl.config import EXECUTION_SETTINGS, to_json_dict
from ace_rl.sweep import SweepArgs, SweepError, build_spec, plan_runs
from test_sweep import ace_rl_command, complete_states, needs_sweep_extra, read_rows

# The paper's experiment as design.md section 6 states it: (task id, reward, total env steps).
MUJOCO = [("Hopper-v5", 1_000_000), ("Walker2d-v5", 1_000_000), ("HalfCheetah-v5", 1_000_000), ("Ant-v5", 3_000_000)]
DMC = ["cheetah-run", "walker-run", "quadruped-walk", "reacher-hard", "hopper-stand"]
METAWORLD = (
    "basketball coffee-push disassemble door-open door-unlock drawer-open hammer pick-place-wall plate-slide soccer "
    "stick-push sweep-into hand-insert window-open"
).split()
DEXTEROUS = ["AdroitHandDoor-v1", "HandManipulateEggRotateDense-v1", "HandManipulatePenRotateDense-v1"]
PAPER = (
    [(env, "dense", steps) for env, steps in MUJOCO]
    + [(f"dmc:{task}", "dense", 400_000) for task in DMC]
    + [(f"metaworld:{task}-v3", "dense", 1_000_000) for task in METAWORLD]
    + [(env, "dense", 1_000_000) for env in DEXTEROUS]
    + [("DKittyStandRandom-v0", "sparse", 1_000_000), ("DKittyOrientRandom-v0", "sparse", 1_000_000)]
    + [("PandaReachJoints-v3", "sparse", 100_000)]
    + [(f"metaworld:{task}-v3", "sparse", 1_000_000) for task in ("window-open", "door-open", "hand-insert")]
)
PORTED_BY_ANOTHER_CHANGE = {"DKittyStandRandom-v0", "DKittyOrientRandom-v0"}  # ace-rl's port of ROBEL's D'Kitty


def dry_run(capsys, *argv: str) -> list[str]:
    main(["sweep", *argv, "--dry-run"])
    return capsys.readouterr().out.splitlines()


def dry_run_rows(lines: list[str]) -> list[tuple[str, str, int, int, int]]:
    """(task, reward, total steps, eval every, runs) of each row of a plan's dry-run table."""
    rows = []
    for line in lines[2:-1]:
        _, task, reward, total, every, runs = line.split()
        rows.append((task, reward, int(total.replace(",", "")), int(every.replace(",", "")), int(runs)))
    return rows


# ------------------------------------------------------------------------------------------------------------------
# The paper plan
# ------------------------------------------------------------------------------------------------------------------
def test_the_paper_plan_lists_exactly_the_papers_29_tasks_with_their_budgets_and_rewards(
    capsys, tmp_path: Path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    lines = dry_run(capsys, "--plan", "paper")
    rows = dry_run_rows(lines)
    assert [(task, reward, total) for task, reward, total, _, _ in rows] == PAPER
    assert len({task for task, _, _ in PAPER}) == 29 and len(PAPER) == 32  # 3 Meta-World tasks run with both rewards
    assert all(every == 10_000 and runs == 1 for *_, every, runs in rows)
    assert (
        lines[0] == "plan paper (paper): 29 tasks (32 with their rewards) x 1 algo x 1 seed = 32 runs, budget scale 1"
    )
    total = sum(steps for *_, steps in PAPER)
    assert lines[-1] == f"29 tasks, 32 runs, {total:,} env steps in all; nothing started (--dry-run)"
    assert list(tmp_path.iterdir()) == []  # nothing written, and the D'Kitty tasks need not be installed

    lines = dry_run(capsys, "--plan", "paper", "--algo", "ace", "sac", "td3", "--seed", "0-4")
    assert all(runs == 15 for *_, runs in dry_run_rows(lines))
    assert lines[-1].startswith("29 tasks, 480 runs, ")


def test_every_task_of_the_paper_plan_is_an_id_of_its_installed_suite():
    import gymnasium as gym

    from ace_rl.suites import dmc, meta_world, panda, robotics

    robotics.register()
    panda.register()
    metaworld_names, dmc_names = set(meta_world.known_names()), set(dmc.known_names())
    for task, _, _ in PAPER:
        if task in PORTED_BY_ANOTHER_CHANGE:
            continue
        if task.startswith("dmc:"):
            assert task.removeprefix("dmc:") in dmc_names, task
        elif task.startswith("metaworld:"):
            assert task.removeprefix("metaworld:") in metaworld_names, task
        else:
            assert task in gym.registry, task


def test_same_task_with_both_rewards_gets_two_run_directories(tmp_path: Path):
    spec = build_spec(SweepArgs(plan="paper", algo=["ace"], seed=["3"]), [])
    names = [run.name for run, _ in plan_runs(spec, tmp_path, parse_train)]
    assert len(set(names)) == 32
    assert "metaworld_window-open-v3__ace__s3" in names and "metaworld_window-open-v3__ace__s3__reward-sparse" in names


def test_a_common_option_applies_to_every_block_unless_the_block_sets_it(tmp_path: Path):
    spec = build_spec(SweepArgs(plan="paper"), ["--preset", "small", "--total-steps", "5000", "--gamma", "0.98"])
    configs = {config.env: config for _, config in plan_runs(spec, tmp_path, parse_train)}
    assert configs["Ant-v5"].total_steps == 3_000_000 and configs["Ant-v5"].hidden_size == 256  # the block's, small
    assert all(config.gamma == 0.98 and config.preset == "small" for config in configs.values())


# ------------------------------------------------------------------------------------------------------------------
# --budget-scale
# ------------------------------------------------------------------------------------------------------------------
def test_budget_scale_multiplies_the_budget_and_the_intervals_that_scale_with_it(tmp_path: Path):
    spec = build_spec(SweepArgs(plan="paper", budget_scale=0.02), [])
    planned = {(config.env, config.reward): (run, config) for run, config in plan_runs(spec, tmp_path, parse_train)}
    # By hand, from the paper preset (design.md section 3) and the plan's budgets, times 0.02:
    hopper = dict(
        total_steps=20_000,
        start_steps=200,
        eval_every=200,
        checkpoint_every=400,
        log_every=20,
        causal_interval=200,
        causal_samples=200,
        reset_interval=2_000,
        reset_start=100,
        batch_size=512,
        buffer_size=1_000_000,
        hidden_size=1024,
        eval_episodes=10,
        budget_scale=0.02,
    )
    run, config = planned[("Hopper-v5", "dense")]
    assert {name: getattr(config, name) for name in hopper} == hopper
    assert run.total_steps == 20_000
    assert planned[("Ant-v5", "dense")][1].total_steps == 60_000
    assert planned[("PandaReachJoints-v3", "sparse")][1].total_steps == 2_000
    assert planned[("dmc:cheetah-run", "dense")][1].total_steps == 8_000
    # What a Ray worker builds from the run's argv is the planned configuration (fresh start, or --resume later).
    for run, config in planned.values():
        rebuilt = parse_train([*run.train_argv])
        assert _experiment(rebuilt) == _experiment(config), run.name

    # A tiny scale keeps every value a valid positive integer: round(100,000 x 0.0001) = 10 steps, a batch of at
    # most 10, log_every round(0.1) -> 1, reset_start round(0.5) -> 0.
    spec = build_spec(SweepArgs(plan="paper", budget_scale=0.0001), [])
    panda = next(c for _, c in plan_runs(spec, tmp_path, parse_train) if c.env == "PandaReachJoints-v3")
    assert (panda.total_steps, panda.eval_every, panda.batch_size, panda.log_every, panda.reset_start) == (
        10,
        1,
        10,
        1,
        0,
    )
    assert (panda.start_steps, panda.causal_interval, panda.causal_samples, panda.checkpoint_every) == (1, 1, 1, 2)


def _experiment(config) -> dict:
    values = to_json_dict(config)
    return {name: value for name, value in values.items() if name not in EXECUTION_SETTINGS}


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf"])
def test_a_budget_scale_that_is_not_a_positive_number_is_one_line(value: str, capsys, tmp_path: Path):
    with pytest.raises(SystemExit) as exit:
        main(["sweep", "--plan", "paper", "--budget-scale", value, "--out", str(tmp_path / "sweep")])
    assert exit.value.code == 2
    assert capsys.readouterr().err == f"ace-rl: error: --budget-scale must be a positive number, got {float(value)}\n"
    assert not (tmp_path / "sweep").exists()


# ------------------------------------------------------------------------------------------------------------------
# Bad plan files
# ------------------------------------------------------------------------------------------------------------------
BLOCK = '[[block]]\nname = "b"\ntasks = ["InvertedPendulum-v5"]\n'
BAD_PLANS = {
    "unknown option": (BLOCK + "total_step = 100\n", "block b: unknown option total_step;"),
    "decided option": (
        BLOCK + 'run_dir = "x"\n',
        "block b: run_dir is not a plan option: each run goes to DIR/RUN_NAME",
    ),
    "threads": (BLOCK + "threads = 2\n", "block b: threads is not a plan option: use --threads-per-run"),
    "algorithm": (BLOCK + 'algo = "sac"\n', "block b: algo is not a plan option: the command gives the algorithms"),
    "budget scale": (BLOCK + "budget_scale = 0.5\n", "block b: budget_scale is not a plan option"),
    "no tasks": ('[[block]]\nname = "b"\n', "block b: no tasks;"),
    "no name": ('[[block]]\ntasks = ["Hopper-v5"]\n', "block 1 has no name;"),
    "no blocks": ('name = "x"\n', "no blocks;"),
    "bad toml": ("[[block]\nname = 1\n", "not valid TOML ("),
    "wrong type": (BLOCK + 'total_steps = "many"\n', "block b: total_steps must be an integer, got 'many'"),
    "unknown reward": (BLOCK + 'reward = "shaped"\n', "block b: unknown reward 'shaped'; accepted: dense, sparse"),
    "unknown preset": (BLOCK + 'preset = "big"\n', "block b: unknown preset 'big'; accepted: paper, small"),
    "unknown key": ('title = "x"\n' + BLOCK, "unknown key title;"),
    "repeated block": (BLOCK + BLOCK, "block name b is used more than once"),
    "bad reference": (
        '[[block]]\nname = "b"\ntasks = [{ env = "Hopper-v5", reference = { ace = "high" } }]\n',
        "task Hopper-v5: reference must map algorithms to a number or [low, high]",
    ),
    "module id": (
        '[[block]]\nname = "b"\ntasks = ["examples.point_reach:PointReach-v0"]\n',
        "which would import and run module 'examples.point_reach'; files are data",
    ),
}


@pytest.mark.parametrize("case", list(BAD_PLANS))
def test_a_bad_plan_file_is_one_line_naming_it_and_writes_nothing(case: str, capsys, tmp_path: Path, monkeypatch):
    monkeypatch.delenv("ACE_RL_TRUSTED_MODULES", raising=False)
    text, message = BAD_PLANS[case]
    plan = tmp_path / "plan.toml"
    plan.write_text(text)
    out = tmp_path / "sweep"
    for extra in (["--out", str(out)], ["--dry-run"]):
        with pytest.raises(SystemExit) as exit:
            main(["sweep", "--plan", str(plan), *extra])
        assert exit.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith(f"ace-rl: error: --plan {plan}") and err.count("\n") == 1 and message in err, err
    assert sorted(path.name for path in tmp_path.iterdir()) == ["plan.toml"]


def test_a_missing_plan_and_a_plan_with_env_are_one_line(capsys, tmp_path: Path):
    for argv, message in (
        (["--plan", "papper"], "--plan papper: no such plan; accepted: paper or a FILE.toml"),
        (["--plan", str(tmp_path / "none.toml")], f"--plan {tmp_path / 'none.toml'}: cannot read it (No such file"),
        (["--plan", "paper", "--env", "Hopper-v5"], "--plan names its tasks; give --env without --plan"),
    ):
        with pytest.raises(SystemExit):
            main(["sweep", *argv, "--out", str(tmp_path / "sweep")])
        err = capsys.readouterr().err
        assert err.startswith(f"ace-rl: error: {message}") and err.count("\n") == 1, err
    assert sorted(path.name for path in tmp_path.iterdir()) == []


def test_a_plans_module_id_is_imported_only_with_the_users_trust(capsys, tmp_path: Path, monkeypatch):
    plan = tmp_path / "plan.toml"
    plan.write_text('[[block]]\nname = "b"\ntotal_steps = 500\ntasks = ["examples.point_reach:PointReach-v0"]\n')
    monkeypatch.setenv("ACE_RL_TRUSTED_MODULES", "examples.point_reach")
    assert dry_run_rows(dry_run(capsys, "--plan", str(plan)))[0][:3] == (
        "examples.point_reach:PointReach-v0",
        "dense",
        500,
    )
    monkeypatch.delenv("ACE_RL_TRUSTED_MODULES")
    assert len(dry_run_rows(dry_run(capsys, "--plan", str(plan), "--trust-run-code"))) == 1


# ------------------------------------------------------------------------------------------------------------------
# A user's plan run for real on Ray
# ------------------------------------------------------------------------------------------------------------------
TINY_PLAN = """
name = "tiny"
reference_note = "made up for this test"

[[block]]
name = "pendulum"
domain = "Classic control"
total_steps = 3000
eval_every = 500
tasks = [{ env = "InvertedPendulum-v5", reference = { ace = 1000, sac = [800, 900] } }]

[[block]]
name = "panda"
domain = "Sparse rewards"
total_steps = 1000
reward = "sparse"
eval_every = 250
tasks = ["PandaReachJoints-v3"]
"""
# Small networks and replay; --budget-scale 0.5 halves the blocks' budgets: 1,500 and 500 env steps.
TINY_OPTIONS = ["--preset", "small", "--hidden-size", "32", "--batch-size", "32", "--buffer-size", "5000"]
TINY_OPTIONS += ["--eval-episodes", "1", "--checkpoint-every", "200"]


@needs_sweep_extra
def test_a_users_plan_runs_on_ray_is_continued_shown_and_reported_beside_its_reference(tmp_path: Path):
    plan = tmp_path / "tiny.toml"
    plan.write_text(TINY_PLAN)
    out = tmp_path / "sweep"
    command = ["--plan", str(plan), "--algo", "ace", "sac", "--seed", "0", "--budget-scale", "0.5", *TINY_OPTIONS]
    names = [
        "InvertedPendulum-v5__ace__s0",
        "InvertedPendulum-v5__sac__s0",
        "PandaReachJoints-v3__ace__s0__reward-sparse",
        "PandaReachJoints-v3__sac__s0__reward-sparse",
    ]
    environment = {key: value for key, value in os.environ.items() if key != "ACE_RL_TRUSTED_MODULES"}
    first = subprocess.Popen(
        ace_rl_command("sweep", "--out", str(out), *command),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
    )
    try:
        deadline = time.monotonic() + 300
        while not any(complete_states(out / name) for name in names[:2]):  # a pendulum run has checkpointed
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            time.sleep(0.2)
        first.send_signal(signal.SIGINT)
        _, stderr = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, stderr
    assert f"continue with: ace-rl sweep --out {out}" in stderr or "4 of 4 runs done" in stderr, stderr

    document = json.loads((out / "sweep.json").read_text())
    assert document["plan"]["name"] == "tiny" and document["budget_scale"] == 0.5
    assert [block["name"] for block in document["plan"]["block"]] == ["pendulum", "panda"]
    assert [run["name"] for run in document["runs"]] == names
    assert [run["config"]["total_steps"] for run in document["runs"]] == [1500, 1500, 500, 500]

    # A changed plan is refused in one line, writing nothing; the same sweep from sweep.json alone continues it.
    changed = tmp_path / "changed.toml"
    changed.write_text(TINY_PLAN.replace("total_steps = 1000", "total_steps = 2000"))
    refused = subprocess.run(
        ace_rl_command("sweep", "--out", str(out), *command[:1], str(changed), *command[2:]),
        capture_output=True,
        text=True,
        env=environment,
    )
    assert refused.returncode == 2
    assert (
        refused.stderr.count("\n") == 1 and "the plan's blocks panda differ from those in sweep.json" in refused.stderr
    )
    again = subprocess.run(
        ace_rl_command("sweep", "--out", str(out)), capture_output=True, text=True, env=environment, timeout=400
    )
    assert again.returncode == 0, again.stderr
    for name in names:
        assert (out / name / "checkpoints" / "final.pt").is_file(), name
    configs = {name: json.loads((out / name / "config.json").read_text()) for name in names}
    assert all(config["budget_scale"] == 0.5 for config in configs.values())
    assert [configs[name]["reward"] for name in names] == ["dense", "dense", "sparse", "sparse"]
    assert [configs[name]["eval_every"] for name in names] == [250, 250, 125, 125]

    status = subprocess.run(ace_rl_command("sweep", "--status", str(out)), capture_output=True, text=True)
    assert status.returncode == 0, status.stderr
    assert f"sweep {out}: plan tiny, budget scale 0.5, not running" in status.stdout
    assert all(name in status.stdout for name in names)

    # The report: the table beside the plan's reference, each number computed here from the runs' own files.
    report = tmp_path / "report"
    made = subprocess.run(
        ace_rl_command("report", str(out), "--out", str(report), "--reps", "200"), capture_output=True, text=True
    )
    assert made.returncode == 0, made.stderr
    rows = read_rows(report / "paper_table.csv")
    assert [(row["task"], row["group"], row["domain"]) for row in rows] == [
        ("InvertedPendulum-v5", "ace", "Classic control"),
        ("InvertedPendulum-v5", "sac", "Classic control"),
        ("PandaReachJoints-v3 (sparse)", "ace", "Sparse rewards"),
        ("PandaReachJoints-v3 (sparse)", "sac", "Sparse rewards"),
    ]
    for row, name in zip(rows, names):
        last = read_rows(out / name / "metrics.csv")[-1]
        score = last["eval_success_rate"] if "sparse" in row["task"] else last["eval_return_mean"]
        assert math.isclose(float(row["final_iqm"]), float(score), rel_tol=1e-5), (name, row)  # one seed: its value
        budget = 3000 if "Pendulum" in name else 1000
        assert float(row["env_step"]) == float(last["env_step"]) == budget / 2
        assert float(row["budget_percent"]) == 50 and row["plan_budget"] == str(budget) and row["budget_scale"] == "0.5"
    assert [row["reference"] for row in rows] == ["1000", "800-900", "", ""]
    summary = (report / "summary.md").read_text()
    assert "| Classic control | InvertedPendulum-v5 | sac | 1 (<5) |" in summary
    assert "| ~800-900 | 50 % (1,500 of 3,000 env steps; --budget-scale 0.5): not a reproduction |" in summary
    assert "reference (made up for this test)" in summary
    for stem in ("plan_domain__Classic_control", "plan_domain__Sparse_rewards", "learning_curves"):
        assert (report / f"{stem}.png").is_file(), sorted(p.name for p in report.iterdir())


# ------------------------------------------------------------------------------------------------------------------
# --gpus-per-run on a cluster that declares GPUs it does not have
# ------------------------------------------------------------------------------------------------------------------
@needs_sweep_extra
def test_gpus_per_run_places_runs_by_rays_gpu_accounting_and_is_recorded(tmp_path: Path):
    from test_sweep_faults import free_port, ray_head

    plan = tmp_path / "tiny.toml"
    plan.write_text(TINY_PLAN)
    port, client_port = free_port(), free_port()
    environment = {key: value for key, value in os.environ.items() if key not in ("RAY_ADDRESS", "RAY_AUTH_MODE")}
    environment["RAY_AUTH_MODE"] = "token"
    command = ["--plan", str(plan), "--algo", "sac", "--budget-scale", "0.2", *TINY_OPTIONS]
    with ray_head(port, client_port, num_gpus=2):
        address = ["--address", f"127.0.0.1:{port}"]
        too_many = subprocess.run(
            ace_rl_command("sweep", "--out", str(tmp_path / "refused"), *command, *address, "--gpus-per-run", "3"),
            capture_output=True,
            text=True,
            env=environment,
            timeout=300,
        )
        out = tmp_path / "sweep"
        ran = subprocess.run(
            ace_rl_command("sweep", "--out", str(out), *command, *address, "--gpus-per-run", "1"),
            capture_output=True,
            text=True,
            env=environment,
            timeout=400,
        )
    assert too_many.returncode == 2 and too_many.stderr == (
        "ace-rl: error: --gpus-per-run 3 but the Ray cluster has 2 GPUs\n"
    )
    assert not (tmp_path / "refused").exists()
    assert ran.returncode == 0, ran.stderr
    assert json.loads((out / "sweep.json").read_text())["resources"] == {
        "threads_per_run": 1,
        "gpus_per_run": 1.0,
        "max_concurrent": None,
    }
    # Two runs of one GPU each on two GPUs: Ray gave each run a GPU of its own, which it saw as CUDA_VISIBLE_DEVICES
    # (the device itself is not needed: --device auto trains on the CPU where CUDA has none).
    seen = set()
    for name in ("InvertedPendulum-v5__sac__s0", "PandaReachJoints-v3__sac__s0__reward-sparse"):
        log = (out / "logs" / f"{name}.log").read_text()
        devices = [
            line.split("CUDA_VISIBLE_DEVICES=")[1].split(":")[0] for line in log.splitlines() if "CUDA_VISIBLE" in line
        ]
        assert len(devices) == 1 and devices[0] in ("0", "1"), log
        seen.add(devices[0])
        assert json.loads((out / name / "config.json").read_text())["device"] == "auto"
    assert seen == {"0", "1"}


def test_budget_scale_is_recorded_as_an_experiment_setting():
    # budget_scale is an experiment setting (it changes the intervals), recorded in config.json at 1.0 by default.
    from ace_rl.config import NON_EXPERIMENT_SETTINGS, TrainConfig

    assert "budget_scale" not in NON_EXPERIMENT_SETTINGS
    assert to_json_dict(TrainConfig())["budget_scale"] == 1.0
    assert dataclasses.replace(TrainConfig(), budget_scale=0.5).budget_scale == 0.5
    with pytest.raises(SweepError):
        build_spec(SweepArgs(plan="papper"), [])
