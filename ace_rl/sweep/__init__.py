"""`ace-rl sweep`: a grid of ordinary runs executed on Ray, continued where it stopped, watched live.

    DIR/
      sweep.json             the specification: grid, common options, plan and budget scale, every run's argv and
                             resolved config, the resources each run asked of Ray, the ace-rl version and git commit
                             it was created with (written once)
      sweep_status.json      what the directories cannot tell: runs that failed (with their one-line error),
                             which runs the sweep now running has in flight
      logs/RUN.log           each run's output, one header per attempt (fresh start, resume or restart)
      logs/ray.log           what Ray's core printed in the driver while the runs ran, and the raylets' reports
                             (a worker that died): not for the terminal
      .lock                  held by the one `ace-rl sweep` process working on DIR
      ENV__ALGO__sSEED[__reward-sparse][__OPTION-VALUE...]/   one ordinary run directory per grid point

Each run is built once, in the driver, exactly as `ace-rl train` with the same options would build it (the
command's own parser is handed in by ace_rl/cli.py); its worker gets that configuration as the JSON object of its
config.json and trains it by ace_rl.api.train (a resume checked as `ace-rl train --resume` is). Everything the
driver shows is read from the run directories, so workers need no channel back; a worker that dies is retried by
Ray and the retry resumes from the run's latest checkpoint. What a run directory is (done, resumable, ...) is
ace_rl.runstate's answer, the same for the driver, its workers and `--status`.

The modules, each with one job:

    args       the command line: SweepArgs, the train options given once or as new grid axes
    plan       plan files (TOML, read as data): blocks of tasks with their own options; plans/ the shipped ones
    spec       the grid (or a plan's runs), run names and train options, --budget-scale, sweep.json and its
               checks, git provenance (no Ray)
    progress   what the run directories say, sweep_status.json, the table, `--status`
    worker     execute_run: one run in a Ray worker
    cluster    Ray's life cycle: start or join, probe, leave
    modules    the user's modules the runs import: shipped to the workers (runtime_env), import-checked per node
    driver     the runs in flight, their outcomes, signals
    command    sweep_main: `ace-rl sweep` from argv to exit status
"""

from __future__ import annotations

from ace_rl.sweep.args import (
    MAX_RUNS,
    NOT_SWEEP_OPTIONS,
    SweepArgs,
    SweepError,
    execution_argv,
    split_train_options,
)
from ace_rl.sweep.cluster import CLUSTER_FAULT_SECONDS, EMBEDDED_SESSION_PREFIX
from ace_rl.sweep.command import sweep_main
from ace_rl.sweep.progress import (
    RunProgress,
    RunRow,
    observe_run,
    render_table,
    show_status,
    status_rows,
)
from ace_rl.sweep.spec import (
    SPEC_FILE,
    STATUS_FILE,
    PlannedRun,
    SweepSpec,
    build_spec,
    experiment_settings,
    format_seeds,
    git_commit,
    group_wandb_runs,
    parse_seeds,
    plan_runs,
    run_name,
    spec_document,
)

# Ray's workers find the function and the classes they exchange with the driver by these names, also the
# workers of a sweep started before ace_rl/sweep.py became this package.
from ace_rl.sweep.worker import RunOutcome, execute_run

__all__ = [
    "CLUSTER_FAULT_SECONDS",
    "EMBEDDED_SESSION_PREFIX",
    "MAX_RUNS",
    "NOT_SWEEP_OPTIONS",
    "SPEC_FILE",
    "STATUS_FILE",
    "PlannedRun",
    "RunOutcome",
    "RunProgress",
    "RunRow",
    "SweepArgs",
    "SweepError",
    "SweepSpec",
    "build_spec",
    "execute_run",
    "execution_argv",
    "experiment_settings",
    "format_seeds",
    "git_commit",
    "group_wandb_runs",
    "observe_run",
    "parse_seeds",
    "plan_runs",
    "render_table",
    "run_name",
    "show_status",
    "spec_document",
    "split_train_options",
    "status_rows",
    "sweep_main",
]
