"""The command line of `ace-rl sweep`: its own options (SweepArgs) and the `ace-rl train` options it passes on,
given once (for every run) or with several values (a new grid axis)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import tyro

from ace_rl.agents import builtin_agent_names
from ace_rl.argv import TRAIN_FIELDS, is_flag, is_switch, setting_of, split_flag, takes_list
from ace_rl.config import EXECUTION_SETTINGS, ConfigError, TrainConfig

MAX_RUNS = 10_000  # a larger grid is refused: its specification, status table and planning grow with it

# The execution settings (config.EXECUTION_SETTINGS) are the sweep's to decide for every run; giving one is
# refused, saying why.
_WHY_THE_SWEEP_DECIDES = {
    "run_dir": "each run goes to DIR/RUN_NAME",
    "resume": "a sweep resumes its runs itself (run the same command again)",
    "threads": "use --threads-per-run, which also reserves that many CPUs per run",
    "progress": "the sweep shows one progress display for all runs",
}
NOT_SWEEP_OPTIONS: dict[str, str] = {
    name: _WHY_THE_SWEEP_DECIDES.get(name, "the sweep decides it for every run") for name in sorted(EXECUTION_SETTINGS)
}


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

    `--plan paper` runs the ACE paper's 29 tasks, each with the paper's budget and reward, as one sweep
    (`--plan paper --dry-run` lists them); `--budget-scale 0.01` runs it at 1 % of those budgets.
    """

    out: Path | None = None
    """The sweep directory: new, or one written by an earlier `ace-rl sweep` (which is then continued). On a Ray
    cluster it must be on a filesystem every node sees."""
    status: Path | None = None
    """Print the table of runs of this sweep directory and exit, without running anything."""
    plan: str | None = None
    """A plan instead of --env: blocks of tasks, each with its own budget, reward, evaluation schedule and options
    (docs/sweeps.md, Plans). `paper`: the ACE paper's 29 tasks (shipped with ace-rl); or FILE.toml. --algo, --seed
    and train options given once apply to every block, unless a block sets the option."""
    dry_run: bool = False
    """Print the planned runs (per task: reward, total steps, evaluation interval, runs) and exit: nothing starts
    and nothing is written."""
    budget_scale: float = 1.0
    """Multiply every run's total steps, and the intervals that scale with it (start steps, evaluation,
    checkpoint, log, causal and reset intervals, causal samples), by this; recorded in each run's config.json."""
    env: list[str] = field(default_factory=list)
    """Tasks (as `ace-rl train --env`); default Hopper-v5."""
    algo: Annotated[
        list[str],
        tyro.conf.arg(
            help=f"Algorithms ({', '.join(builtin_agent_names())}), or module:name of an agent that a module registers; "
            f"default {TrainConfig().algo}."
        ),
    ] = field(default_factory=list)
    seed: Annotated[
        list[str],
        tyro.conf.arg(
            help=f"Seeds and ranges, e.g. 0-4 or 0 1 5-7; default 0. A sweep runs at most {MAX_RUNS:,} runs."
        ),
    ] = field(default_factory=list)
    address: str | None = None
    """Ray cluster to join: auto (the cluster this machine belongs to), HOST:PORT (its head, as `ray start
    --address` names it) or ray://HOST:PORT (Ray Client). Default: start Ray on this machine for the duration
    of the command, with as many runs at once as CPUs allow."""
    threads_per_run: int = 1
    """CPUs reserved for each run, and its PyTorch threads (two 1-thread runs beat one 2-thread run on a CPU)."""
    gpus_per_run: float = 0.0
    """Share of a GPU reserved for each run (e.g. 0.25: four runs per GPU); use with the default --device auto."""
    max_concurrent: int | None = None
    """At most this many runs train at once. Default: as many as the cluster's CPUs (and GPUs) allow."""
    max_retries: int = 3
    """How often Ray restarts a run whose worker died (killed, node lost); each retry resumes from the latest
    checkpoint."""
    trust_run_code: bool = False
    """Continuing a sweep from its sweep.json alone (no grid on the command line): import the modules its --env or
    --algo name (module:NAME), which runs their code. Without it such a sweep is continued only when the grid is given
    again, or its modules are listed in ACE_RL_TRUSTED_MODULES."""
    retry_failed: bool = False
    """Run again the runs that failed for their own reasons (NaN stop, refused option) in an earlier invocation."""

    @property
    def gives_grid(self) -> bool:
        """Whether any option of the specification (--plan, --env, --algo, --seed, --budget-scale) was given."""
        return bool(self.plan or self.env or self.algo or self.seed or self.budget_scale != 1.0)


def parse_sweep_argv(argv: Sequence[str]) -> tuple[SweepArgs, list[str]]:
    """The sweep's own options, and the `ace-rl train` options left over (in the order given)."""
    args, train_tokens = tyro.cli(SweepArgs, args=list(argv), prog="ace-rl sweep", return_unknown_args=True)
    return args, list(train_tokens)


def check_execution(args: SweepArgs) -> Path:
    """Refuse impossible execution options in one line; the sweep directory."""
    if args.out is None:
        raise SweepError("give --out DIR (a new sweep directory, or one to continue) or --status DIR")
    if args.threads_per_run < 1:
        raise SweepError(f"--threads-per-run must be a positive integer, got {args.threads_per_run}")
    if not (math.isfinite(args.budget_scale) and args.budget_scale > 0):
        raise SweepError(f"--budget-scale must be a positive number, got {args.budget_scale}")
    if args.plan is not None and args.env:
        raise SweepError("--plan names its tasks; give --env without --plan, or put the tasks in the plan's blocks")
    if args.gpus_per_run < 0:
        raise SweepError(f"--gpus-per-run must be zero or positive, got {args.gpus_per_run}")
    if args.max_concurrent is not None and args.max_concurrent < 1:
        raise SweepError(f"--max-concurrent must be a positive integer, got {args.max_concurrent}")
    if args.max_retries < 0:
        raise SweepError(f"--max-retries must be zero or positive, got {args.max_retries}")
    return args.out


def execution_argv(threads_per_run: int) -> list[str]:
    """The settings the sweep adds to every run: its PyTorch threads, and no per-run progress bar."""
    return ["--threads", str(threads_per_run), "--no-progress"]


# --------------------------------------------------------------------------------------------------------------
# `ace-rl train` options (read with ace_rl.argv, as `ace-rl train` peeks at its own)
# --------------------------------------------------------------------------------------------------------------
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
        if not is_flag(token):
            raise SweepError(f"unexpected value {token!r}: values follow an option, as in --reset none reset")
        flag, inline = split_flag(token)
        values: list[str] = [] if inline is None else [inline]
        index += 1
        while inline is None and index < len(tokens) and not is_flag(tokens[index]):
            values.append(tokens[index])
            index += 1
        name = setting_of(flag)
        if name not in TRAIN_FIELDS:
            raise SweepError(
                f"unknown option --{flag}; ace-rl sweep takes its own options (ace-rl sweep --help) and those of "
                "ace-rl train (ace-rl train --help)"
            )
        if name in NOT_SWEEP_OPTIONS:
            raise SweepError(f"--{flag} is not an ace-rl sweep option: {NOT_SWEEP_OPTIONS[name]}")
        if name in seen:
            raise SweepError(f"--{flag} is given twice; give all its values after one --{flag}")
        seen.add(name)
        if is_switch(name):
            if values:
                raise SweepError(f"--{flag} is a switch and takes no value")
            common.append(token)
        elif takes_list(name):
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
