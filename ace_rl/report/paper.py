"""The plan a sweep was made from, as a report reads it beside the runs: per task its domain (the report's panel),
the plan's budget (before --budget-scale) and the reference's final values (for `--plan paper`, the ACE paper's,
read off its figures). Read from the sweep.json of the directory that holds each run; the file is data, and
nothing it names is imported."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ace_rl.report.runs import RunRecord, task_name

SWEEP_SPEC = "sweep.json"  # ace_rl.sweep.spec.SPEC_FILE; the report does not import the sweep (Ray's side)


@dataclass
class ReferenceTask:
    """One task of a plan, as the report's table and figures show it."""

    task: str
    """The report's task name (task_name: the env id, marked `(sparse)`)."""
    domain: str
    block: str
    budget: int | None
    """The plan's total steps for the task, before --budget-scale (None where neither the block nor a run tells)."""
    reference: dict[str, Any] = field(default_factory=dict)
    """Per algorithm, the reference's final value: a number or [low, high]."""


@dataclass
class PlanReference:
    name: str
    note: str
    """Where the reference values come from (the plan's reference_note)."""
    tasks: list[ReferenceTask]
    """In the plan's order."""
    sources: list[Path]
    """The sweep.json files read."""

    @property
    def domains(self) -> list[str]:
        return list(dict.fromkeys(task.domain for task in self.tasks))


def plan_reference(runs: Sequence[RunRecord]) -> PlanReference | None:
    """The plan(s) of the sweeps that hold ``runs`` (their sweep.json beside the run directories), merged in the
    order found; None when no run comes from a plan's sweep. A sweep.json that cannot be read is passed over."""
    plans: dict[Path, dict[str, Any]] = {}
    for run in runs:
        path = run.path.parent / SWEEP_SPEC
        if path in plans or not path.is_file():
            continue
        try:
            document = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, ValueError):
            continue
        if isinstance(document, dict) and isinstance(document.get("plan"), dict):
            plans[path] = document["plan"]
    if not plans:
        return None
    tasks: dict[str, ReferenceTask] = {}
    for plan in plans.values():
        for block in plan.get("block", []):
            if not isinstance(block, dict):
                continue
            for task in block.get("tasks", []):
                if not isinstance(task, dict) or not isinstance(task.get("env"), str):
                    continue
                name = task_name({"env": task["env"], "reward": block.get("reward", "dense")})
                budget = block.get("total_steps")
                tasks.setdefault(
                    name,
                    ReferenceTask(
                        name,
                        str(block.get("domain") or block.get("name")),
                        str(block.get("name")),
                        int(budget) if isinstance(budget, int) else None,
                        dict(task.get("reference") or {}),
                    ),
                )
    for task in tasks.values():  # a block without total_steps: the plan's budget is the runs' before their scale
        if task.budget is None:
            budgets = {
                round(float(run.config["total_steps"]) / float(run.config.get("budget_scale", 1.0)))
                for run in runs
                if run.task == task.task
            }
            task.budget = budgets.pop() if len(budgets) == 1 else None
    first = next(iter(plans.values()))
    names = list(dict.fromkeys(str(plan.get("name")) for plan in plans.values()))
    return PlanReference(" + ".join(names), str(first.get("reference_note", "")), list(tasks.values()), list(plans))


def reference_text(value: Any) -> str:
    """A reference value as the table shows it: `~3,500`, `~0.83`, `~0.93-1.00`; `-` where there is none."""
    if isinstance(value, list) and len(value) == 2:
        return f"~{_number(value[0])}-{_number(value[1])}"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"~{_number(value)}"
    return "-"


def _number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}"
