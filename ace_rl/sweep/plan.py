"""Sweep plans: blocks of tasks, each block with train options of its own (budget, reward, evaluation schedule, any
`ace-rl train` option), read from a TOML file, one sweep in all. `--plan paper` is the ACE paper's experiment,
shipped with the package (ace_rl/sweep/plans/paper.toml); `--plan FILE.toml` a user's own.

    name = "mine"                                  # optional; default: the file's name
    reference_note = "where the reference values come from"   # optional: the report's column heading

    [[block]]
    name = "mujoco"                                # required, unique
    domain = "Gymnasium MuJoCo"                    # optional: the report's panel (default: the block's name)
    total_steps = 1_000_000                        # any `ace-rl train` option, as its setting name
    reward = "dense"
    eval_every = 10_000
    tasks = ["Hopper-v5", { env = "Ant-v5", reference = { ace = 6700, sac = 6000 } }]

A plan file is data, as sweep.json is: a task id of the form module:NAME imports that module only when the user
trusts it (ace_rl.trust), and the options the sweep decides for every run (run_dir, resume, threads, ...), the
algorithm and seed axes (from the command: --algo, --seed) and --budget-scale are refused, in one line naming the
block. Nothing here imports Ray, Gymnasium or PyTorch: `--dry-run` lists a plan of tasks that are not installed.
"""

from __future__ import annotations

import itertools
import json
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ace_rl.argv import TRAIN_FIELDS, is_switch, takes_list, without_settings
from ace_rl.config import CHOICES, TrainConfig
from ace_rl.sweep.args import NOT_SWEEP_OPTIONS, SweepError
from ace_rl.trust import CodeTrust, UntrustedCodeError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

PLANS_DIR = Path(__file__).parent / "plans"
"""The plans shipped with the package: `--plan NAME` reads PLANS_DIR/NAME.toml."""
PLAN_KEYS = frozenset({"name", "description", "reference_note", "block"})
BLOCK_KEYS = frozenset({"name", "domain", "tasks"})
TASK_KEYS = frozenset({"env", "reference"})
# Settings a block may not set, and why (besides the sweep's own, NOT_SWEEP_OPTIONS).
_NOT_BLOCK_OPTIONS = {
    "env": "a block names its tasks in tasks = [...]",
    "algo": "the command gives the algorithms (--algo)",
    "seed": "the command gives the seeds (--seed)",
    "budget_scale": "the command scales every block (--budget-scale)",
}
NOT_BLOCK_OPTIONS: dict[str, str] = {**NOT_SWEEP_OPTIONS, **_NOT_BLOCK_OPTIONS}
SPARSE_MARK = {"reward": "sparse"}
"""What a run of a sparse-reward block adds to its grid point and name (`...__s0__reward-sparse`), so that one task
with both rewards gets two run directories."""

_DEFAULTS = TrainConfig()


@dataclass(frozen=True)
class PlanTask:
    env: str
    reference: dict[str, float | list[float]] = field(default_factory=dict)
    """Per algorithm, the reference's final value (a number, or [low, high] for a range): the report's paper column."""


@dataclass(frozen=True)
class PlanBlock:
    name: str
    domain: str
    tasks: tuple[PlanTask, ...]
    options: dict[str, Any]
    """`ace-rl train` settings (TrainConfig field names) and their values, as the TOML file gives them."""

    @property
    def reward(self) -> str:
        return str(self.options.get("reward", _DEFAULTS.reward))

    def option_tokens(self) -> list[str]:
        """The block's options as `ace-rl train` tokens."""
        tokens: list[str] = []
        for name, value in self.options.items():
            flag = "--" + name.replace("_", "-")
            if isinstance(value, bool):
                tokens.append(flag if value else "--no-" + name.replace("_", "-"))
            elif isinstance(value, list):
                tokens.extend([flag, *(str(item) for item in value)])
            elif isinstance(value, dict):
                tokens.extend([flag, json.dumps(value)])
            else:
                tokens.extend([flag, str(value)])
        return tokens


@dataclass(frozen=True)
class Plan:
    name: str
    source: str
    """Where it was read: the shipped plan's name, or the file as given."""
    blocks: tuple[PlanBlock, ...]
    description: str = ""
    reference_note: str = ""

    @property
    def tasks(self) -> list[tuple[PlanBlock, PlanTask]]:
        return [(block, task) for block in self.blocks for task in block.tasks]

    def document(self) -> dict[str, Any]:
        """The plan as sweep.json records it (and as parse_plan reads it back)."""
        return {
            "name": self.name,
            "source": self.source,
            "description": self.description,
            "reference_note": self.reference_note,
            "block": [
                {
                    "name": block.name,
                    "domain": block.domain,
                    **block.options,
                    "tasks": [{"env": task.env, "reference": task.reference} for task in block.tasks],
                }
                for block in self.blocks
            ],
        }


def shipped_plans() -> list[str]:
    return sorted(path.stem for path in PLANS_DIR.glob("*.toml"))


def load_plan(given: str, trust: CodeTrust) -> Plan:
    """The plan `--plan` names: a shipped plan's name (`paper`) or a TOML file. Refuses in one line a missing or
    unreadable file, bad TOML and a bad plan (parse_plan)."""
    if given in shipped_plans():
        path, source = PLANS_DIR / f"{given}.toml", given
    elif given.endswith(".toml") or Path(given).exists():
        path, source = Path(given), given
    else:
        raise SweepError(f"--plan {given}: no such plan; accepted: {', '.join(shipped_plans())} or a FILE.toml")
    try:
        data = tomllib.loads(path.read_text())
    except OSError as error:
        raise SweepError(f"--plan {given}: cannot read it ({error.strerror or error})") from None
    except UnicodeDecodeError as error:
        raise SweepError(f"--plan {given}: not a text file ({error.reason})") from None
    except tomllib.TOMLDecodeError as error:
        raise SweepError(f"--plan {given}: not valid TOML ({error})") from None
    data.setdefault("name", path.stem)
    return parse_plan(data, source, f"--plan {given}", trust)


def parse_plan(data: Mapping[str, Any], source: str, where: str, trust: CodeTrust) -> Plan:
    """A plan from its TOML (or sweep.json) data; ``where`` names it in errors. Everything is checked before
    anything is imported: the keys, each block's options (known, not decided by the sweep, of their type), its tasks
    (ids; those naming a module need ``trust``) and its references."""
    unknown = sorted(set(data) - PLAN_KEYS)
    if unknown:
        raise SweepError(f"{where}: unknown key {', '.join(unknown)}; accepted: {', '.join(sorted(PLAN_KEYS))}")
    name, description, note = (data.get(key, "") for key in ("name", "description", "reference_note"))
    for key, value in (("name", name), ("description", description), ("reference_note", note)):
        if not isinstance(value, str):
            raise SweepError(f"{where}: {key} must be a string, got {value!r}")
    tables = data.get("block")
    if not isinstance(tables, list) or not tables or not all(isinstance(table, dict) for table in tables):
        raise SweepError(f"{where}: no blocks; give each as a [[block]] table with a name and tasks = [...]")
    blocks = [_parse_block(table, index, where, trust) for index, table in enumerate(tables, 1)]
    names = [block.name for block in blocks]
    repeated = sorted({block_name for block_name in names if names.count(block_name) > 1})
    if repeated:
        raise SweepError(f"{where}: block name {', '.join(repeated)} is used more than once")
    return Plan(str(name), source, tuple(blocks), str(description), str(note))


def _parse_block(table: Mapping[str, Any], index: int, where: str, trust: CodeTrust) -> PlanBlock:
    name = table.get("name")
    if not isinstance(name, str) or not name:
        raise SweepError(f'{where}: block {index} has no name; give name = "..."')
    here = f"{where}, block {name}"
    domain = table.get("domain", name)
    if not isinstance(domain, str) or not domain:
        raise SweepError(f"{here}: domain must be a non-empty string, got {domain!r}")
    options: dict[str, Any] = {}
    for key, value in table.items():
        if key in BLOCK_KEYS:
            continue
        setting = key.replace("-", "_")
        if setting in NOT_BLOCK_OPTIONS:
            raise SweepError(f"{here}: {key} is not a plan option: {NOT_BLOCK_OPTIONS[setting]}")
        if setting not in TRAIN_FIELDS:
            raise SweepError(
                f"{here}: unknown option {key}; a block takes name, domain, tasks and `ace-rl train` settings "
                "(ace-rl train --help; total_steps for --total-steps)"
            )
        _check_type(setting, value, here)
        options[setting] = value
    tasks = table.get("tasks")
    if not isinstance(tasks, list) or not tasks:
        raise SweepError(f'{here}: no tasks; give tasks = ["Hopper-v5", ...]')
    parsed = tuple(_parse_task(task, here, trust) for task in tasks)
    envs = [task.env for task in parsed]
    repeated = sorted({env for env in envs if envs.count(env) > 1})
    if repeated:
        raise SweepError(f"{here}: task {', '.join(repeated)} is listed more than once")
    return PlanBlock(name, domain, parsed, options)


def _check_type(setting: str, value: Any, here: str) -> None:
    """Refuse a value of the wrong type for its setting (its values are checked when each run is built)."""
    default = getattr(_DEFAULTS, setting)
    if is_switch(setting):
        ok, accepted = isinstance(value, bool), "true or false"
    elif takes_list(setting):
        ok, accepted = isinstance(value, list) and all(isinstance(v, str) for v in value), "a list of strings"
    elif isinstance(default, dict):
        ok, accepted = isinstance(value, dict), "a table"
    elif type(default) is int:
        ok, accepted = type(value) is int, "an integer"
    elif type(default) is float or setting == "causal_time_limit":
        ok = type(value) in (int, float) and math.isfinite(value)
        accepted = "a number"
    else:
        ok, accepted = isinstance(value, str), "a string"
    if not ok:
        raise SweepError(f"{here}: {setting} must be {accepted}, got {value!r}")
    if setting in CHOICES and value not in CHOICES[setting]:
        raise SweepError(f"{here}: unknown {setting} {value!r}; accepted: {', '.join(CHOICES[setting])}")


def _parse_task(task: Any, here: str, trust: CodeTrust) -> PlanTask:
    if isinstance(task, str):
        task = {"env": task}
    if not isinstance(task, dict) or not isinstance(task.get("env"), str) or not task["env"]:
        raise SweepError(
            f'{here}: a task is a task id or a table {{ env = "ID", reference = {{ ... }} }}, got {task!r}'
        )
    unknown = sorted(set(task) - TASK_KEYS)
    if unknown:
        raise SweepError(f"{here}, task {task['env']}: unknown key {', '.join(unknown)}; accepted: env, reference")
    try:
        trust.check("env", task["env"], here)
    except UntrustedCodeError as error:
        raise SweepError(str(error)) from None
    reference = task.get("reference", {})
    if not isinstance(reference, dict) or not all(_is_reference_value(value) for value in reference.values()):
        raise SweepError(
            f"{here}, task {task['env']}: reference must map algorithms to a number or [low, high], got {reference!r}"
        )
    return PlanTask(task["env"], dict(reference))


def _is_reference_value(value: Any) -> bool:
    numbers = value if isinstance(value, list) else [value]
    return (
        len(numbers) in (1, 2)
        and (not isinstance(value, list) or len(numbers) == 2)
        and all(type(number) in (int, float) and math.isfinite(number) for number in numbers)
    )


# --------------------------------------------------------------------------------------------------------------
# A plan's runs
# --------------------------------------------------------------------------------------------------------------
def plan_points(
    plan: Plan, axes: Mapping[str, Sequence[Any]], common: Sequence[str]
) -> list[tuple[dict[str, Any], list[str]]]:
    """Every run of the plan as its grid point (env, algo, seed, `reward: sparse` for a sparse block, then the
    command's swept options) and its `ace-rl train` options without env, algo, seed and swept options: the command's
    common options, less those the block sets, then the block's. A block that sets an option the command sweeps is
    refused."""
    swept = [axis for axis in axes if axis not in ("algo", "seed")]
    points: list[tuple[dict[str, Any], list[str]]] = []
    for block in plan.blocks:
        clash = sorted(axis for axis in swept if axis.replace("-", "_") in block.options)
        if clash:
            raise SweepError(
                f"plan {plan.name}, block {block.name} sets {', '.join(clash)}, which the command gives several values"
            )
        options = [*without_settings(common, set(block.options)), *block.option_tokens()]
        mark = SPARSE_MARK if block.reward == "sparse" else {}
        for task in block.tasks:
            for values in itertools.product(*(axes[axis] for axis in axes)):
                point = dict(zip(axes, values))
                extras = {axis: point[axis] for axis in swept}
                ordered = {"env": task.env, "algo": point["algo"], "seed": point["seed"], **mark, **extras}
                points.append((ordered, options))
    return points
