"""`ace-rl sweep`: grid parsing, specification checks, the status table, and one real sweep on Ray in which a
worker is killed with SIGKILL and one run of each pair diverges."""

import csv
import dataclasses
import importlib.util
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import tyro

import ace_rl
from ace_rl.cli import main, parse_train
from ace_rl.config import TrainConfig, preset_config, to_json_dict
from ace_rl.rundir import RunLock
from ace_rl.sweep import (
    SweepArgs,
    SweepError,
    build_spec,
    format_seeds,
    group_wandb_runs,
    parse_seeds,
    plan_runs,
    spec_document,
    split_train_options,
)
from ace_rl.sweep.spec import spec_differences

needs_sweep_extra = pytest.mark.skipif(
    importlib.util.find_spec("ray") is None or importlib.util.find_spec("rich") is None,
    reason='needs the sweep extra: pip install -e ".[sweep]"',
)

ENV = "InvertedPendulum-v5"
TINY = [
    "--preset",
    "small",
    "--total-steps",
    "300",
    "--start-steps",
    "100",
    "--eval-every",
    "150",
    "--eval-episodes",
    "1",
    "--hidden-size",
    "32",
    "--batch-size",
    "32",
    "--causal-interval",
    "150",
    "--causal-samples",
    "100",
    "--checkpoint-every",
    "50",
    "--buffer-size",
    "1000",
]
TINY_SETTINGS = dict(
    total_steps=300,
    start_steps=100,
    eval_every=150,
    eval_episodes=1,
    hidden_size=32,
    batch_size=32,
    causal_interval=150,
    causal_samples=100,
    checkpoint_every=50,
    buffer_size=1000,
)
METRICS_HEADER = "env_step,updates,eval_return_mean,eval_return_std,eval_success_rate,wall_time\n"
EPISODES_HEADER = "env_step,episode,return,length,terminated,wall_time\n"


# ------------------------------------------------------------------------------------------------------------------
# The grid
# ------------------------------------------------------------------------------------------------------------------
def test_seeds_take_values_and_inclusive_ranges():
    assert parse_seeds(["0-4"]) == [0, 1, 2, 3, 4]
    assert parse_seeds(["0", "1", "5-7"]) == [0, 1, 5, 6, 7]
    assert parse_seeds(["3"]) == [3]
    assert format_seeds([0, 1, 2, 3, 4, 7, 9, 10]) == "0-4 7 9-10"
    for bad, message in (
        (["4-2"], "upwards"),
        (["x"], "neither"),
        (["0-2", "2"], "seed 2 more than once"),
        (["-1"], "neither"),
    ):
        with pytest.raises(SweepError, match=message):
            parse_seeds(bad)


def test_options_given_once_are_common_and_several_values_make_an_axis():
    common, swept = split_train_options(
        [
            "--preset",
            "small",
            "--reset",
            "none",
            "reset",
            "--compile",
            "--gamma=0.98",
            "--learning-rate",
            "1e-3",
            "3e-4",
        ]
    )
    assert common == ["--preset", "small", "--compile", "--gamma", "0.98"]
    assert swept == {"reset": ["none", "reset"], "learning-rate": ["1e-3", "3e-4"]}
    for tokens, message in (
        (["--threads", "2"], "--threads-per-run"),
        (["--run-dir", "x"], "DIR/RUN_NAME"),
        (["--resume", "x"], "resumes its runs itself"),
        (["--bogus", "1"], "unknown option --bogus"),
        (["--gamma"], "needs a value"),
        (["--compile", "yes"], "switch"),
        (["--reset", "none", "none"], "more than once"),
        (["--gamma", "0.9", "--gamma", "0.8"], "given twice"),
        (["small"], "unexpected value"),
    ):
        with pytest.raises(SweepError, match=re.escape(message)):
            split_train_options(tokens)


def test_the_grid_is_the_product_and_each_run_is_what_ace_rl_train_would_build(tmp_path: Path):
    envs, algos, seeds, rates = [ENV, "dmc:cheetah-run"], ["ace", "sac"], [0, 1, 2], ["1e-3", "3e-4"]
    args = SweepArgs(env=envs, algo=algos, seed=["0-2"])
    spec = build_spec(args, ["--preset", "small", "--total-steps", "1000", "--learning-rate", *rates])
    planned = plan_runs(spec, tmp_path / "sweep", parse_train)

    expected = {}
    for env in envs:
        for algo in algos:
            for seed in seeds:
                for rate in rates:
                    name = f"{env.replace(':', '_')}__{algo}__s{seed}__learning-rate-{rate}"
                    expected[name] = preset_config(
                        "small",
                        algo,
                        env=env,
                        seed=seed,
                        total_steps=1000,
                        learning_rate=float(rate),
                        run_dir=(tmp_path / "sweep" / name).resolve(),
                        threads=1,
                        progress=False,
                    )
    assert len(planned) == 2 * 2 * 3 * 2
    assert {run.name for run, _ in planned} == set(expected)
    for run, config in planned:
        assert config == expected[run.name], run.name
        assert run.run_dir == (tmp_path / "sweep" / run.name).resolve()
        assert run.total_steps == 1000
    # Seeds vary fastest after the algorithm: the order is env, algo, seed, then the swept options.
    assert [run.name for run, _ in planned][:3] == [
        f"{ENV}__ace__s0__learning-rate-1e-3",
        f"{ENV}__ace__s0__learning-rate-3e-4",
        f"{ENV}__ace__s1__learning-rate-1e-3",
    ]


@pytest.mark.skipif(not hasattr(TrainConfig, "wandb_project"), reason="this ace-rl has no W&B logging")
def test_runs_logged_to_wandb_are_grouped_by_the_sweep_unless_a_group_is_given(tmp_path: Path):
    out = tmp_path / "hopper-sweep"
    spec = build_spec(SweepArgs(env=[ENV]), ["--wandb-project", "ace"])
    group_wandb_runs(spec, out)
    assert spec.options == ["--wandb-project", "ace", "--wandb-group", "hopper-sweep"]
    spec = build_spec(SweepArgs(env=[ENV]), ["--wandb-project", "ace", "--wandb-group", "mine"])
    group_wandb_runs(spec, out)
    assert spec.options == ["--wandb-project", "ace", "--wandb-group", "mine"]
    spec = build_spec(SweepArgs(env=[ENV]), [])
    group_wandb_runs(spec, out)
    assert spec.options == []


def test_a_grid_point_that_ace_rl_train_refuses_is_named(tmp_path: Path):
    spec = build_spec(SweepArgs(env=[ENV], algo=["ace", "sac"]), ["--reset", "dormant_reset"])
    with pytest.raises(SweepError, match=rf"run {ENV}__sac__s0: --algo sac runs without resets"):
        plan_runs(spec, tmp_path / "sweep", parse_train)


@needs_sweep_extra
@pytest.mark.parametrize(
    "options, message",
    [
        (["--env", "Hoper-v5"], "did you mean Hopper-v5"),
        (["--env", ENV, "--total-steps", "0"], f"run {ENV}__ace__s0: --total-steps must be a positive integer"),
        (["--env", ENV, "--threads", "2"], "use --threads-per-run"),
        (["--env", ENV, "--seed", "3-1"], "a range goes upwards"),
        (["--env", ENV, "--threads-per-run", "0"], "--threads-per-run must be a positive integer"),
        (["--env", ENV, "--max-concurrent", "0"], "--max-concurrent must be a positive integer, got 0"),
    ],
)
def test_bad_input_is_refused_in_one_line_before_anything_is_written(tmp_path: Path, capsys, options, message):
    out = tmp_path / "sweep"
    with pytest.raises(SystemExit) as exit_info:
        main(["sweep", "--out", str(out), *options])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("ace-rl: error: ") and message in error and "\n" not in error
    assert not out.exists()


def test_without_ray_one_line_names_the_extra(tmp_path: Path, capsys, monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *args: None if name == "ray" else real_find_spec(name, *args)
    )
    with pytest.raises(SystemExit) as exit_info:
        main(["sweep", "--out", str(tmp_path / "sweep"), "--env", ENV])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert (
        error
        == 'ace-rl: error: ace-rl sweep needs Ray, which is not installed; install it with: pip install "ace-rl[sweep]"'
    )
    assert not (tmp_path / "sweep").exists()


# ------------------------------------------------------------------------------------------------------------------
# sweep.json and the status table, on directories written by the test
# ------------------------------------------------------------------------------------------------------------------
def write_sweep(out: Path, grid_options: list[str], options: list[str]) -> dict:
    """A sweep directory as `ace-rl sweep` creates it before any run starts."""
    spec = build_spec(tyro.cli(SweepArgs, args=grid_options), options)
    planned = plan_runs(spec, out, parse_train)
    document = spec_document(spec, planned, ["--out", str(out), *grid_options, *options])
    out.mkdir(parents=True)
    (out / "sweep.json").write_text(json.dumps(document))
    return document


@needs_sweep_extra
def test_a_module_agents_runs_are_named_without_a_colon_and_an_older_sweeps_names_are_kept(tmp_path: Path, capsys):
    grid = ["--env", ENV, "--algo", "ddpg_agent:ddpg", "--seed", "0"]
    safe, earlier = f"{ENV}__ddpg_agent_ddpg__s0", f"{ENV}__ddpg_agent:ddpg__s0"
    document = write_sweep(tmp_path / "new", grid, TINY)
    assert [run["name"] for run in document["runs"]] == [safe]
    # A sweep created when the name kept the colon continues under its recorded name (it would differ otherwise).
    old = tmp_path / "old"
    document = write_sweep(old, grid, TINY)
    document["runs"][0]["name"] = earlier
    (old / "sweep.json").write_text(json.dumps(document))
    main(["sweep", "--out", str(old), *grid, *TINY, "--dry-run"])  # a refusal is SystemExit(2)
    spec = build_spec(tyro.cli(SweepArgs, args=grid), TINY)
    ((run, _),) = plan_runs(spec, old, parse_train, recorded_names=[earlier])
    assert run.name == earlier and run.run_dir == old.resolve() / earlier


def test_a_worker_trains_the_configuration_its_driver_built_and_parses_no_argv(tmp_path: Path, monkeypatch):
    """The driver builds each run's TrainConfig once and sends it as the JSON object of config.json; the worker
    trains it through ace_rl.api, and continues a resumable run with it, checked as `ace-rl train --resume` is."""
    from ace_rl import api
    from ace_rl.sweep import execute_run

    spec = build_spec(tyro.cli(SweepArgs, args=["--env", ENV, "--seed", "4"]), TINY)
    ((run, config),) = plan_runs(spec, tmp_path / "sweep", parse_train, threads_per_run=2)
    log = tmp_path / "sweep" / "logs" / f"{run.name}.log"
    trained: list[TrainConfig] = []
    monkeypatch.setattr(api, "train", trained.append)
    monkeypatch.setattr("ace_rl.cli.parse_train", None)  # a worker that parsed its options would fail
    assert execute_run(run, to_json_dict(config), log).state == "done"
    assert trained == [config] and (config.seed, config.threads, config.progress) == (4, 2, False)

    # Stopped before its first checkpoint: the worker continues it, with the configuration it was sent.
    run.run_dir.mkdir(parents=True)
    (run.run_dir / "config.json").write_text(json.dumps(to_json_dict(config)))
    assert execute_run(run, to_json_dict(config), log).state == "done"
    assert trained[1] == dataclasses.replace(config, resume=run.run_dir)
    assert "restarting from env step 0" in log.read_text()

    # The resume is api.train's: a config.json of another experiment is refused, naming the setting, untouched.
    monkeypatch.undo()
    (run.run_dir / "config.json").write_text(json.dumps(to_json_dict(dataclasses.replace(config, batch_size=64))))
    outcome = execute_run(run, to_json_dict(config), log)
    assert (outcome.state, outcome.message) == (
        "failed",
        "ConfigError: --batch-size 32 contradicts the resumed run's batch_size = 64; only --checkpoint-every, "
        "--compile, --device, --log-every, --progress, --threads, --total-steps, --trust-run-code, --video-every, "
        "--wandb-entity, --wandb-group, --wandb-project, --wandb-tags may change on --resume",
    )
    assert sorted(path.name for path in run.run_dir.iterdir()) == ["config.json"]


def test_a_sweep_json_that_records_argv_continues_with_the_configurations_its_argv_build(tmp_path: Path):
    """sweep.json records every run's `ace-rl train` options (argv), which workers parsed before they were sent
    configurations: a sweep continued from its sweep.json alone sends each worker what those options build."""
    from ace_rl.sweep.args import execution_argv
    from ace_rl.sweep.spec import load_spec, stored_spec
    from ace_rl.trust import CodeTrust

    out = tmp_path / "sweep"
    grid = ["--env", ENV, "--algo", "ace", "sac", "--seed", "0-1", "--budget-scale", "0.5"]
    write_sweep(out, grid, [*TINY, "--gamma", "0.98", "0.99"])
    document = load_spec(out)
    continued = plan_runs(stored_spec(document, out / "sweep.json", CodeTrust.given()), out, parse_train)
    assert len(continued) == len(document["runs"]) == 8
    for recorded, (run, config) in zip(document["runs"], continued):
        assert recorded["argv"] == list(run.argv) and "--budget-scale" in recorded["argv"]
        as_parsed = parse_train([*recorded["argv"], "--run-dir", str(out.resolve() / run.name), *execution_argv(1)])
        assert to_json_dict(config) == to_json_dict(as_parsed), run.name


@needs_sweep_extra
def test_a_changed_specification_is_refused_naming_what_differs(tmp_path: Path, capsys):
    out = tmp_path / "sweep"
    grid = ["--env", ENV, "--algo", "ace", "sac", "--seed", "0-1"]
    write_sweep(out, grid, TINY)
    before = (out / "sweep.json").read_bytes()
    changes = [
        ([*grid, *TINY[:-2], "--buffer-size", "2000"], "buffer_size 1000 in sweep.json, 2000 now (--buffer-size)"),
        (["--env", ENV, "--algo", "ace", "sac", "--seed", "0-2", *TINY], "--seed 0-1 in sweep.json, 0-2 now"),
        ([*grid, *TINY, "--gamma", "0.98", "0.99"], "--gamma (not swept) in sweep.json, 0.98 0.99 now"),
    ]
    for argv, difference in changes:
        with pytest.raises(SystemExit) as exit_info:
            main(["sweep", "--out", str(out), *argv])
        assert exit_info.value.code == 2
        error = capsys.readouterr().err.strip()
        assert "holds a different sweep" in error and difference in error and "\n" not in error, error
    assert (out / "sweep.json").read_bytes() == before
    assert sorted(path.name for path in out.iterdir()) == ["sweep.json"]


@needs_sweep_extra
def test_a_sweep_json_older_than_a_setting_reads_it_at_its_default(tmp_path: Path):
    """warmup_updates came after sweeps were made: their sweep.json lacks it. Its default (True) is what every
    algorithm did before it, so ace/sac sweeps continue; td3 now defaults to False, a different experiment."""
    for algo, expected in (("sac", []), ("td3", ["warmup_updates True in sweep.json, False now (--warmup-updates)"])):
        out = tmp_path / algo
        grid = ["--env", ENV, "--algo", algo, "--seed", "0-1"]
        document = write_sweep(out, grid, TINY)
        for run in document["runs"]:
            assert run["config"].pop("warmup_updates") is (algo == "sac")
        spec = build_spec(tyro.cli(SweepArgs, args=grid), TINY)
        assert spec_differences(document, spec, plan_runs(spec, out, parse_train)) == expected


@needs_sweep_extra
def test_a_sac_sweep_from_before_sacs_own_schedule_is_not_continued_on_it(tmp_path: Path):
    """SAC sweeps made before `--algo sac` took SAC's schedule recorded policy_frequency 2 (ACE's): continuing one
    with the same command would mix schedules, so the difference is named; `--policy-frequency 2` continues it."""
    out = tmp_path / "sac"
    grid = ["--env", ENV, "--algo", "ace", "sac", "--seed", "0-1"]
    document = write_sweep(out, grid, [*TINY, "--policy-frequency", "2"])
    assert {run["config"]["policy_frequency"] for run in document["runs"]} == {2}
    spec = build_spec(tyro.cli(SweepArgs, args=grid), TINY)
    assert spec_differences(document, spec, plan_runs(spec, out, parse_train)) == [
        "policy_frequency 2 in sweep.json, 1 now (--policy-frequency)"
    ]
    spec = build_spec(tyro.cli(SweepArgs, args=grid), [*TINY, "--policy-frequency", "2"])
    assert spec_differences(document, spec, plan_runs(spec, out, parse_train)) == []


@needs_sweep_extra
def test_status_shows_each_run_from_its_directory_without_running_anything(tmp_path: Path, capsys):
    out = tmp_path / "sweep"
    document = write_sweep(out, ["--env", ENV, "--algo", "ace", "sac", "--seed", "0", "1"], TINY)
    assert document["ace_rl_version"] == ace_rl.__version__
    assert document["git_commit"] is None or re.fullmatch(r"[0-9a-f]{40}", document["git_commit"])
    done, stopped, failed, queued = (
        out / f"{ENV}__{algo}__s{seed}" for algo, seed in (("ace", 0), ("ace", 1), ("sac", 0), ("sac", 1))
    )
    for run_dir in (done, stopped, failed):
        (run_dir / "checkpoints").mkdir(parents=True)
        (run_dir / "config.json").write_text("{}")
    (done / "metrics.csv").write_text(METRICS_HEADER + "150,119,12.0,0,,1.0\n300,269,20.5,0,,2.0\n")
    (done / "checkpoints" / "final.pt").write_bytes(b"")
    (stopped / "metrics.csv").write_text(METRICS_HEADER + "100,69,7.5,0,,1.0\n")
    (stopped / "episodes.csv").write_text(EPISODES_HEADER + "50,1,9,50,1,0.5\n120,2,11,70,1,1.2\n")
    (stopped / "checkpoints" / "state-0000000100.pt").write_bytes(b"")
    (failed / "episodes.csv").write_text(EPISODES_HEADER + "33,1,33,33,1,0.3\n")
    (out / "sweep_status.json").write_text(
        json.dumps({"runs": {failed.name: {"state": "failed", "error": "NonFiniteError: boom"}}})
    )
    files_before = sorted(path for path in out.rglob("*"))

    def table() -> dict[str, str]:
        with pytest.raises(SystemExit) as exit_info:
            main(["sweep", "--status", str(out)])
        assert exit_info.value.code == 1  # a run failed
        lines = capsys.readouterr().out.splitlines()
        return {
            name: next(line for line in lines if name in line)
            for name in (done.name, stopped.name, failed.name, queued.name)
        }

    rows = table()
    assert re.search(r"\bdone\b.*300 / 300.*20\.5", rows[done.name])
    assert re.search(r"\bstopped\b.*120 / 300.*7\.5", rows[stopped.name])
    assert re.search(r"\bfailed\b.*33 / 300.*NonFiniteError: boom", rows[failed.name])
    assert re.search(r"\bqueued\b.*0 / 300", rows[queued.name])
    assert sorted(path for path in out.rglob("*")) == files_before
    with RunLock(stopped):  # a live process training in it
        assert re.search(r"\brunning\b.*120 / 300", table()[stopped.name])


# ------------------------------------------------------------------------------------------------------------------
# One real sweep: 2 algorithms x 2 seeds x 2 learning rates (1e38 diverges at once); one worker is SIGKILLed
# ------------------------------------------------------------------------------------------------------------------
GRID = ["--env", ENV, "--algo", "ace", "sac", "--seed", "0-1", "--learning-rate", "3e-4", "1e38"]
KILLED = f"{ENV}__ace__s0__learning-rate-3e-4"  # the first run submitted (seed-major order)


@dataclass
class SweepResult:
    out: Path
    returncode: int
    stdout: str
    stderr: str
    checkpoint_step: int  # the killed run's latest complete checkpoint when it was killed
    rows_before_kill: list[dict]  # its episode rows up to that checkpoint


def ace_rl_command(*args: str) -> list[str]:
    return [sys.executable, "-c", "from ace_rl.cli import main; main()", *args]


def worker_pids(run_dir: Path) -> set[int]:
    """The Ray worker training in ``run_dir``: the holder of its lock, else any Ray worker with a file of it open."""

    def is_ray_worker(pid: str) -> bool:
        try:
            return Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::")
        except OSError:
            return False

    holder = (run_dir / ".lock").read_text().strip() if (run_dir / ".lock").is_file() else ""
    if holder.isdigit() and is_ray_worker(holder):
        return {int(holder)}
    pids = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit() and is_ray_worker(entry):
            try:
                if any(
                    os.readlink(f"/proc/{entry}/fd/{fd}").startswith(f"{run_dir}/")
                    for fd in os.listdir(f"/proc/{entry}/fd")
                ):
                    pids.add(int(entry))
            except OSError:
                continue
    return pids


def complete_states(run_dir: Path) -> list[int]:
    return sorted(
        int(path.name[6:16])
        for path in (run_dir / "checkpoints").glob("state-*.pt")
        if Path(f"{path}.sha256").is_file()
    )


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> SweepResult:
    if importlib.util.find_spec("ray") is None or importlib.util.find_spec("rich") is None:
        pytest.skip('needs the sweep extra: pip install -e ".[sweep]"')
    out = tmp_path_factory.mktemp("sweep") / "grid"
    killed = out / KILLED
    logs = tmp_path_factory.mktemp("sweep-output")
    with open(logs / "stdout", "w") as stdout, open(logs / "stderr", "w") as stderr:
        process = subprocess.Popen(
            ace_rl_command("sweep", "--out", str(out), *GRID, *TINY), stdout=stdout, stderr=stderr
        )
        try:
            deadline = time.time() + 400
            while not complete_states(killed):
                assert process.poll() is None and time.time() < deadline, "the sweep ended before the run checkpointed"
                time.sleep(0.02)
            pids = worker_pids(killed)
            assert pids and not (killed / "checkpoints" / "final.pt").exists(), "the run was not caught mid-way"
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
            checkpoint_step = complete_states(killed)[-1]
            assert checkpoint_step < 300
            rows_before_kill = [
                row for row in read_rows(killed / "episodes.csv") if int(row["env_step"]) <= checkpoint_step
            ]
            process.wait(timeout=600)
        finally:
            if process.poll() is None:
                process.kill()
    return SweepResult(
        out,
        process.returncode,
        (logs / "stdout").read_text(),
        (logs / "stderr").read_text(),
        checkpoint_step,
        rows_before_kill,
    )


FINISHED = [f"{ENV}__{algo}__s{seed}__learning-rate-3e-4" for algo in ("ace", "sac") for seed in (0, 1)]
DIVERGED = [f"{ENV}__{algo}__s{seed}__learning-rate-1e38" for algo in ("ace", "sac") for seed in (0, 1)]


def test_sweep_writes_its_specification_and_one_ordinary_run_per_grid_point(sweep: SweepResult):
    from ace_rl.trainer import probe_environment, with_causal_method

    document = json.loads((sweep.out / "sweep.json").read_text())
    assert document["grid"] == {"env": [ENV], "algo": ["ace", "sac"], "seed": [0, 1], "learning-rate": ["3e-4", "1e38"]}
    assert document["options"] == TINY
    assert document["ace_rl_version"] == ace_rl.__version__
    assert {run["name"] for run in document["runs"]} == set(FINISHED + DIVERGED)
    for name in FINISHED:
        algo, seed = name.split("__")[1], int(name.split("__")[2][1:])
        expected = preset_config(
            "small",
            algo,
            env=ENV,
            seed=seed,
            learning_rate=3e-4,
            run_dir=sweep.out / name,
            threads=1,
            progress=False,
            **TINY_SETTINGS,
        )
        # The run chose its causal method when it started, as `ace-rl train` does (ace_rl.causal_cost).
        expected = with_causal_method(expected, probe_environment(expected))
        written = json.loads((sweep.out / name / "config.json").read_text())
        assert written == json.loads(json.dumps(to_json_dict(expected))), name
        assert [row["env_step"] for row in read_rows(sweep.out / name / "metrics.csv")] == ["150", "300"]
    result = ace_rl.evaluate(sweep.out / FINISHED[1], checkpoint="final", episodes=1)  # as `ace-rl eval RUN_DIR`
    assert len(result.returns) == 1


def test_a_killed_worker_is_retried_and_resumes_from_the_runs_checkpoint(sweep: SweepResult):
    run_dir = sweep.out / KILLED
    log = (sweep.out / "logs" / f"{KILLED}.log").read_text()
    assert log.count(": starting: ace-rl train ") == 1 and log.count(": resuming from ") == 1, log
    assert f"resuming from state-{sweep.checkpoint_step:010d}.pt (env step {sweep.checkpoint_step})" in log
    episodes = read_rows(run_dir / "episodes.csv")
    # The first attempt's rows up to its checkpoint are kept as written (a restart from zero rewrites the wall times),
    assert episodes[: len(sweep.rows_before_kill)] == sweep.rows_before_kill
    # and the episodes continue without gap or repetition to the end.
    assert [int(row["episode"]) for row in episodes] == list(range(1, len(episodes) + 1))
    steps = [0] + [int(row["env_step"]) for row in episodes]
    assert [later - earlier for earlier, later in itertools.pairwise(steps)] == [int(row["length"]) for row in episodes]
    assert [row["env_step"] for row in read_rows(run_dir / "metrics.csv")] == ["150", "300"]
    assert (run_dir / "checkpoints" / "final.pt").is_file()
    # What the raylet reports of the killed worker goes to logs/ray.log, not to the sweep's output.
    assert "(raylet)" not in sweep.stdout + sweep.stderr and "\x1b[" not in sweep.stderr
    assert "(raylet) " in (sweep.out / "logs" / "ray.log").read_text()


def test_runs_that_fail_are_reported_while_the_others_finish(sweep: SweepResult):
    assert sweep.returncode == 1, sweep.stderr
    assert "runs: 4 done, 4 failed of 8" in sweep.stdout, sweep.stdout  # the progress bar's counts
    assert "4 of 8 runs failed" in sweep.stderr
    for name in DIVERGED:
        assert name in sweep.stderr
    status = json.loads((sweep.out / "sweep_status.json").read_text())["runs"]
    assert sorted(status) == sorted(DIVERGED)
    assert all(
        record["state"] == "failed" and record["error"].startswith("NonFiniteError: ") for record in status.values()
    )
    for name in FINISHED:
        assert (sweep.out / name / "checkpoints" / "final.pt").is_file(), name


def modification_times(out: Path) -> dict[str, int]:
    return {str(path): path.stat().st_mtime_ns for name in FINISHED + DIVERGED for path in (out / name).rglob("*")}


def test_running_the_sweep_again_touches_no_finished_run(sweep: SweepResult, capsys):
    before = modification_times(sweep.out)
    assert before
    # Again with the options (in another spelling), then without them: nothing to run, the failures are still named.
    spelled = [token for token in TINY if token not in ("--total-steps", "300")] + ["--total-steps=300"]
    again = subprocess.run(
        ace_rl_command("sweep", "--out", str(sweep.out), *GRID, *spelled), capture_output=True, text=True
    )
    assert again.returncode == 1, again.stderr
    assert "4 of 8 runs failed" in again.stderr and "--retry-failed" in again.stderr
    with pytest.raises(SystemExit) as exit_info:
        main(["sweep", "--out", str(sweep.out)])
    assert exit_info.value.code == 1
    assert modification_times(sweep.out) == before


def test_the_progress_bar_counts_the_runs_when_every_run_failed_before_its_first_step(tmp_path: Path):
    from ace_rl.sweep.driver import Grid

    spec = build_spec(tyro.cli(SweepArgs, args=["--env", ENV, "--seed", "0-1"]), TINY)
    grid = Grid([run for run, _ in plan_runs(spec, tmp_path / "sweep", parse_train)])
    for run in grid.runs:
        grid.observe(run)
        grid.state[run.name] = "failed"
    assert grid.steps() == (0, 0)
    assert grid.counts() == "runs: 2 failed of 2"
    grid.state[grid.runs[0].name] = "done"
    assert grid.counts() == "runs: 1 done, 1 failed of 2"


def test_the_modules_a_sweep_ships_are_those_its_module_ids_name_not_task_suites_or_installed_ones(tmp_path: Path):
    from ace_rl.sweep.modules import module_roots, shipped_paths

    envs = ["dmc:walker-walk", "metaworld:reach-v3", ENV, "examples.point_reach:PointReach-v0", "os:Nope-v0"]
    roots = module_roots(envs, ["sac", "ddpg_agent:ddpg", "ace_rl.agents:td3"])
    assert roots == ["examples", "ddpg_agent", "ace_rl"]
    tests = Path(__file__).resolve().parent
    shipped = shipped_paths([*roots, "gymnasium"])  # neither ace_rl (on every node) nor an installed package
    assert list(shipped) == ["examples", "ddpg_agent"]
    assert shipped["examples"].is_dir() and (shipped["examples"] / "point_reach.py").is_file()  # a package's directory
    assert shipped["ddpg_agent"] == tests / "ddpg_agent.py"  # a module's file
