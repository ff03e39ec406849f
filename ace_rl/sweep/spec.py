"""What a sweep runs: the grid (env x algo x seed x any swept option; or a plan's blocks of tasks x algo x seed x any
swept option), each grid point's name and `ace-rl train` options (scaled by --budget-scale), the specification
written once to sweep.json (with the ace-rl version and git commit), and the checks that a later invocation asks for
the same sweep. Nothing here imports Ray."""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
import subprocess
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import ace_rl
from ace_rl.argv import given_settings, without_settings
from ace_rl.config import (
    CAUSAL_METHODS,
    EXECUTION_SETTINGS,
    RECORDED_SETTINGS,
    ConfigError,
    TrainConfig,
    code_trust,
    config_from_json_dict,
    scaled_budget,
    to_json_dict,
    validate,
)
from ace_rl.hyperparameters import CausalMethod
from ace_rl.rundir import LOCK, TEMPORARY_SUFFIX, RunDir, write_atomically
from ace_rl.runstate import safe_name
from ace_rl.sweep.args import (
    MAX_RUNS,
    SweepArgs,
    SweepError,
    execution_argv,
    split_train_options,
)
from ace_rl.sweep.plan import SPARSE_MARK, Plan, load_plan, parse_plan, plan_points
from ace_rl.trust import CodeTrust, UntrustedCodeError

TrainParser = Callable[[Sequence[str]], TrainConfig]

# The sweep directory (ace_rl/sweep/__init__.py draws it)
SPEC_FILE = "sweep.json"
STATUS_FILE = "sweep_status.json"
LOGS = "logs"
RAY_LOG = "ray.log"  # logs/ray.log: what Ray's core prints in the driver while the sweep runs
SWEEP_FILES = frozenset(
    {SPEC_FILE, STATUS_FILE, LOGS, LOCK, SPEC_FILE + TEMPORARY_SUFFIX, STATUS_FILE + TEMPORARY_SUFFIX}
)
SPEC_FORMAT = 1

AXES = ("env", "algo", "seed")  # always part of the grid and of every run's name


# --------------------------------------------------------------------------------------------------------------
# Seeds
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
        consecutive = [seed for _, seed in group]
        parts.append(str(consecutive[0]) if len(consecutive) == 1 else f"{consecutive[0]}-{consecutive[-1]}")
    return " ".join(parts)


# --------------------------------------------------------------------------------------------------------------
# The grid and its runs
# --------------------------------------------------------------------------------------------------------------
def run_name(point: dict[str, Any], recorded: Collection[str] = ()) -> str:
    """`Hopper-v5__ace__s0`, then `__OPTION-VALUE` for each further swept option (`__reset-none`); an agent
    `my_lab.agents:ddpg` is `my_lab.agents_ddpg` in it, as in `ace-rl train`'s run directories. A sweep created
    before that named such runs `...__my_lab.agents:ddpg__...`: where ``recorded`` (the names in its sweep.json
    or its directories) holds that name, it is kept, so that the sweep continues in the same directories."""
    extras = "".join(f"__{axis}-{safe_name(str(value))}" for axis, value in point.items() if axis not in AXES)
    env, seed = safe_name(str(point["env"])), point["seed"]
    earlier = f"{env}__{point['algo']}__s{seed}{extras}"
    return earlier if earlier in recorded else f"{env}__{safe_name(str(point['algo']))}__s{seed}{extras}"


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


# Sent to Ray workers, so named as the package exports it: a driver and a worker whose code was laid out
# differently (ace_rl/sweep.py before it became a package) still find each other's classes.
PlannedRun.__module__ = "ace_rl.sweep"


@dataclass
class SweepSpec:
    """What a sweep runs: the grid's axes (env, algo, seed, then any swept option; a plan's sweep has no env axis,
    its blocks name the tasks), the common options, the plan and the budget scale."""

    grid: dict[str, list[Any]]
    options: list[str]
    plan: Plan | None = None
    budget_scale: float = 1.0

    def points(self) -> list[tuple[dict[str, Any], list[str]]]:
        """Each grid point and its `ace-rl train` options (before --budget-scale and the sweep's own)."""
        if self.plan is not None:
            return [
                (point, [*options, *_point_argv(point, marks=SPARSE_MARK)])
                for point, options in plan_points(self.plan, self.grid, self.options)
            ]
        axes = list(self.grid)
        points = [dict(zip(axes, values)) for values in itertools.product(*(self.grid[axis] for axis in axes))]
        return [(point, [*self.options, *_point_argv(point)]) for point in points]


def _point_argv(point: dict[str, Any], marks: Iterable[str] = ()) -> list[str]:
    """The options a grid point sets: --env, --algo, --seed and each swept option, except ``marks`` (a plan's
    `reward: sparse`, which its block's options set)."""
    argv = ["--env", str(point["env"]), "--algo", str(point["algo"]), "--seed", str(point["seed"])]
    for axis, value in point.items():
        if axis not in AXES and axis not in marks:
            argv.extend([f"--{axis}", str(value)])
    return argv


def build_spec(args: SweepArgs, train_tokens: Sequence[str]) -> SweepSpec:
    common, swept = split_train_options(train_tokens)
    defaults = TrainConfig()
    plan = None
    if args.plan is not None:
        plan = load_plan(args.plan, CodeTrust.given(args.trust_run_code, [("algo", algo) for algo in args.algo]))
    grid: dict[str, list[Any]] = {} if plan is not None else {"env": _unique("--env", args.env) or [defaults.env]}
    grid["algo"] = _unique("--algo", args.algo) or [defaults.algo]
    grid["seed"] = parse_seeds(args.seed) if args.seed else [defaults.seed]
    grid.update(swept)
    runs = len(plan.tasks) if plan is not None else 1
    for values in grid.values():
        runs *= len(values)
    if runs > MAX_RUNS:
        shape = " x ".join(
            [
                *([f"{len(plan.tasks)} tasks of plan {plan.name}"] if plan else []),
                *(f"{len(v)} {a}" for a, v in grid.items()),
            ]
        )
        raise SweepError(
            f"the grid has {runs:,} runs ({shape}), more than the {MAX_RUNS:,} a sweep takes; split it over several sweeps"
        )
    return SweepSpec(grid=grid, options=common, plan=plan, budget_scale=args.budget_scale)


def group_wandb_runs(spec: SweepSpec, out: Path) -> None:
    """Runs logged to W&B (--wandb-project) are grouped under the sweep directory's name unless a group is given."""
    given = given_settings(spec.options) | {axis.replace("-", "_") for axis in spec.grid}
    if "wandb_project" in given and "wandb_group" not in given:
        spec.options.extend(["--wandb-group", out.name])


def _unique(flag: str, values: Sequence[str]) -> list[str]:
    repeated = sorted({value for value in values if values.count(value) > 1})
    if repeated:
        raise SweepError(f"{flag} gives {', '.join(repeated)} more than once")
    return list(values)


def plan_runs(
    spec: SweepSpec,
    out: Path,
    parse_train: TrainParser,
    threads_per_run: int = 1,
    recorded_names: Collection[str] = (),
) -> list[tuple[PlannedRun, TrainConfig]]:
    """Every grid point as a run and its configuration, built by `ace-rl train`'s own parser and validated.
    ``recorded_names``: the runs an existing sweep directory names (run_name keeps their earlier form).

    Raises SweepError (one line, naming the run) for the first grid point that `ace-rl train` would refuse.
    """
    out = out.resolve()
    planned: list[tuple[PlannedRun, TrainConfig]] = []
    names: dict[str, dict[str, Any]] = {}
    # The seed sets nothing but itself, so each grid point without its seed is parsed once (20 ms a parse).
    parsed: dict[tuple[str, ...], tuple[TrainConfig, list[str]]] = {}
    for point, argv in spec.points():
        name = run_name(point, recorded_names)
        if name in names:
            raise SweepError(f"grid points {names[name]} and {point} would share the run directory {name}")
        names[name] = point
        unseeded = tuple(token for index, token in enumerate(argv) if index == 0 or argv[index - 1] != "--seed")
        try:
            if unseeded in parsed:
                config, scaling = parsed[unseeded]
                config = dataclasses.replace(config, seed=int(point["seed"]), run_dir=out / name)
            else:
                config = parse_train([*argv, "--run-dir", str(out / name), *execution_argv(threads_per_run)])
                config, scaling = _scaled(config, spec.budget_scale)
                parsed[unseeded] = config, scaling
            validate(config)
        except ConfigError as error:
            raise SweepError(f"run {name}: {error}") from None
        if scaling:  # the scaled values, given explicitly, so that the argv in sweep.json and logs builds this config
            argv = [*without_settings(argv, given_settings(scaling)), *scaling]
        run = PlannedRun(name=name, point=point, argv=tuple(argv), run_dir=out / name, total_steps=config.total_steps)
        planned.append((run, config))
    return planned


def _scaled(config: TrainConfig, factor: float) -> tuple[TrainConfig, list[str]]:
    """``config`` at ``factor`` times its budget (config.scaled_budget), and the options that give it."""
    if factor == 1.0:
        return config, []
    values = scaled_budget(config, factor)
    tokens = [token for name, value in values.items() for token in (f"--{name.replace('_', '-')}", str(value))]
    return dataclasses.replace(config, **values), tokens


def check_environments(configs: Iterable[TrainConfig]) -> None:
    """Make each task once, so that an unknown or uninstalled environment is refused before anything runs."""
    from ace_rl.envs import EnvError  # Gymnasium and PyTorch: not for --status
    from ace_rl.trainer import check_causal_time_limit, probe_environment

    sizes: dict[tuple[str, str, str, int], int] = {}
    checked: set[tuple[Any, ...]] = set()
    for config in configs:
        key = (config.env, config.reward, json.dumps(config.env_kwargs, sort_keys=True), config.distractor_actions)
        if key not in sizes:
            try:
                sizes[key] = probe_environment(config).causal_variables
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
    """The configuration without the settings that only decide where and how a run executes, and without what a
    run records about itself (why it uses its causal method)."""
    values = to_json_dict(config)
    for name in EXECUTION_SETTINGS | RECORDED_SETTINGS:
        values.pop(name, None)
    return json.loads(json.dumps(values))  # as sweep.json holds them (tuples become lists), so that both compare


def spec_document(
    spec: SweepSpec,
    planned: Sequence[tuple[PlannedRun, TrainConfig]],
    command: Sequence[str],
    resources: dict[str, float | None] | None = None,
) -> dict[str, Any]:
    """sweep.json: the specification (grid, options, plan, budget scale), every run, the provenance, and the
    execution options the sweep was created with (``resources``: threads_per_run, gpus_per_run, max_concurrent)."""
    commit, dirty = git_commit(Path(ace_rl.__file__).parent)
    plan = {} if spec.plan is None else {"plan": spec.plan.document()}
    return {
        "format": SPEC_FORMAT,
        "created": datetime.now().isoformat(timespec="seconds"),
        "command": ["ace-rl", "sweep", *command],
        "ace_rl_version": ace_rl.__version__,
        "git_commit": commit,
        "git_dirty": dirty,
        "grid": spec.grid,
        "options": spec.options,
        **plan,
        "budget_scale": spec.budget_scale,
        "resources": resources or {},
        "runs": [
            {"name": run.name, "point": run.point, "argv": list(run.argv), "config": experiment_settings(config)}
            for run, config in planned
        ],
    }


def git_commit(package_dir: Path) -> tuple[str | None, bool | None]:
    """The commit of the git checkout the package is imported from, and whether the package has uncommitted
    changes; (None, None) for an installed copy or without git."""

    def git(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["git", "-C", str(package_dir), *args], capture_output=True, text=True, timeout=20, check=False
        )

    try:
        head = git("rev-parse", "HEAD")
        tracked = git("ls-files", "--error-unmatch", "__init__.py")  # a venv inside a repository is not its source
        if head.returncode != 0 or tracked.returncode != 0:
            return None, None
        changes = git("status", "--porcelain", "--untracked-files=no", "--", ".")
        return head.stdout.strip(), bool(changes.stdout.strip()) if changes.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None, None


def write_json(path: Path, document: dict[str, Any]) -> None:
    """Write a JSON document of the sweep directory (sweep.json, sweep_status.json) atomically."""
    data = (json.dumps(document, indent=2) + "\n").encode()

    def write(file: Any) -> None:
        file.write(data)

    write_atomically(path, write)


def load_spec(out: Path) -> dict[str, Any]:
    path = out / SPEC_FILE
    try:
        document = json.loads(path.read_text())
        readable = (
            isinstance(document.get("grid"), dict)
            and isinstance(document.get("options"), list)
            and all(isinstance(run["name"], str) and "total_steps" in run["config"] for run in document["runs"])
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise SweepError(f"{path} is unreadable ({type(error).__name__}: {error})") from None
    if not readable:
        raise SweepError(f"{path} is not a sweep specification written by ace-rl sweep")
    return document


def stored_spec(document: dict[str, Any], source: Path, trust: CodeTrust) -> SweepSpec:
    """The specification sweep.json holds, for a sweep continued without its grid on the command line. The file is
    data: an --env or --algo of its grid (or options) that would import a module needs ``trust`` (ace_rl.trust)."""
    plan = None
    if isinstance(document.get("plan"), dict):  # a plan's task ids are checked against ``trust`` as it is read
        recorded = dict(document["plan"])
        plan = parse_plan(recorded, str(recorded.pop("source", "")), f"the plan of {source}", trust)
    spec = SweepSpec(
        grid={axis: list(values) for axis, values in document["grid"].items()},
        options=list(document["options"]),
        plan=plan,
        budget_scale=float(document.get("budget_scale", 1.0)),
    )
    for kind in ("env", "algo"):
        for value in [*spec.grid.get(kind, []), *_option_values(spec.options, f"--{kind}")]:
            trust.check(kind, value, str(source))
    return spec


def _option_values(options: Sequence[str], flag: str) -> list[str]:
    """The values a list of train options gives ``flag`` (as `--flag V` or `--flag=V`)."""
    values = []
    for index, token in enumerate(options):
        if token == flag and index + 1 < len(options):
            values.append(options[index + 1])
        elif token.startswith(flag + "="):
            values.append(token.removeprefix(flag + "="))
    return values


def _describe_values(axis: str, values: Sequence[Any] | None) -> str:
    if values is None:
        return "(not swept)"
    if axis == "seed" and all(isinstance(v, int) for v in values):
        return format_seeds(values)
    return " ".join(str(v) for v in values)


def _changed_settings(before: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """The settings whose values differ, in the order of ``before`` then those only ``now`` has."""
    return [name for name in [*before, *(n for n in now if n not in before)] if before.get(name) != now.get(name)]


def keep_recorded_causal_methods(
    planned: Sequence[tuple[PlannedRun, TrainConfig]], recorded: dict[str, dict[str, Any]]
) -> list[tuple[PlannedRun, TrainConfig]]:
    """The runs planned with --causal-method auto (the default) that ``recorded`` (run name -> its settings, from
    sweep.json or the run's config.json) gives another method keep that one, given explicitly in their options so
    that a worker's parse builds it: a sweep created while the default was sink continues with sink (its runs that
    started resume with what they recorded anyway)."""
    kept = []
    for run, config in planned:
        settings = recorded.get(run.name, {})
        method = settings.get("causal_method")
        # A run that resolved auto itself (its reason says so) was planned with auto: nothing to keep.
        resolved_from_auto = str(settings.get("causal_method_reason") or "").startswith("auto")
        if config.causal_method == "auto" and method in CAUSAL_METHODS and method != "auto" and not resolved_from_auto:
            config = dataclasses.replace(config, causal_method=cast(CausalMethod, method))
            argv = (*without_settings(run.argv, {"causal_method"}), "--causal-method", method)
            run = dataclasses.replace(run, argv=argv)
        kept.append((run, config))
    return kept


def recorded_run_settings(planned: Sequence[tuple[PlannedRun, TrainConfig]]) -> dict[str, dict[str, Any]]:
    """Run name -> the settings its config.json holds, for the planned runs that have a readable one (an
    unreadable one is check_existing_runs' to refuse)."""
    recorded: dict[str, dict[str, Any]] = {}
    for run, _ in planned:
        layout = RunDir(run.run_dir)
        try:
            values = json.loads(layout.config.read_text()) if layout.is_run() else None
        except (OSError, ValueError):
            continue
        if isinstance(values, dict):
            recorded[run.name] = values
    return recorded


def spec_differences(
    stored: dict[str, Any], spec: SweepSpec, planned: Sequence[tuple[PlannedRun, TrainConfig]]
) -> list[str]:
    """What differs between sweep.json and this command's specification, one phrase per difference."""
    differences = plan_differences(stored.get("plan"), spec.plan)
    if stored.get("budget_scale", 1.0) != spec.budget_scale:
        differences.append(
            f"--budget-scale {stored.get('budget_scale', 1.0):g} in {SPEC_FILE}, {spec.budget_scale:g} now"
        )
    for axis in [*stored["grid"], *(a for a in spec.grid if a not in stored["grid"])]:
        stored_values, values = stored["grid"].get(axis), spec.grid.get(axis)
        if stored_values != values:
            differences.append(
                f"--{axis} {_describe_values(axis, stored_values)} in {SPEC_FILE}, {_describe_values(axis, values)} now"
            )
    if differences:
        return differences
    stored_configs = {run["name"]: run["config"] for run in stored["runs"]}
    # A setting added to ace-rl after the sweep was created is read at its default, as a config.json is: a new
    # setting's default keeps the behaviour from before it (for the algorithms whose default it is).
    defaults = experiment_settings(TrainConfig())
    changed: dict[str, tuple[Any, Any]] = {}
    for run, config in planned:
        recorded = stored_configs.get(run.name)
        before = {} if recorded is None else {**defaults, **recorded}
        now = experiment_settings(config)
        for name in _changed_settings(before, now):
            changed.setdefault(name, (before.get(name), now.get(name)))
    return [
        f"{name} {before} in {SPEC_FILE}, {now} now (--{name.replace('_', '-')})"
        for name, (before, now) in changed.items()
    ]


def plan_differences(stored: dict[str, Any] | None, plan: Plan | None) -> list[str]:
    """How the plan of sweep.json and this command's differ: one missing, or the blocks that differ (what a block
    holds: domain, options, tasks and references; the name and file the plan was read from may change)."""
    if stored is None and plan is None:
        return []
    if stored is None or plan is None:
        before = "no plan" if stored is None else f"--plan {stored.get('source') or stored.get('name')}"
        return [f"{before} in {SPEC_FILE}, {'no plan' if plan is None else f'--plan {plan.source}'} now"]
    blocks_before = {block.get("name"): block for block in stored.get("block", [])}
    blocks_now = {block["name"]: block for block in plan.document()["block"]}
    changed = [name for name in [*blocks_before, *blocks_now] if blocks_before.get(name) != blocks_now.get(name)]
    if not changed and list(blocks_before) == list(blocks_now):
        return []
    return [
        f"the plan's blocks {', '.join(dict.fromkeys(str(name) for name in changed)) or '(their order)'} differ from those in {SPEC_FILE}"
    ]


def holds_files(out: Path) -> bool:
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
            raise SweepError(
                f"--out {shown} has no {SPEC_FILE} and holds {path.name}, which is no run of this grid; {advice}"
            )
    for run, config in planned:
        layout = RunDir(run.run_dir)
        if not layout.is_run():
            continue  # stopped before its config.json: it starts like a new run
        try:
            stored = config_from_json_dict(
                json.loads(layout.config.read_text()), str(layout.config), code_trust(config)
            )
        except (OSError, ValueError) as error:  # ConfigError and UntrustedCodeError are ValueErrors naming the file
            named = isinstance(error, (ConfigError, UntrustedCodeError))
            message = str(error) if named else f"{layout.config} is unreadable ({error})"
            raise SweepError(f"--out {shown} has no {SPEC_FILE}, and {message}; {advice}") from None
        if config.causal_method == "auto" and str(stored.causal_method_reason or "").startswith("auto"):
            stored = dataclasses.replace(stored, causal_method="auto")  # it resolved the auto it was planned with
        before, now = experiment_settings(stored), experiment_settings(config)
        changed = _changed_settings(before, now)
        if changed:
            differences = ", ".join(
                f"{name} {before.get(name)} in its config.json, {now.get(name)} now (--{name.replace('_', '-')})"
                for name in changed
            )
            raise SweepError(
                f"--out {shown} has no {SPEC_FILE}, and its run {run.name} differs from this command: {differences}; {advice}"
            )
