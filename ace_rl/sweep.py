"""`ace-rl sweep`: a grid of ordinary runs executed on Ray, continued where it stopped, watched live.

    DIR/
      sweep.json             the specification: grid, common options, every run's argv and resolved config,
                             the ace-rl version and git commit it was created with (written once)
      sweep_status.json      what the directories cannot tell: runs that failed (with their one-line error),
                             which runs the sweep now running has in flight
      logs/RUN.log           each run's output, one header per attempt (fresh start or resume)
      logs/ray.log           what Ray's core printed in the driver while the runs ran (not for the terminal)
      .lock                  held by the one `ace-rl sweep` process working on DIR
      ENV__ALGO__sSEED[__OPTION-VALUE...]/   one ordinary run directory per grid point

Each run is built exactly as `ace-rl train` with the same options would build it (the command's own parser
is handed in by ace_rl/cli.py) and executed in a Ray worker by ace_rl.trainer.train. Everything the driver shows
is read from the run directories, so workers need no channel back; a worker that dies is retried by Ray and
the retry resumes from the run's latest checkpoint.
"""

from __future__ import annotations

import csv
import dataclasses
import importlib.util
import io
import itertools
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from contextlib import contextmanager, redirect_stderr, redirect_stdout, suppress
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Callable, Iterable, Iterator, Optional, Sequence, Union, get_args, get_origin, get_type_hints

import tyro

import ace_rl
from ace_rl.config import ALGOS, ConfigError, TrainConfig, config_from_json_dict, to_json_dict, validate
from ace_rl.rundir import LOCK, TEMPORARY_SUFFIX, RunDir, RunDirBusy, RunDirError, RunLock, is_locked, write_atomically

TrainParser = Callable[[Sequence[str]], TrainConfig]

SPEC_FILE = "sweep.json"
STATUS_FILE = "sweep_status.json"
LOGS = "logs"
RAY_LOG = "ray.log"  # logs/ray.log: what Ray's core prints in the driver while the sweep runs
SPEC_FORMAT = 1
EXTRA_HINT = 'pip install "ace-rl[sweep]"'

AXES = ("env", "algo", "seed")  # always part of the grid and of every run's name
# Settings the sweep decides for every run; giving them would contradict it.
NOT_SWEEP_OPTIONS = {
    "run_dir": "each run goes to DIR/RUN_NAME",
    "resume": "a sweep resumes its runs itself (run the same command again)",
    "threads": "use --threads-per-run, which also reserves that many CPUs per run",
    "progress": "the sweep shows one progress display for all runs",
}
# Settings that do not change the experiment, left out when a stored specification is compared.
EXECUTION_SETTINGS = ("run_dir", "resume", "threads", "progress")
LOCK_WAIT_SECONDS = 600.0  # how long a retry waits for an earlier attempt that still holds the run directory
LOCK_POLL_SECONDS = 2.0
REFRESH_SECONDS = 1.0  # how often the driver reads the run directories
STOP_GRACE_SECONDS = 600.0  # how long an interrupted sweep waits for its runs to write their checkpoints
# A Ray cluster that cannot be reached, refuses this driver or is lost mid-sweep ends the command with one line
# within CLUSTER_FAULT_SECONDS (the README states it); the steps below add up to less.
CLUSTER_FAULT_SECONDS = 30.0
CONNECT_SECONDS = 5.0  # --address must accept a connection within this
GCS_CONNECT_ATTEMPTS = 5  # then Ray tries to join it this many times, a second apart (its default: 20)
PROBE_SECONDS = 2.0  # during a sweep the driver checks every PROBE_INTERVAL_SECONDS that the head answers
PROBE_INTERVAL_SECONDS = 2.0
CLUSTER_LOST_SECONDS = 10.0  # a head silent this long is lost (Ray alone waits 60 s, then aborts the driver)
SHUTDOWN_SECONDS = 5.0  # how long leaving a lost cluster may take
EMBEDDED_SESSION_PREFIX = "ace-rl-ray-"  # TMPDIR/ace-rl-ray-PID-*: the temporary directory of a Ray started by sweep PID
MAX_RUNS = 10_000  # a larger grid is refused: its specification, status table and planning grow with it


class SweepError(ConfigError):
    """The sweep cannot start: bad grid, changed specification, missing extra, directory in use."""


@dataclass
class SweepArgs:
    """Run a grid of `ace-rl train` runs (the product of --env, --algo, --seed and any other train option given
    several values, e.g. --reset none reset) on Ray, one ordinary run directory per grid point under --out. An
    option that takes a list (--wandb-tags a b) is no axis: every run gets the whole list.

    Every `ace-rl train` option (see `ace-rl train --help`) may be given once for all runs, e.g.
    `--preset small --total-steps 20000`. Running the same command again, with or without the grid options,
    finishes what is missing and leaves finished runs untouched; a changed specification is refused.
    """

    out: Optional[Path] = None
    """The sweep directory: new, or one written by an earlier `ace-rl sweep` (which is then continued). On a Ray
    cluster it must be on a filesystem every node sees."""
    status: Optional[Path] = None
    """Print the table of runs of this sweep directory and exit, without running anything."""
    env: list[str] = field(default_factory=list)
    """Tasks (as `ace-rl train --env`); default Hopper-v5."""
    algo: Annotated[
        list[str], tyro.conf.arg(
            help=f"Algorithms ({', '.join(ALGOS)}, or module:name of an agent a module registers); default {TrainConfig.algo}."
        )
    ] = field(default_factory=list)
    seed: Annotated[
        list[str],
        tyro.conf.arg(help=f"Seeds and ranges, e.g. 0-4 or 0 1 5-7; default 0. A sweep runs at most {MAX_RUNS:,} runs."),
    ] = field(default_factory=list)
    address: Optional[str] = None
    """Ray cluster to join: auto (the cluster this machine belongs to) or ray://HOST:PORT. Default: start Ray
    on this machine for the duration of the command, with as many runs at once as CPUs allow."""
    threads_per_run: int = 1
    """CPUs reserved for each run, and its PyTorch threads (two 1-thread runs beat one 2-thread run on a CPU)."""
    gpus_per_run: float = 0.0
    """Share of a GPU reserved for each run (e.g. 0.25: four runs per GPU); use with the default --device auto."""
    max_retries: int = 3
    """How often Ray restarts a run whose worker died (killed, node lost); each retry resumes from the latest
    checkpoint."""
    retry_failed: bool = False
    """Run again the runs that failed for their own reasons (NaN stop, refused option) in an earlier invocation."""


# --------------------------------------------------------------------------------------------------------------
# The grid
# --------------------------------------------------------------------------------------------------------------
_SEED_RANGE = re.compile(r"^(\d+)-(\d+)$")


def parse_seeds(values: Sequence[str]) -> list[int]:
    """Seeds and inclusive ranges (`0-4`, `0 1 5-7`) in the order given; duplicates are refused, and so are
    more than MAX_RUNS seeds (checked before a range is expanded)."""
    seeds: list[int] = []
    for value in values:
        text = value.strip()
        match = _SEED_RANGE.match(text)
        if match:
            first, last = int(match.group(1)), int(match.group(2))
            if last < first:
                raise SweepError(f"--seed {value}: a range goes upwards, e.g. {last}-{first}")
            _check_seed_count(value, len(seeds) + last - first + 1)
            seeds.extend(range(first, last + 1))
        elif text.isdigit():
            _check_seed_count(value, len(seeds) + 1)
            seeds.append(int(text))
        else:
            raise SweepError(f"--seed {value!r} is neither a seed (0, 1, ...) nor a range such as 0-4")
    duplicates = sorted(seed for seed, count in Counter(seeds).items() if count > 1)
    if duplicates:
        raise SweepError(f"--seed gives seed {', '.join(map(str, duplicates))} more than once")
    return seeds


def _check_seed_count(value: str, count: int) -> None:
    if count > MAX_RUNS:
        raise SweepError(
            f"--seed {value} brings the number of seeds to {count:,}, more than the {MAX_RUNS:,} runs a sweep takes; "
            "split the seeds over several sweeps"
        )


def format_seeds(seeds: Sequence[int]) -> str:
    """`0 1 2 3 4 7` -> `0-4 7` (the inverse of parse_seeds for sorted seeds)."""
    parts: list[str] = []
    for _, group in itertools.groupby(enumerate(seeds), key=lambda pair: pair[1] - pair[0]):
        run = [seed for _, seed in group]
        parts.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
    return " ".join(parts)


_TRAIN_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


_TRAIN_TYPES = get_type_hints(TrainConfig)


def _is_switch(name: str) -> bool:
    return name in _TRAIN_FIELDS and _TRAIN_FIELDS[name].type in ("bool", bool)


def _takes_list(name: str) -> bool:
    """Whether a setting holds a list of values (`--wandb-tags a b`), which is given whole to every run."""
    kind = _TRAIN_TYPES.get(name)
    if get_origin(kind) is Union:  # Optional[...]
        kind = next((arg for arg in get_args(kind) if arg is not type(None)), None)
    return get_origin(kind) in (list, tuple) or kind in (list, tuple)


def _is_flag(token: str) -> bool:
    return token.startswith("--") and len(token) > 2


def _setting(flag: str) -> str:
    """The TrainConfig field a flag sets: `--total-steps` -> total_steps, `--no-compile` -> compile."""
    name = flag.replace("-", "_")
    return name[3:] if name.startswith("no_") and _is_switch(name[3:]) else name


def split_train_options(tokens: Sequence[str]) -> tuple[list[str], dict[str, list[str]]]:
    """Train options given once (kept as tokens, for every run) and those given several values (new grid axes,
    keyed by their flag without dashes: `--reset none reset` -> {"reset": ["none", "reset"]}). An option that
    takes a list (`--wandb-tags a b`) is kept whole, for every run."""
    common: list[str] = []
    swept: dict[str, list[str]] = {}
    seen: set[str] = set()
    index = 0
    while index < len(tokens):
        token = tokens[index]
        if not _is_flag(token):
            raise SweepError(f"unexpected value {token!r}: values follow an option, as in --reset none reset")
        flag, has_inline, inline = token[2:].partition("=")
        values: list[str] = [inline] if has_inline else []
        index += 1
        while not has_inline and index < len(tokens) and not _is_flag(tokens[index]):
            values.append(tokens[index])
            index += 1
        name = _setting(flag)
        if name not in _TRAIN_FIELDS:
            raise SweepError(
                f"unknown option --{flag}; ace-rl sweep takes its own options (ace-rl sweep --help) and those of "
                "ace-rl train (ace-rl train --help)"
            )
        if name in NOT_SWEEP_OPTIONS:
            raise SweepError(f"--{flag} is not an ace-rl sweep option: {NOT_SWEEP_OPTIONS[name]}")
        if name in seen:
            raise SweepError(f"--{flag} is given twice; give all its values after one --{flag}")
        seen.add(name)
        if _is_switch(name):
            if values:
                raise SweepError(f"--{flag} is a switch and takes no value")
            common.append(token)
        elif _takes_list(name):
            common.extend([f"--{flag}", *values])
        elif not values:
            raise SweepError(f"--{flag} needs a value")
        elif len(values) == 1:
            common.extend([f"--{flag}", values[0]])
        elif len(set(values)) < len(values):
            raise SweepError(f"--{flag} gives a value more than once: {' '.join(values)}")
        else:
            swept[name.replace("_", "-")] = values
    return common, swept


def _safe(text: str) -> str:
    return "".join(char if char.isalnum() or char in "-_." else "_" for char in text)


def run_name(point: dict[str, Any]) -> str:
    """`Hopper-v5__ace__s0`, then `__OPTION-VALUE` for each further swept option (`__reset-none`)."""
    extras = [f"__{axis}-{_safe(str(value))}" for axis, value in point.items() if axis not in AXES]
    return f"{_safe(str(point['env']))}__{point['algo']}__s{point['seed']}" + "".join(extras)


@dataclass(frozen=True)
class PlannedRun:
    """One grid point: its name, its place in the grid, and the `ace-rl train` options that make it."""

    name: str
    point: dict[str, Any]
    argv: tuple[str, ...]  # the train options, without --run-dir and the execution settings
    run_dir: Path
    total_steps: int

    @property
    def train_argv(self) -> list[str]:
        return [*self.argv, "--run-dir", str(self.run_dir)]


@dataclass
class SweepSpec:
    """What a sweep runs: the grid's axes (env, algo, seed, then any swept option) and the common options."""

    grid: dict[str, list[Any]]
    options: list[str]

    def points(self) -> list[dict[str, Any]]:
        axes = list(self.grid)
        return [dict(zip(axes, values)) for values in itertools.product(*(self.grid[axis] for axis in axes))]


def build_spec(args: SweepArgs, train_tokens: Sequence[str]) -> SweepSpec:
    common, swept = split_train_options(train_tokens)
    defaults = TrainConfig()
    grid: dict[str, list[Any]] = {
        "env": _unique("--env", args.env) or [defaults.env],
        "algo": _unique("--algo", args.algo) or [defaults.algo],
        "seed": parse_seeds(args.seed) if args.seed else [defaults.seed],
    }
    grid.update(swept)
    runs = 1
    for values in grid.values():
        runs *= len(values)
    if runs > MAX_RUNS:
        shape = " x ".join(f"{len(values)} {axis}" for axis, values in grid.items())
        raise SweepError(f"the grid has {runs:,} runs ({shape}), more than the {MAX_RUNS:,} a sweep takes; split it over several sweeps")
    return SweepSpec(grid=grid, options=common)


def group_wandb_runs(spec: SweepSpec, out: Path) -> None:
    """Runs logged to W&B (--wandb-project) are grouped under the sweep directory's name unless a group is given."""
    given = {_setting(token[2:].partition("=")[0]) for token in spec.options if _is_flag(token)}
    given |= {axis.replace("-", "_") for axis in spec.grid}
    if "wandb_project" in given and "wandb_group" not in given:
        spec.options.extend(["--wandb-group", out.name])


def _unique(flag: str, values: Sequence[str]) -> list[str]:
    repeated = sorted({value for value in values if values.count(value) > 1})
    if repeated:
        raise SweepError(f"{flag} gives {', '.join(repeated)} more than once")
    return list(values)


def execution_argv(threads_per_run: int) -> list[str]:
    """The settings the sweep adds to every run: its PyTorch threads, and no per-run progress bar."""
    return ["--threads", str(threads_per_run), "--no-progress"]


def plan_runs(spec: SweepSpec, out: Path, parse_train: TrainParser, threads_per_run: int = 1) -> list[tuple[PlannedRun, TrainConfig]]:
    """Every grid point as a run and its configuration, built by `ace-rl train`'s own parser and validated.

    Raises SweepError (one line, naming the run) for the first grid point that `ace-rl train` would refuse.
    """
    out = out.resolve()
    planned: list[tuple[PlannedRun, TrainConfig]] = []
    names: dict[str, dict[str, Any]] = {}
    # The seed sets nothing but itself, so each grid point without its seed is parsed once (20 ms a parse).
    parsed: dict[tuple[tuple[str, str], ...], TrainConfig] = {}
    for point in spec.points():
        name = run_name(point)
        if name in names:
            raise SweepError(f"grid points {names[name]} and {point} would share the run directory {name}")
        names[name] = point
        argv = [*spec.options, "--env", str(point["env"]), "--algo", str(point["algo"]), "--seed", str(point["seed"])]
        for axis, value in point.items():
            if axis not in AXES:
                argv.extend([f"--{axis}", str(value)])
        run = PlannedRun(name=name, point=point, argv=tuple(argv), run_dir=out / name, total_steps=0)
        unseeded = tuple((axis, str(value)) for axis, value in point.items() if axis != "seed")
        try:
            if unseeded in parsed:
                config = dataclasses.replace(parsed[unseeded], seed=int(point["seed"]), run_dir=run.run_dir)
            else:
                config = parsed[unseeded] = parse_train([*run.train_argv, *execution_argv(threads_per_run)])
            validate(config)
        except ConfigError as error:
            raise SweepError(f"run {name}: {error}") from None
        planned.append((dataclasses.replace(run, total_steps=config.total_steps), config))
    return planned


def check_environments(configs: Iterable[TrainConfig]) -> None:
    """Make each task once, so that an unknown or uninstalled environment is refused before anything runs."""
    from ace_rl.envs import EnvError  # Gymnasium and PyTorch: not for --status
    from ace_rl.trainer import check_causal_time_limit, probe_environment

    sizes: dict[tuple[str, str, str], int] = {}
    checked: set[tuple] = set()
    for config in configs:
        key = (config.env, config.reward, json.dumps(config.env_kwargs, sort_keys=True))
        if key not in sizes:
            try:
                sizes[key] = probe_environment(config)
            except EnvError as error:
                raise SweepError(str(error)) from None
        causal = (*key, config.algo, config.causal_method, config.causal_samples, config.causal_time_limit)
        if causal not in checked:
            checked.add(causal)
            check_causal_time_limit(config, sizes[key])


# --------------------------------------------------------------------------------------------------------------
# sweep.json: the specification, written once; a later invocation must match it
# --------------------------------------------------------------------------------------------------------------
def experiment_settings(config: TrainConfig) -> dict[str, Any]:
    """The configuration without the settings that only decide where and how a run executes."""
    values = to_json_dict(config)
    for name in EXECUTION_SETTINGS:
        values.pop(name, None)
    return json.loads(json.dumps(values))  # as sweep.json holds them (tuples become lists), so that both compare


def spec_document(spec: SweepSpec, planned: Sequence[tuple[PlannedRun, TrainConfig]], command: Sequence[str]) -> dict[str, Any]:
    commit, dirty = git_commit(Path(ace_rl.__file__).parent)
    return {
        "format": SPEC_FORMAT,
        "created": datetime.now().isoformat(timespec="seconds"),
        "command": ["ace-rl", "sweep", *command],
        "ace_rl_version": ace_rl.__version__,
        "git_commit": commit,
        "git_dirty": dirty,
        "grid": spec.grid,
        "options": spec.options,
        "runs": [
            {"name": run.name, "point": run.point, "argv": list(run.argv), "config": experiment_settings(config)}
            for run, config in planned
        ],
    }


def git_commit(package_dir: Path) -> tuple[Optional[str], Optional[bool]]:
    """The commit of the git checkout the package is imported from, and whether the package has uncommitted
    changes; (None, None) for an installed copy or without git."""

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", "-C", str(package_dir), *args], capture_output=True, text=True, timeout=20)

    try:
        head = git("rev-parse", "HEAD")
        tracked = git("ls-files", "--error-unmatch", "__init__.py")  # a venv inside a repository is not its source
        if head.returncode != 0 or tracked.returncode != 0:
            return None, None
        changes = git("status", "--porcelain", "--untracked-files=no", "--", ".")
        return head.stdout.strip(), bool(changes.stdout.strip()) if changes.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None, None


def load_spec(out: Path) -> dict[str, Any]:
    path = out / SPEC_FILE
    try:
        document = json.loads(path.read_text())
        readable = (
            isinstance(document.get("grid"), dict) and isinstance(document.get("options"), list)
            and all(isinstance(run["name"], str) and "total_steps" in run["config"] for run in document["runs"])
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise SweepError(f"{path} is unreadable ({type(error).__name__}: {error})") from None
    if not readable:
        raise SweepError(f"{path} is not a sweep specification written by ace-rl sweep")
    return document


def stored_spec(document: dict[str, Any]) -> SweepSpec:
    return SweepSpec(grid={axis: list(values) for axis, values in document["grid"].items()}, options=list(document["options"]))


def _describe_values(axis: str, values: Optional[Sequence[Any]]) -> str:
    if values is None:
        return "(not swept)"
    if axis == "seed" and all(isinstance(v, int) for v in values):
        return format_seeds(values)
    return " ".join(str(v) for v in values)


def spec_differences(stored: dict[str, Any], spec: SweepSpec, planned: Sequence[tuple[PlannedRun, TrainConfig]]) -> list[str]:
    """What differs between sweep.json and this command's specification, one phrase per difference."""
    differences = []
    for axis in [*stored["grid"], *(a for a in spec.grid if a not in stored["grid"])]:
        before, now = stored["grid"].get(axis), spec.grid.get(axis)
        if before != now:
            differences.append(f"--{axis} {_describe_values(axis, before)} in {SPEC_FILE}, {_describe_values(axis, now)} now")
    if differences:
        return differences
    stored_configs = {run["name"]: run["config"] for run in stored["runs"]}
    changed: dict[str, tuple[Any, Any]] = {}
    for run, config in planned:
        before = stored_configs.get(run.name, {})
        now = experiment_settings(config)
        for name in [*before, *(n for n in now if n not in before)]:
            if name not in changed and before.get(name) != now.get(name):
                changed[name] = (before.get(name), now.get(name))
    return [f"{name} {before} in {SPEC_FILE}, {now} now (--{name.replace('_', '-')})" for name, (before, now) in changed.items()]


# --------------------------------------------------------------------------------------------------------------
# What the directories say
# --------------------------------------------------------------------------------------------------------------
@dataclass
class RunProgress:
    env_step: int = 0
    done: bool = False
    started: bool = False  # the run directory holds a run
    last_eval: Optional[float] = None
    last_success: Optional[float] = None
    modified: float = 0.0  # latest modification time of its logs (seconds since the epoch)


def state_step(path: Path) -> int:
    """The env step of a full-state checkpoint, from its name (RunDir.state)."""
    return int(path.name.split("-", 1)[1].split(".", 1)[0])


def _last_row(path: Path, tail_bytes: int = 16_384) -> Optional[dict[str, str]]:
    """The last complete row of a CSV log, reading only its end."""
    try:
        with open(path, "rb") as file:
            header = file.readline().decode()
            size = file.seek(0, os.SEEK_END)
            start = max(len(header), size - tail_bytes)
            file.seek(start)
            tail = file.read().decode(errors="replace")
    except OSError:
        return None
    lines = tail.split("\n")
    complete = lines[:-1]  # what follows the last newline may be a row being written
    if start > len(header) and complete:
        complete = complete[1:]  # the first line of the tail may be cut
    for line in reversed(complete):
        if line.strip():
            rows = list(csv.reader(io.StringIO(header + line + "\n")))
            fields = next(csv.reader(io.StringIO(header)), [])
            if len(rows) >= 2 and len(rows[1]) == len(fields):
                return dict(zip(fields, rows[1]))
    return None


def _number(text: Optional[str]) -> Optional[float]:
    try:
        return float(text) if text not in (None, "") else None
    except ValueError:
        return None


def observe_run(run_dir: Path, total_steps: int) -> RunProgress:
    """Progress of a run read from its directory: the latest of its logs and checkpoints."""
    directory = RunDir(run_dir)
    progress = RunProgress(started=directory.is_run())
    if not progress.started:
        return progress
    state_steps = [state_step(path) for path in directory.states()]
    steps = list(state_steps)
    metrics = _last_row(directory.metrics)
    episodes = _last_row(directory.episodes)
    for row in (metrics, episodes):
        if row is not None and _number(row.get("env_step")) is not None:
            steps.append(int(float(row["env_step"])))
    progress.env_step = max(steps, default=0)
    if metrics is not None:
        progress.last_eval = _number(metrics.get("eval_return_mean"))
        progress.last_success = _number(metrics.get("eval_success_rate"))
    progress.done = directory.policy("final").is_file() or any(step >= total_steps for step in state_steps)
    if progress.done:
        progress.env_step = max(progress.env_step, total_steps)
    mtimes = [path.stat().st_mtime for path in (directory.config, directory.metrics, directory.episodes) if path.is_file()]
    progress.modified = max(mtimes, default=0.0)
    return progress


# --------------------------------------------------------------------------------------------------------------
# One run, in a Ray worker
# --------------------------------------------------------------------------------------------------------------
@dataclass
class RunOutcome:
    name: str
    state: str  # done, failed, stopped; lost: Ray failed it (the run continues next time)
    message: str = ""
    cluster_wide: bool = False  # lost with the whole cluster


def execute_run(run: PlannedRun, extra_argv: Sequence[str], log_path: Path, parse_train: TrainParser) -> RunOutcome:
    """Train one grid point to the end: from scratch, or resumed from its latest checkpoint when it has one.

    Runs inside a Ray worker. Ray calls it again after the worker died, and that call resumes. An earlier
    attempt that still holds the run directory (its lock) is waited for. Errors of the run itself (NaN stop,
    refused option, unreadable checkpoint, a full or read-only disk, anything else) become a failed outcome with
    a one-line message; the full traceback goes to the run's log.
    """
    from ace_rl.checkpoint import CheckpointError
    from ace_rl.envs import EnvError
    from ace_rl.trainer import NonFiniteError, TrainingStopped

    with _RunLog(log_path) as log, redirect_stdout(log), redirect_stderr(log):
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        while True:
            try:
                return _attempt(run, extra_argv, parse_train)
            except RunDirBusy as error:  # only a held lock passes by waiting; a full disk or a read-only one does not
                if time.monotonic() > deadline:
                    return _failed(run, error)
                print(f"waiting {LOCK_POLL_SECONDS:g} s: {error}", flush=True)
                time.sleep(LOCK_POLL_SECONDS)
            except TrainingStopped as stop:
                print(f"stopped: {stop}", flush=True)
                return RunOutcome(run.name, "stopped", str(stop))
            except (ConfigError, EnvError, CheckpointError, NonFiniteError) as error:
                return _failed(run, error)
            except Exception as error:  # noqa: BLE001 - any error of one run must not stop the others
                traceback.print_exc()
                return _failed(run, error)


class _RunLog(io.TextIOBase):
    """DIR/logs/RUN.log, appended to; a line that cannot be written (a full disk) is lost rather than turning the
    run's outcome into an error about its log."""

    def __init__(self, path: Path) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(path, "a", buffering=1)
        except OSError:
            self._file = open(os.devnull, "w")

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        with suppress(OSError):
            self._file.write(text)
        return len(text)

    def flush(self) -> None:
        with suppress(OSError):
            self._file.flush()

    def close(self) -> None:
        super().close()  # flushes first
        with suppress(OSError):
            self._file.close()


def _failed(run: PlannedRun, error: BaseException) -> RunOutcome:
    message = f"{type(error).__name__}: {error}".splitlines()[0]
    print(f"failed: {message}", flush=True)
    return RunOutcome(run.name, "failed", message)


def _attempt(run: PlannedRun, extra_argv: Sequence[str], parse_train: TrainParser) -> RunOutcome:
    from ace_rl.trainer import train

    stamp = f"== {datetime.now().isoformat(timespec='seconds')} {socket.gethostname()} pid {os.getpid()}:"
    if is_locked(run.run_dir):
        holder = RunLock(run.run_dir).holder()
        raise RunDirBusy(f"run directory {run.run_dir} is held by an earlier attempt{f' (pid {holder})' if holder else ''}")
    if observe_run(run.run_dir, run.total_steps).done:
        print(f"{stamp} already done", flush=True)
        return RunOutcome(run.name, "done")
    layout = RunDir(run.run_dir)
    states = layout.states()
    if layout.is_run():
        # As `ace-rl train --resume` does: from the latest checkpoint, or, for a run stopped before its first one,
        # again from env step 0 in place (keeping what is not its output, such as wandb_id.txt: the same W&B run).
        how = f"resuming from {states[-1].name} (env step {state_step(states[-1])})" if states else (
            "restarting from env step 0 (stopped before its first checkpoint)"
        )
        print(f"{stamp} {how}: ace-rl train --resume {run.run_dir}", flush=True)
        config = parse_train(["--resume", str(run.run_dir), *run.argv, *extra_argv])
    else:
        for temporary in layout.temporary_files():  # of a start killed while writing its config.json
            temporary.unlink(missing_ok=True)
        print(f"{stamp} starting: ace-rl train {' '.join(run.train_argv)}", flush=True)
        config = parse_train([*run.train_argv, *extra_argv])
    train(config)
    print(f"done at {datetime.now().isoformat(timespec='seconds')}", flush=True)
    return RunOutcome(run.name, "done")


# --------------------------------------------------------------------------------------------------------------
# sweep_status.json and the table
# --------------------------------------------------------------------------------------------------------------
def load_status(out: Path) -> dict[str, Any]:
    try:
        document = json.loads((out / STATUS_FILE).read_text())
        return document if isinstance(document.get("runs"), dict) else {"runs": {}}
    except (OSError, ValueError, AttributeError):
        return {"runs": {}}


def save_status(out: Path, status: dict[str, Any]) -> None:
    status["updated"] = datetime.now().isoformat(timespec="seconds")
    text = json.dumps(status, indent=2) + "\n"
    write_atomically(out / STATUS_FILE, lambda file: file.write(text.encode()))


@dataclass
class RunRow:
    name: str
    state: str  # queued, running, done, failed, stopped (unfinished, resumable from a checkpoint)
    env_step: int
    total_steps: int
    last_eval: Optional[float] = None
    last_success: Optional[float] = None
    note: str = ""


def status_rows(document: dict[str, Any], out: Path, status: dict[str, Any], sweep_running: bool) -> list[RunRow]:
    """The table of runs as the directories and sweep_status.json tell it, without running anything."""
    rows = []
    for run in document["runs"]:
        total = int(run["config"]["total_steps"])
        progress = observe_run(out / run["name"], total)
        recorded = status["runs"].get(run["name"], {})
        if progress.done:
            state, note = "done", ""
        elif is_locked(out / run["name"]) or (sweep_running and recorded.get("state") == "running"):
            state, note = "running", ""
        elif recorded.get("state") == "failed":
            state, note = "failed", recorded.get("error", "")
        elif progress.started and RunDir(out / run["name"]).states():
            state, note = "stopped", "continues from its checkpoint on the next ace-rl sweep"
        elif progress.started:
            state, note = "queued", "stopped before its first checkpoint: starts again from env step 0"
        else:
            state, note = "queued", ""
        rows.append(RunRow(run["name"], state, progress.env_step, total, progress.last_eval, progress.last_success, note))
    return rows


STATE_STYLES = {"queued": "dim", "running": "cyan", "done": "green", "failed": "bold red", "stopped": "yellow"}


def render_table(rows: Sequence[RunRow], max_rows: Optional[int] = None) -> Any:
    from rich.table import Table

    shown = list(rows)
    hidden = 0
    if max_rows is not None and len(shown) > max_rows:
        order = {"running": 0, "failed": 1, "stopped": 2, "queued": 3, "done": 4}
        keep = set(id(row) for row in sorted(shown, key=lambda row: order[row.state])[:max_rows])
        hidden = len(shown) - max_rows
        shown = [row for row in shown if id(row) in keep]
    counts = {state: sum(row.state == state for row in rows) for state in STATE_STYLES}
    caption = ", ".join(f"{count} {state}" for state, count in counts.items() if count)
    if hidden:
        caption += f" ({hidden} rows not shown; ace-rl sweep --status DIR shows all)"
    table = Table(caption=caption, caption_justify="left", expand=False)
    for column, justify in (("run", "left"), ("state", "left"), ("env step", "right"), ("last eval", "right"), ("note", "left")):
        table.add_column(column, justify=justify, overflow="fold")
    for row in shown:
        evaluation = "" if row.last_eval is None else f"{row.last_eval:.1f}"
        if row.last_success is not None:
            evaluation += f" (success {row.last_success:.2f})"
        style = STATE_STYLES[row.state]
        table.add_row(row.name, f"[{style}]{row.state}[/]", f"{row.env_step:,} / {row.total_steps:,}", evaluation, row.note)
    return table


def _require(*modules: str) -> None:
    """Refuse in one line, naming the extra, when a module of the sweep extra is not installed."""
    missing = [{"ray": "Ray"}.get(module, module) for module in modules if importlib.util.find_spec(module) is None]
    if missing:
        raise SweepError(
            f"ace-rl sweep needs {' and '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not installed; "
            f"install {'it' if len(missing) == 1 else 'them'} with: {EXTRA_HINT}"
        )


def show_status(out: Path) -> int:
    """`ace-rl sweep --status DIR`: print the table; exit status 1 when a run failed."""
    _require("rich")
    if not (out / SPEC_FILE).is_file():
        raise SweepError(f"no sweep in {out} ({SPEC_FILE} is missing)")
    document = load_spec(out)
    running = is_locked(out)
    rows = status_rows(document, out, load_status(out), running)
    console = _console()
    console.print(render_table(rows))
    holder = RunLock(out).holder() if running else None
    console.print(f"sweep {out}: " + (f"running (ace-rl sweep pid {holder})" if running else "not running"), highlight=False)
    return 1 if any(row.state == "failed" for row in rows) else 0


# --------------------------------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------------------------------
def sweep_main(argv: Sequence[str], parse_train: TrainParser) -> int:
    """`ace-rl sweep ...`; returns the exit status. ``parse_train`` is `ace-rl train`'s parser."""
    args, train_tokens = tyro.cli(SweepArgs, args=list(argv), prog="ace-rl sweep", return_unknown_args=True)
    if args.status is not None:
        if args.out is not None or train_tokens or args.env or args.algo or args.seed:
            raise SweepError("--status DIR takes no other option")
        return show_status(args.status)
    _check_execution(args)
    _require("ray", "rich")
    out = args.out.resolve()
    document, spec, planned = _specification(args, train_tokens, out, parse_train)
    grid, to_run, status = _classify([run for run, _ in planned], out, args.retry_failed)
    configs = {run.name: config for run, config in planned}
    check_environments(configs[run.name] for run in to_run)
    if any(configs[run.name].wandb_project is not None for run in to_run):
        from ace_rl.wandb_logger import check_wandb_usable

        check_wandb_usable()  # a broken wandb is refused here, not by every run

    created = _create_out(out, args.out)
    sweep_lock = RunLock(out)
    lock_existed = sweep_lock.path.exists()
    try:
        sweep_lock.acquire()
    except RunDirError as error:
        _leave_no_trace(sweep_lock.path, lock_existed, created)
        if isinstance(error, RunDirBusy):
            holder = sweep_lock.holder()
            raise SweepError(f"{args.out} is in use by another ace-rl sweep{f' (pid {holder})' if holder else ''}") from None
        raise SweepError(f"cannot use --out {args.out}: {error}") from None
    ray: Any = None
    session: Optional[Path] = None  # the temporary directory of a Ray started here
    try:
        if to_run:
            import ray

            session = _start_ray(ray, args)  # before sweep.json is written: a cluster that cannot run the grid is refused first
        if document is None:
            rebuilt = _holds_files(out)  # check_existing_runs found that every run there matches this command
            written = spec_document(spec, planned, argv)
            text = json.dumps(written, indent=2) + "\n"
            write_atomically(out / SPEC_FILE, lambda file: file.write(text.encode()))
            document = written
            if rebuilt:
                print(f"ace-rl: note: {args.out} had no {SPEC_FILE}; written again from this command, which its runs match", file=sys.stderr)
        return _run_grid(ray, args, out, grid, to_run, status, parse_train)
    finally:
        if ray is not None:
            _stop_ray(ray, session)
        sweep_lock.release()
        if document is None:  # refused before anything was written: leave no trace
            _leave_no_trace(sweep_lock.path, lock_existed, created)


def _create_out(out: Path, shown: Path) -> list[Path]:
    """Create the sweep directory and its missing parents; those created, deepest first. Refuses in one line
    naming the directory and the cause, leaving none of them behind."""
    missing = [path for path in (out, *out.parents) if not path.exists()]
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        _leave_no_trace(None, True, missing)
        blocker = next((path for path in out.parents if path.exists()), None)
        not_a_directory = blocker is not None and not blocker.is_dir()
        cause = f"{blocker} is a file, not a directory" if not_a_directory else error.strerror or str(error)
        raise SweepError(f"cannot create --out {shown}: {cause}") from None
    return missing


def _leave_no_trace(lock: Optional[Path], lock_existed: bool, created: Sequence[Path]) -> None:
    """Remove the lock file and the directories (deepest first) that a refused invocation created."""
    if lock is not None and not lock_existed:
        with suppress(OSError):
            lock.unlink(missing_ok=True)
    for directory in created:
        with suppress(OSError):
            directory.rmdir()


def _check_execution(args: SweepArgs) -> None:
    if args.out is None:
        raise SweepError("give --out DIR (a new sweep directory, or one to continue) or --status DIR")
    if args.threads_per_run < 1:
        raise SweepError(f"--threads-per-run must be a positive integer, got {args.threads_per_run}")
    if args.gpus_per_run < 0:
        raise SweepError(f"--gpus-per-run must be zero or positive, got {args.gpus_per_run}")
    if args.max_retries < 0:
        raise SweepError(f"--max-retries must be zero or positive, got {args.max_retries}")


def _specification(
    args: SweepArgs, train_tokens: Sequence[str], out: Path, parse_train: TrainParser,
) -> tuple[Optional[dict[str, Any]], SweepSpec, list[tuple[PlannedRun, TrainConfig]]]:
    """sweep.json (None for a new sweep), the specification to run, and its runs; refuses a changed one."""
    given = bool(args.env or args.algo or args.seed or train_tokens)
    document = load_spec(out) if (out / SPEC_FILE).is_file() else None
    if document is None:
        if out.exists() and not out.is_dir():
            raise SweepError(f"--out {args.out} is a file, not a directory")
        if not given and _holds_files(out):
            raise SweepError(
                f"--out {args.out} holds files but no {SPEC_FILE}; to continue the sweep there, give the full command "
                f"that created it ({SPEC_FILE} is then written again if every run there matches it), or choose a new --out"
            )
        if not given:
            raise SweepError(f"--out {args.out} holds no sweep yet; give the grid, e.g. --env Hopper-v5 --algo ace sac --seed 0-4")
    if given:
        spec = build_spec(args, train_tokens)
        group_wandb_runs(spec, out)
    else:
        spec = stored_spec(document)
    planned = plan_runs(spec, out, parse_train, args.threads_per_run)
    if document is None:
        check_existing_runs(out, args.out, planned)
    else:
        differences = spec_differences(document, spec, planned)
        if differences:
            origin = "this command" if given else f"this ace-rl ({ace_rl.__version__}) reading its options"
            raise SweepError(
                f"{args.out} holds a different sweep than {origin}: {'; '.join(differences)}; continue it with "
                f"`ace-rl sweep --out {args.out}` or choose a new --out"
            )
        if document.get("ace_rl_version") != ace_rl.__version__:
            print(
                f"ace-rl: note: {args.out} was created by ace-rl {document.get('ace_rl_version')}; this is {ace_rl.__version__}",
                file=sys.stderr,
            )
    return document, spec, planned


SWEEP_FILES = frozenset({SPEC_FILE, STATUS_FILE, LOGS, LOCK, SPEC_FILE + TEMPORARY_SUFFIX, STATUS_FILE + TEMPORARY_SUFFIX})


def _holds_files(out: Path) -> bool:
    """Whether the directory ``out`` holds anything besides the lock of a sweep."""
    return out.is_dir() and any(path.name != LOCK for path in out.iterdir())


def check_existing_runs(out: Path, shown: Path, planned: Sequence[tuple[PlannedRun, TrainConfig]]) -> None:
    """A sweep directory without sweep.json (deleted) is taken up by the command that created it: everything in
    it must be the sweep's own files or a run of this grid whose config.json, where it has one, holds the
    experiment settings this command plans for it. Raises SweepError naming the first that is not."""
    if not out.is_dir():
        return
    advice = f"give the command that created {shown}, or choose a new --out"
    configs = {run.name: config for run, config in planned}
    for path in sorted(out.iterdir()):
        if path.name not in SWEEP_FILES and not (path.name in configs and path.is_dir()):
            raise SweepError(f"--out {shown} has no {SPEC_FILE} and holds {path.name}, which is no run of this grid; {advice}")
    for run, config in planned:
        layout = RunDir(run.run_dir)
        if not layout.is_run():
            continue  # stopped before its config.json: it starts like a new run
        try:
            stored = config_from_json_dict(json.loads(layout.config.read_text()), str(layout.config))
        except (OSError, ValueError) as error:  # ConfigError is a ValueError and names the file
            message = str(error) if isinstance(error, ConfigError) else f"{layout.config} is unreadable ({error})"
            raise SweepError(f"--out {shown} has no {SPEC_FILE}, and {message}; {advice}") from None
        before, now = experiment_settings(stored), experiment_settings(config)
        changed = [name for name in [*before, *(n for n in now if n not in before)] if before.get(name) != now.get(name)]
        if changed:
            differences = ", ".join(
                f"{name} {before.get(name)} in its config.json, {now.get(name)} now (--{name.replace('_', '-')})" for name in changed
            )
            raise SweepError(f"--out {shown} has no {SPEC_FILE}, and its run {run.name} differs from this command: {differences}; {advice}")


def _console() -> Any:
    from rich.console import Console

    # Logs and pipes get wide lines rather than run names folded at 80 columns.
    return Console() if sys.stdout.isatty() else Console(width=200)


@dataclass
class _Grid:
    """Every run of the sweep and what the driver knows of each."""

    runs: list[PlannedRun]
    state: dict[str, str] = field(default_factory=dict)
    note: dict[str, str] = field(default_factory=dict)
    progress: dict[str, RunProgress] = field(default_factory=dict)

    def observe(self, run: PlannedRun) -> RunProgress:
        self.progress[run.name] = observe_run(run.run_dir, run.total_steps)
        return self.progress[run.name]

    def rows(self) -> list[RunRow]:
        return [
            RunRow(
                run.name, self.state[run.name], self.progress[run.name].env_step, run.total_steps,
                self.progress[run.name].last_eval, self.progress[run.name].last_success, self.note.get(run.name, ""),
            )
            for run in self.runs
        ]

    def steps(self) -> tuple[int, int]:
        """Env steps done and to do over the grid; a failed run counts for the steps it reached."""
        done = sum(self.progress[run.name].env_step for run in self.runs)
        total = sum(
            self.progress[run.name].env_step if self.state[run.name] == "failed" else run.total_steps for run in self.runs
        )
        return done, total


def _classify(runs: list[PlannedRun], out: Path, retry_failed: bool) -> tuple[_Grid, list[PlannedRun], dict[str, Any]]:
    """Which runs are done, which failed earlier (left alone unless retry_failed), which are to run."""
    status = load_status(out)
    status["runs"] = {name: record for name, record in status["runs"].items() if record.get("state") == "failed"}
    grid = _Grid(runs)
    to_run: list[PlannedRun] = []
    for run in runs:
        recorded = status["runs"].get(run.name)
        if grid.observe(run).done:
            grid.state[run.name] = "done"
            status["runs"].pop(run.name, None)
        elif recorded and not retry_failed:
            grid.state[run.name], grid.note[run.name] = "failed", recorded.get("error", "")
        else:
            status["runs"].pop(run.name, None)
            grid.state[run.name] = "queued"
            to_run.append(run)
    return grid, to_run, status


def _run_grid(
    ray: Any, args: SweepArgs, out: Path, grid: _Grid, to_run: list[PlannedRun], status: dict[str, Any], parse_train: TrainParser,
) -> int:
    from rich.live import Live

    console = _console()
    if not to_run:
        console.print(render_table(grid.rows()))
        return _finish(out, grid, stopped_by=None)
    # Seed-major order: with fewer slots than runs, every task and algorithm gets its first seeds first.
    seed_position = {seed: index for index, seed in enumerate(dict.fromkeys(run.point["seed"] for run in grid.runs))}
    driver = _Driver(ray, args, out, grid, status, parse_train, console)
    for run in sorted(to_run, key=lambda run: seed_position[run.point["seed"]]):
        driver.submit(run)
    driver.save()
    stop = _StopRequest()
    with stop.installed(), _native_stderr_to(out / LOGS / RAY_LOG), Live(driver.display(), console=console, refresh_per_second=2) as live:
        while driver.pending:
            try:
                ready, _ = ray.wait(list(driver.pending), num_returns=1, timeout=REFRESH_SECONDS)
            except (ray.exceptions.RayError, ConnectionError) as error:
                ready, driver.cluster_lost = [], _error_line(error)
            for ref in ready:
                live.console.print(driver.collect(ref), highlight=False, soft_wrap=True)
            driver.check_cluster()
            if driver.cluster_lost is not None:
                driver.leave_unfinished()
                break
            if stop.requested is not None and driver.stopped_by is None:
                live.console.print(driver.stop(stop.requested), highlight=False, soft_wrap=True)
            if stop.count > 1 or driver.stop_overdue():
                driver.abandon()
            driver.mark_started()
            live.update(driver.display())
        for run in grid.runs:
            grid.observe(run)
        live.update(driver.display())
    status.pop("driver_pid", None)
    driver.save(final=True)
    return _finish(out, grid, driver.stopped_by, driver.cluster_lost, args.address)


class _Driver:
    """The runs in flight on Ray, and what becomes of each: recorded in sweep_status.json and the table."""

    def __init__(
        self, ray: Any, args: SweepArgs, out: Path, grid: _Grid, status: dict[str, Any], parse_train: TrainParser, console: Any,
    ) -> None:
        from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.ray, self.args, self.out, self.grid, self.status, self.parse_train = ray, args, out, grid, status, parse_train
        self.remote = ray.remote(execute_run)
        self.pending: dict[Any, PlannedRun] = {}
        self.resubmitted: dict[str, int] = {}
        self.started_at = time.time()
        self.stopped_by: Optional[str] = None
        self.stop_deadline: Optional[float] = None
        self.cluster_lost: Optional[str] = None  # why the sweep cannot go on: the Ray cluster is gone
        self.head = _head_endpoint(ray, args.address)
        self.head_silent_since: Optional[float] = None
        self.next_probe = 0.0
        self.status_unwritable = False
        self.status["driver_pid"] = os.getpid()
        self.bar = Progress(
            TextColumn("env steps"), BarColumn(), TaskProgressColumn(), TextColumn("{task.completed:,.0f} / {task.total:,.0f}"),
            TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(), console=console,
        )
        self.bar_task = self.bar.add_task("grid", total=None)
        self.max_rows = max(5, console.size.height - 8) if console.is_terminal else None

    def submit(self, run: PlannedRun) -> None:
        options = dict(
            num_cpus=self.args.threads_per_run, num_gpus=self.args.gpus_per_run, max_retries=self.args.max_retries,
            retry_exceptions=False, name=f"ace-rl {run.name}",
        )
        log = self.out / LOGS / f"{run.name}.log"
        ref = self.remote.options(**options).remote(run, execution_argv(self.args.threads_per_run), log, self.parse_train)
        self.pending[ref] = run
        self.status["runs"][run.name] = {"state": "queued"}

    def collect(self, ref: Any) -> str:
        """Record the outcome of a finished task; the line to print."""
        run = self.pending.pop(ref)
        outcome = _outcome(self.ray, ref, run, stopping=self.stopped_by is not None)
        progress = self.grid.observe(run)
        if outcome.state == "lost":
            # The cluster failed, not the run: it stays to do, as it was, and the next ace-rl sweep continues it.
            self.grid.state[run.name] = "stopped" if progress.started else "queued"
            self.status["runs"].pop(run.name, None)
            if self.cluster_lost is None and (outcome.cluster_wide or not self.head_answers()):
                self.cluster_lost = outcome.message
            self.save()
            return f"{self.grid.state[run.name]:<8} {run.name}: {outcome.message} (Ray's failure, not the run's: it continues on the next ace-rl sweep)"
        if outcome.state == "stopped" and self.stopped_by is None and self.resubmitted.get(run.name, 0) < self.args.max_retries:
            # Stopped by a signal that did not come from this sweep (a node draining): continue it.
            self.resubmitted[run.name] = self.resubmitted.get(run.name, 0) + 1
            self.submit(run)
            return f"resumed  {run.name}: {outcome.message}"
        self.grid.state[run.name] = outcome.state
        self.grid.note[run.name] = outcome.message if outcome.state == "failed" else ""
        if outcome.state == "failed":
            self.status["runs"][run.name] = {"state": "failed", "error": outcome.message}
        else:
            self.status["runs"].pop(run.name, None)
        self.save()
        return _event_line(run, outcome, progress)

    def save(self, final: bool = False) -> None:
        """Write sweep_status.json. A write that fails (a full disk) is said once, and the sweep goes on: the run
        directories hold the runs' progress; the file only adds failures and what is in flight. The final write
        makes room by removing the old file first, so that no run is left marked running."""
        try:
            save_status(self.out, self.status)
            return
        except OSError as error:
            problem = str(error)
        if final:
            try:
                (self.out / STATUS_FILE).unlink(missing_ok=True)
                save_status(self.out, self.status)
                return
            except OSError as error:
                problem = str(error)
        if not self.status_unwritable or final:
            what = (
                "it records no failure now (the next ace-rl sweep runs the failed runs again)" if final
                else "the sweep goes on and tries again at each change"
            )
            print(f"ace-rl: warning: {problem}; {what}", file=sys.stderr)
        self.status_unwritable = True

    def head_answers(self) -> bool:
        """Whether the cluster's head accepts a connection (True where its address is not known)."""
        return self.head is None or _answers(*self.head, timeout=PROBE_SECONDS)

    def check_cluster(self) -> None:
        """A head that stops answering for CLUSTER_LOST_SECONDS is a lost cluster (Ray alone would wait a minute,
        then abort this process)."""
        if self.cluster_lost is not None or self.head is None or time.monotonic() < self.next_probe:
            return
        self.next_probe = time.monotonic() + PROBE_INTERVAL_SECONDS
        if self.head_answers():
            self.head_silent_since = None
        elif self.head_silent_since is None:
            self.head_silent_since = time.monotonic()
        elif time.monotonic() - self.head_silent_since > CLUSTER_LOST_SECONDS:
            self.cluster_lost = f"its head at {self.head[0]}:{self.head[1]} has not answered for {CLUSTER_LOST_SECONDS:g} s"

    def leave_unfinished(self) -> None:
        """The cluster is gone: the runs in flight are left as they are (resumable, not failed), without asking Ray."""
        for run in self.pending.values():
            self.grid.state[run.name] = "stopped" if self.grid.observe(run).started else "queued"
            self.status["runs"].pop(run.name, None)
        self.pending.clear()

    def stop(self, signal_name: str) -> str:
        """Ask every run to checkpoint and stop (Ray interrupts running tasks; the trainer's handler checkpoints)."""
        self.stopped_by = signal_name
        running = sum(self.grid.state[run.name] == "running" for run in self.pending.values())
        for ref in self.pending:
            self.ray.cancel(ref, force=False)
        self.stop_deadline = time.monotonic() + STOP_GRACE_SECONDS
        return (
            f"{signal_name}: checkpointing {running} running runs; send it again to stop at once "
            "(they then continue from their last periodic checkpoint)"
        )

    def stop_overdue(self) -> bool:
        return self.stop_deadline is not None and time.monotonic() > self.stop_deadline

    def abandon(self) -> None:
        """Kill the runs still in flight; each continues from its last checkpoint next time."""
        for ref, run in self.pending.items():
            self.ray.cancel(ref, force=True)
            self.grid.state[run.name] = unfinished_state(run.run_dir)
            self.status["runs"].pop(run.name, None)
        self.pending.clear()

    def mark_started(self) -> None:
        """Queued runs whose directory is locked or was written since the sweep began are running."""
        changed = False
        for run in self.pending.values():
            progress = self.grid.observe(run)
            if self.grid.state[run.name] == "queued" and (is_locked(run.run_dir) or progress.modified >= self.started_at):
                self.grid.state[run.name] = "running"
                self.status["runs"][run.name] = {"state": "running"}
                changed = True
        if changed:
            self.save()

    def display(self) -> Any:
        from rich.console import Group

        done_steps, total_steps = self.grid.steps()
        self.bar.update(self.bar_task, completed=done_steps, total=total_steps)
        return Group(self.bar, render_table(self.grid.rows(), self.max_rows))


# Ray's own failures, not the run's: a worker or node that died (after Ray's retries), a raylet that died.
INFRASTRUCTURE_ERRORS = ("WorkerCrashedError", "NodeDiedError", "ObjectLostError", "LocalRayletDiedError", "RaySystemError")
# Those that leave this driver without its cluster.
CLUSTER_ERRORS = ("LocalRayletDiedError", "RaySystemError")


def unfinished_state(run_dir: Path) -> str:
    """An unfinished run is "stopped" when it has a checkpoint to continue from, else "queued" (it starts again
    from env step 0), as `--status` labels it."""
    return "stopped" if RunDir(run_dir).states() else "queued"


def _outcome(ray: Any, ref: Any, run: PlannedRun, stopping: bool) -> RunOutcome:
    try:
        return ray.get(ref)
    except ray.exceptions.TaskCancelledError:
        return RunOutcome(run.name, unfinished_state(run.run_dir))
    except ray.exceptions.RayError as error:
        if stopping:
            return RunOutcome(run.name, "stopped")
        kinds = {cls.__name__ for cls in type(error).__mro__}
        if kinds & set(INFRASTRUCTURE_ERRORS) and not isinstance(error, ray.exceptions.RayTaskError):
            return RunOutcome(run.name, "lost", _error_line(error), cluster_wide=bool(kinds & set(CLUSTER_ERRORS)))
        return RunOutcome(run.name, "failed", _error_line(error))


_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


def _error_line(error: BaseException) -> str:
    """One line for a Ray error: the exception underneath (a worker that died, arguments that failed to load)."""
    cause = getattr(error, "cause", None)
    shown = cause if isinstance(cause, BaseException) else error
    lines = [line.strip() for line in _ANSI_ESCAPE.sub("", str(shown)).splitlines() if line.strip()]
    return f"{type(shown).__name__}: {lines[0] if lines else ''}"


def _event_line(run: PlannedRun, outcome: RunOutcome, progress: RunProgress) -> str:
    evaluation = "" if progress.last_eval is None else f", last eval {progress.last_eval:.1f}"
    if outcome.state == "failed":
        return f"failed   {run.name}: {outcome.message}"
    return f"{outcome.state:<8} {run.name} at env step {progress.env_step:,}{evaluation}"


def _finish(
    out: Path, grid: _Grid, stopped_by: Optional[str], cluster_lost: Optional[str] = None, address: Optional[str] = None,
) -> int:
    failed = [run.name for run in grid.runs if grid.state[run.name] == "failed"]
    done = sum(grid.state[run.name] == "done" for run in grid.runs)
    unfinished = len(grid.runs) - done - len(failed)
    sys.stdout.flush()  # the table (stdout) before the summary (stderr)
    print(f"sweep {out}: {done} of {len(grid.runs)} runs done", file=sys.stderr)
    again = f"ace-rl sweep --out {out}" + (f" --address {address}" if address else "")
    if cluster_lost is not None:
        where = "once the cluster is back" if address else "(Ray starts again on this machine)"
        print(
            f"ace-rl: error: lost the Ray cluster ({cluster_lost}) with {unfinished} runs unfinished, none of them "
            f"failed{f' ({len(failed)} failed earlier)' if failed else ''}; continue them {where} with: {again}",
            file=sys.stderr,
        )
        return 1
    if stopped_by is not None or unfinished:
        how = f" by {stopped_by}" if stopped_by else ""
        print(f"ace-rl: sweep stopped{how} with {unfinished} runs unfinished; continue with: {again}", file=sys.stderr)
        if stopped_by is None and not failed:
            return 1  # Ray gave up on a run (its worker or node died too often): not done, though not failed either
    if failed:
        print(
            f"ace-rl: error: {len(failed)} of {len(grid.runs)} runs failed: {', '.join(failed)} (errors: ace-rl sweep "
            f"--status {out}; logs in {out / LOGS}; run them again with --retry-failed)",
            file=sys.stderr,
        )
        return 1
    return 0


def _start_ray(ray: Any, args: SweepArgs) -> Optional[Path]:
    """Start Ray on this machine, or join the cluster at --address, and check that it can run one run. Returns
    the temporary directory of a Ray started here (_stop_ray removes it). A cluster that cannot be reached is
    refused in one line within CLUSTER_FAULT_SECONDS."""
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    common = dict(log_to_driver=False, logging_level="WARNING")  # each run's output goes to DIR/logs/RUN.log
    # Ray keeps its default, token authentication, but need not say so on every sweep.
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    session: Optional[Path] = None
    try:
        if args.address is None:
            _remove_stale_sessions()
            session = Path(tempfile.mkdtemp(prefix=f"{EMBEDDED_SESSION_PREFIX}{os.getpid()}-"))
            try:
                # "local": a Ray of its own, even where `ray start` left a cluster on this machine
                ray.init(
                    address="local", num_cpus=os.cpu_count() or 1, include_dashboard=False,
                    object_store_memory=100 * 1024**2, _temp_dir=str(session), **common,
                )
            except Exception as error:  # noqa: BLE001 - Ray raises many kinds; each is one line here
                raise SweepError(f"cannot start Ray on this machine: {_error_line(error)}") from None
        else:
            _connect(ray, args.address, common)
        _check_resources(ray, args)
    except BaseException:
        _stop_ray(ray, session)
        raise
    return session


def _address_endpoint(address: str) -> tuple[str, int]:
    """The host and port that --address names: auto (the cluster `ray start` recorded on this machine, or
    RAY_ADDRESS), ray://HOST[:PORT] (Ray Client, port 10001 by default) or HOST:PORT."""
    if address == "auto":
        from ray._private.services import canonicalize_bootstrap_address

        try:
            resolved = canonicalize_bootstrap_address(address, None)
        except ConnectionError:
            resolved = None
        if not resolved:
            raise SweepError(
                "--address auto: no Ray cluster runs on this machine; start one with `ray start --head`, or leave out "
                "--address to run Ray for this sweep only"
            )
        address = resolved
    client = address.startswith("ray://")
    host, _, port = address.removeprefix("ray://").rstrip("/").rpartition(":")
    if client and not port.isdigit():
        host, port = address.removeprefix("ray://").rstrip("/"), "10001"
    if not host or not port.isdigit():
        raise SweepError(f"--address {address} is not HOST:PORT, ray://HOST:PORT or auto")
    return host.strip("[]"), int(port)


def _answers(host: str, port: int, timeout: float) -> bool:
    """Whether something accepts a TCP connection at host:port within timeout seconds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _connect(ray: Any, address: str, options: dict[str, Any]) -> None:
    """Join the cluster at --address, or refuse in one line within CLUSTER_FAULT_SECONDS (Ray alone retries an
    address that does not answer for minutes)."""
    host, port = _address_endpoint(address)
    if not _answers(host, port, timeout=CONNECT_SECONDS):
        shown = address if address != "auto" else f"auto ({host}:{port}, recorded by `ray start` on this machine)"
        raise SweepError(
            f"--address {shown}: no Ray cluster answers at {host}:{port} within {CONNECT_SECONDS:g} s; start it "
            "(ray start --head), correct the address, or leave out --address to run Ray on this machine only"
        )
    retries = {
        "RAY_gcs_server_port_wait_time_s": str(GCS_CONNECT_ATTEMPTS),  # seconds of retries
        # Ray Client's three attempts wait 5, 10 and 15 s by default (a refused token included): 2, 5 and 5 here.
        "RAY_CLIENT_INITIAL_CONNECTION_TIMEOUT_S": "2",
        "RAY_CLIENT_MAX_CONNECTION_TIMEOUT_S": "5",
    }
    retries = {name: value for name, value in retries.items() if name not in os.environ}  # the user's own win
    failure: Optional[BaseException] = None
    with _stderr_kept() as ray_output:  # Ray's own lines while it retries a refused connection
        try:
            os.environ.update(retries)  # for this connection only (a Ray started later waits for its GCS as usual)
            ray.init(address=address, **options)
        except Exception as error:  # noqa: BLE001 - Ray raises many kinds; each is one line here
            failure = error
        finally:
            for name in retries:
                os.environ.pop(name, None)
    if failure is not None:
        raise SweepError(_connect_error(address, failure, "".join(ray_output))) from None


@contextmanager
def _native_stderr_to(path: Path) -> Iterator[None]:
    """What Ray's C++ core writes to file descriptor 2 meanwhile (a lost raylet's failed calls, ...) goes to
    ``path``, and Python's sys.stderr still where it went: the sweep's own lines stay the only ones."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    except OSError:
        target = os.open(os.devnull, os.O_WRONLY)
    previous = sys.stderr
    try:
        writes_to_descriptor_2 = previous.fileno() == 2
    except (AttributeError, OSError, ValueError):
        writes_to_descriptor_2 = False
    previous.flush()
    original = os.dup(2)
    python_stderr: Optional[io.TextIOWrapper] = None
    if writes_to_descriptor_2:
        python_stderr = io.TextIOWrapper(
            os.fdopen(os.dup(original), "wb"), encoding=previous.encoding, errors="backslashreplace", line_buffering=True,
        )
        sys.stderr = python_stderr
    os.dup2(target, 2)
    os.close(target)
    try:
        yield
    finally:
        if python_stderr is not None:
            sys.stderr = previous
            with suppress(OSError):
                python_stderr.close()
        os.dup2(original, 2)
        os.close(original)


@contextmanager
def _stderr_kept() -> Iterator[list[str]]:
    """What is written to stderr meanwhile, by Python or by Ray's C++ core (file descriptor 2), is kept from the
    terminal; the list yielded holds it after the block."""
    kept_text: list[str] = []
    with tempfile.TemporaryFile() as kept:
        sys.stderr.flush()
        original = os.dup(2)
        python_stderr = io.TextIOWrapper(os.fdopen(os.dup(kept.fileno()), "wb"), write_through=True)
        try:
            os.dup2(kept.fileno(), 2)
            with redirect_stderr(python_stderr):
                yield kept_text
        finally:
            python_stderr.close()
            os.dup2(original, 2)
            os.close(original)
            kept.seek(0)
            kept_text.append(kept.read().decode(errors="replace"))


def _connect_error(address: str, error: BaseException, ray_output: str) -> str:
    chain: list[BaseException] = []
    cause: Optional[BaseException] = error
    while cause is not None and cause not in chain:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    text = " ".join([ray_output, *(f"{type(cause).__name__} {cause}" for cause in chain)])
    if "AuthenticationError" in text or "InvalidAuthToken" in text or "Authentication token" in text:
        return (
            f"--address {address}: the Ray cluster asks for its authentication token; set RAY_AUTH_MODE=token and give "
            "its token (`ray get-auth-token` on its head) in ~/.ray/auth_token, RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH"
        )
    if address.startswith("ray://") and "connection timeout" in text:  # Ray Client says no more, a refused token included
        return (
            f"--address {address}: the Ray Client server answers but did not take this driver in; if the cluster uses "
            "token authentication (Ray's default), set RAY_AUTH_MODE=token and give its token (`ray get-auth-token` "
            "on its head) in ~/.ray/auth_token, RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH"
        )
    return f"--address {address}: cannot join the Ray cluster ({_error_line(chain[-1])})"


def _head_endpoint(ray: Any, address: Optional[str]) -> Optional[tuple[str, int]]:
    """The address of the cluster's head that the driver probes (its GCS; the Ray Client server for ray://)."""
    try:
        if address is not None and address.startswith("ray://"):
            return _address_endpoint(address)
        host, _, port = ray.get_runtime_context().gcs_address.rpartition(":")
        return host.strip("[]"), int(port)
    except Exception:  # noqa: BLE001 - without it the driver relies on Ray's errors alone
        return None


def _stop_ray(ray: Any, session: Optional[Path]) -> None:
    """Leave the cluster (stopping a Ray started here) and remove the temporary directory of a Ray started here.
    Ray's shutdown may wait on a cluster that was lost: it gets SHUTDOWN_SECONDS."""
    shutdown = threading.Thread(target=ray.shutdown, name="ray.shutdown", daemon=True)
    shutdown.start()
    shutdown.join(SHUTDOWN_SECONDS)
    if session is not None:
        _end_session(session)


def _remove_stale_sessions() -> None:
    """A Ray started by a sweep that was killed (SIGKILL) leaves processes and its temporary directory: both
    are ended here, where the directory's sweep (named in it) no longer runs."""
    for session in Path(tempfile.gettempdir()).glob(f"{EMBEDDED_SESSION_PREFIX}*"):
        driver = session.name.removeprefix(EMBEDDED_SESSION_PREFIX).split("-")[0]
        if driver.isdigit() and not _process_exists(int(driver)):
            _end_session(session)


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _end_session(session: Path) -> None:
    """Kill the processes that hold files of a Ray session directory open (its raylet, GCS, agents and workers
    keep their logs there), then remove the directory."""
    prefix = f"{session}/"
    for entry in Path("/proc").glob("[0-9]*"):
        if int(entry.name) == os.getpid():
            continue
        try:
            holds = any(os.readlink(fd).startswith(prefix) for fd in (entry / "fd").iterdir())
        except OSError:
            continue
        if holds:
            with suppress(OSError):
                os.kill(int(entry.name), signal.SIGKILL)
    shutil.rmtree(session, ignore_errors=True)


def _check_resources(ray: Any, args: SweepArgs) -> None:
    """Refuse requests no node can meet (Ray would wait for them forever)."""
    resources = ray.cluster_resources()
    if args.threads_per_run > resources.get("CPU", 0):
        raise SweepError(f"--threads-per-run {args.threads_per_run} exceeds the {resources.get('CPU', 0):g} CPUs of the Ray cluster")
    if args.gpus_per_run > resources.get("GPU", 0):
        raise SweepError(f"--gpus-per-run {args.gpus_per_run:g} but the Ray cluster has {resources.get('GPU', 0):g} GPUs")


class _StopRequest:
    """SIGINT and SIGTERM ask the runs to checkpoint and stop; a second one stops them at once."""

    def __init__(self) -> None:
        self.requested: Optional[str] = None
        self.count = 0

    def _handle(self, signum: int, frame: object) -> None:
        self.count += 1
        self.requested = self.requested or signal.Signals(signum).name

    @contextmanager
    def installed(self) -> Iterator[None]:
        previous = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
