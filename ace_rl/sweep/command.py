"""`ace-rl sweep`, from its argv to its exit status: read the command, settle the specification (new, or the one
in sweep.json), check everything that can be checked before anything is written, take the sweep directory's lock,
start Ray, write sweep.json, and hand the runs to the driver. A refused invocation leaves no trace."""

from __future__ import annotations

import dataclasses
import sys
from collections import defaultdict
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path
from typing import Any

import ace_rl
from ace_rl.config import TrainConfig
from ace_rl.rundir import RunDirBusy, RunDirError, RunLock
from ace_rl.sweep import cluster
from ace_rl.sweep.args import SweepArgs, SweepError, check_execution, parse_sweep_argv
from ace_rl.sweep.driver import classify, run_grid
from ace_rl.sweep.modules import check_imports, module_roots, runtime_env, shipped_paths
from ace_rl.sweep.progress import require, show_status
from ace_rl.sweep.spec import (
    SPEC_FILE,
    PlannedRun,
    SweepSpec,
    TrainParser,
    build_spec,
    check_environments,
    check_existing_runs,
    group_wandb_runs,
    holds_files,
    keep_recorded_causal_methods,
    load_spec,
    plan_runs,
    recorded_run_settings,
    spec_differences,
    spec_document,
    stored_spec,
    write_json,
)
from ace_rl.trust import CodeTrust


def sweep_main(argv: Sequence[str], parse_train: TrainParser) -> int:
    """`ace-rl sweep ...`; returns the exit status. ``parse_train`` is `ace-rl train`'s parser."""
    args, train_tokens = parse_sweep_argv(argv)
    if args.status is not None:
        if args.out is not None or train_tokens or args.gives_grid or args.dry_run:
            raise SweepError("--status DIR takes no other option")
        return show_status(args.status)
    if args.dry_run and args.out is None:  # a new sweep's runs, wherever it will go
        check_execution(dataclasses.replace(args, out=Path(".")))
        if not (args.gives_grid or train_tokens):
            raise SweepError("--dry-run: give the grid (--env ... or --plan ...), or --out DIR of a sweep")
        spec = build_spec(args, train_tokens)
        print("\n".join(dry_run_lines(spec, plan_runs(spec, Path("."), parse_train, args.threads_per_run))))
        return 0
    shown = check_execution(args)
    out = shown.resolve()
    if args.dry_run:
        _, spec, planned = _specification(args, train_tokens, out, shown, parse_train)
        print("\n".join(dry_run_lines(spec, planned)))
        return 0
    require("ray", "rich")
    document, spec, planned = _specification(args, train_tokens, out, shown, parse_train)
    grid, to_run, status = classify([run for run, _ in planned], out, args.retry_failed)
    configs = {run.name: config for run, config in planned}
    check_environments(configs[run.name] for run in to_run)
    if any(configs[run.name].wandb_project is not None for run in to_run):
        from ace_rl.wandb_logger import check_wandb_usable

        check_wandb_usable()  # a broken wandb is refused here, not by every run

    created = _create_out(out, shown)
    sweep_lock = RunLock(out)
    lock_existed = sweep_lock.path.exists()
    try:
        sweep_lock.acquire()
    except RunDirError as error:
        _leave_no_trace(sweep_lock.path, lock_existed, created)
        if isinstance(error, RunDirBusy):
            holder = sweep_lock.holder()
            raise SweepError(
                f"{shown} is in use by another ace-rl sweep{f' (pid {holder})' if holder else ''}"
            ) from None
        raise SweepError(f"cannot use --out {shown}: {error}") from None
    ray: Any = None
    session: Path | None = None  # the temporary directory of a Ray started here
    try:
        if to_run:
            import ray

            # Before sweep.json is written: a cluster that cannot run the grid is refused first.
            roots = module_roots((configs[run.name].env for run in to_run), (configs[run.name].algo for run in to_run))
            shipped = shipped_paths(roots)
            session = cluster.start_ray(ray, args, runtime_env(shipped))
            check_imports(ray, roots, shipped)
        if document is None:
            rebuilt = holds_files(out)  # check_existing_runs found that every run there matches this command
            resources = {
                "threads_per_run": args.threads_per_run,
                "gpus_per_run": args.gpus_per_run,
                "max_concurrent": args.max_concurrent,
            }
            written = spec_document(spec, planned, argv, resources)
            write_json(out / SPEC_FILE, written)
            document = written
            if rebuilt:
                print(
                    f"ace-rl: note: {shown} had no {SPEC_FILE}; written again from this command, which its runs match",
                    file=sys.stderr,
                )
        return run_grid(ray, args, out, grid, to_run, status, {run.name: configs[run.name] for run in to_run})
    finally:
        if ray is not None:
            cluster.stop_ray(ray, session)
        sweep_lock.release()
        if document is None:  # refused before anything was written: leave no trace
            _leave_no_trace(sweep_lock.path, lock_existed, created)


def dry_run_lines(spec: SweepSpec, planned: Sequence[tuple[PlannedRun, TrainConfig]]) -> list[str]:
    """What `--dry-run` prints: per task (and block of a plan), its reward, total steps, evaluation interval and
    runs (algorithms x seeds x swept options), then the totals."""
    block_of = {}
    if spec.plan is not None:
        block_of = {(task.env, block.reward): block.name for block, task in spec.plan.tasks}
    rows: dict[tuple[str, str, str, int, int], list[PlannedRun]] = defaultdict(list)
    for run, config in planned:
        block = block_of.get((config.env, config.reward), "")
        rows[(block, config.env, config.reward, config.total_steps, config.eval_every)].append(run)
    axes = [f"{len(values)} {axis}" for axis, values in spec.grid.items() if axis != "env"]
    if spec.plan is not None:
        envs = len({task.env for _, task in spec.plan.tasks})
        pairs = f" ({len(spec.plan.tasks)} with their rewards)" if envs != len(spec.plan.tasks) else ""
        head = f"plan {spec.plan.name} ({spec.plan.source}): {envs} tasks{pairs} x {' x '.join(axes)}"
    else:
        head = f"grid: {len(spec.grid['env'])} env x {' x '.join(axes)}"
    lines = [f"{head} = {len(planned)} runs, budget scale {spec.budget_scale:g}"]
    width = max([len(env) for _, env, *_ in rows] + [4])
    block_width = max([len(block) for block, *_ in rows] + [5]) if spec.plan is not None else 0
    header = f"{'task':<{width}}  reward  {'total steps':>11}  {'eval every':>10}  runs"
    lines.append((f"{'block':<{block_width}}  " if block_width else "") + header)
    for (block, env, reward, total, every), runs in rows.items():
        line = f"{env:<{width}}  {reward:<6}  {total:>11,}  {every:>10,}  {len(runs):>4}"
        lines.append((f"{block:<{block_width}}  " if block_width else "") + line)
    steps = sum(config.total_steps for _, config in planned)
    envs = len({env for _, env, *_ in rows})
    lines.append(f"{envs} tasks, {len(planned)} runs, {steps:,} env steps in all; nothing started (--dry-run)")
    return lines


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


def _leave_no_trace(lock: Path | None, lock_existed: bool, created: Sequence[Path]) -> None:
    """Remove the lock file and the directories (deepest first) that a refused invocation created."""
    if lock is not None and not lock_existed:
        with suppress(OSError):
            lock.unlink(missing_ok=True)
    for directory in created:
        with suppress(OSError):
            directory.rmdir()


def _specification(
    args: SweepArgs,
    train_tokens: Sequence[str],
    out: Path,
    shown: Path,
    parse_train: TrainParser,
) -> tuple[dict[str, Any] | None, SweepSpec, list[tuple[PlannedRun, TrainConfig]]]:
    """sweep.json (None for a new sweep), the specification to run, and its runs; refuses a changed one."""
    given = bool(args.gives_grid or train_tokens)
    document = load_spec(out) if (out / SPEC_FILE).is_file() else None
    if document is None:
        if out.exists() and not out.is_dir():
            raise SweepError(f"--out {shown} is a file, not a directory")
        if not given and holds_files(out):
            raise SweepError(
                f"--out {shown} holds files but no {SPEC_FILE}; to continue the sweep there, give the full command "
                f"that created it ({SPEC_FILE} is then written again if every run there matches it), or choose a new --out"
            )
        if not given:
            raise SweepError(
                f"--out {shown} holds no sweep yet; give the grid, e.g. --env Hopper-v5 --algo ace sac --seed 0-4, or a "
                "plan, e.g. --plan paper"
            )
    if given:
        spec = build_spec(args, train_tokens)
        group_wandb_runs(spec, out)
    else:
        assert document is not None
        spec = stored_spec(document, out / SPEC_FILE, CodeTrust.given(args.trust_run_code))
    recorded = {str(run.get("name")) for run in document.get("runs", [])} if document is not None else set()
    if out.is_dir():
        recorded |= {path.name for path in out.iterdir() if path.is_dir()}
    planned = plan_runs(spec, out, parse_train, args.threads_per_run, recorded)
    if document is None:
        planned = keep_recorded_causal_methods(planned, recorded_run_settings(planned))
        check_existing_runs(out, shown, planned)
        return document, spec, planned
    planned = keep_recorded_causal_methods(planned, {str(run.get("name")): run["config"] for run in document["runs"]})
    differences = spec_differences(document, spec, planned)
    if differences:
        origin = "this command" if given else f"this ace-rl ({ace_rl.__version__}) reading its options"
        raise SweepError(
            f"{shown} holds a different sweep than {origin}: {'; '.join(differences)}; continue it with "
            f"`ace-rl sweep --out {shown}` or choose a new --out"
        )
    if document.get("ace_rl_version") != ace_rl.__version__:
        created_by = document.get("ace_rl_version")
        print(
            f"ace-rl: note: {shown} was created by ace-rl {created_by}; this is {ace_rl.__version__}", file=sys.stderr
        )
    return document, spec, planned
