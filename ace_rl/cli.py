"""The `ace-rl` command, a thin layer over the Python API: `train`, `eval`, `export`, `envs`, `sweep`, `report`.

`train` (and `--resume`), `eval` and `export` parse their options and call ace_rl.api, which alone reaches the
training loop (ace_rl.trainer), evaluation and the policy files. Each command imports what it needs when it runs,
so that `ace-rl --help`, `ace-rl report --help` or `ace-rl sweep --status DIR` do not pay for PyTorch (see
benchmarks/startup.py)."""

from __future__ import annotations

import inspect
import os
import sys
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import tyro

from ace_rl.argv import TRAIN_FIELDS, flag_value, given_settings
from ace_rl.config import PRESETS, ConfigError, TrainConfig, load_run_config, preset_config
from ace_rl.errors import AceRlError
from ace_rl.trust import CodeTrust

if TYPE_CHECKING:
    from ace_rl.callbacks import Callback

USAGE = """usage: ace-rl {train,eval,envs,export,sweep,report} [OPTIONS]

ACE: off-policy actor-critic with causality-aware entropy regularization.

commands:
  train     train ACE (or a baseline: --algo sac, td3, or module:name of your own agent) on a task
  eval      run a trained policy deterministically and print its mean return (and success rate)
  envs      list the task suites, whether each is installed, and example ids with their sizes
  export    write a trained policy as ONNX or TorchScript for deployment, checked against the policy itself
  sweep     run a grid of training runs (tasks x algorithms x seeds ...) on Ray; --status DIR shows its table
  report    judge runs and sweeps with rliable (IQM, 95% CIs, profiles) and plot ACE's causal weights and resets

`ace-rl train --callback module:name` (repeatable) adds your own callback to the training loop.
`ace-rl COMMAND --help` lists the options of a command. An error is one line (exit status 2: your input or code,
1: a fault of the run); --traceback (or ACE_RL_TRACEBACK=1) prints its whole traceback instead."""


@dataclass
class EvalArgs:
    """Run a trained policy deterministically and print the mean and std of its return."""

    run_dir: Annotated[Path, tyro.conf.Positional]
    """The run directory written by `ace-rl train`."""
    checkpoint: Literal["best", "final"] = "best"
    """best: the best evaluation during training; final: the end of training."""
    episodes: int = 10
    """Number of episodes."""
    seed: int = 0
    """Seed of the evaluation environment."""
    video: str | None = None
    """Also write the episodes to this MP4 file; `--video` alone: RUN/videos/eval-CHECKPOINT.mp4 (needs the
    video extra; MuJoCo tasks need OpenGL: EGL or OSMesa)."""
    trust_run_code: bool = False
    """Import the module that the policy file names as its environment or agent (module:NAME), which runs its
    code; without it, such a policy is refused unless its module is listed in ACE_RL_TRUSTED_MODULES."""


@dataclass
class ExportArgs:
    """Write a trained policy as ONNX or TorchScript: a batch of observations in, the deterministic action in the
    environment's units out (tanh squash and rescaling to the action bounds included). A Dict observation is one
    input per key the policy reads, flattened inside the file. The file is checked against the policy on 1,000
    observations of the run's environment before it is written."""

    run_dir: Annotated[Path, tyro.conf.Positional]
    """The run directory written by `ace-rl train`, or a best.pt / final.pt file."""
    out: Path
    """The file to write (e.g. policy.onnx)."""
    format: Literal["onnx", "torchscript"] = "onnx"
    """onnx (needs the export extra: onnx, onnxruntime) or torchscript."""
    checkpoint: Literal["best", "final"] = "best"
    """best: the best evaluation during training; final: the end of training."""
    flat: bool = False
    """For a Dict observation: one input `observation` of the vector flattened as in training, instead of one input
    per key."""
    trust_run_code: bool = False
    """Import the modules that the policy file names (module:NAME environment or agent), which runs their code, to
    check the export on the run's environment. Without it a built-in agent's policy is checked on observations
    drawn from the recorded observation space, and another agent's policy is refused."""


def _bare_video_flag(argv: Sequence[str]) -> list[str]:
    """`--video` given without a path (last, or before another option) becomes `--video=` (the default file)."""
    args = list(argv)
    for index, arg in enumerate(args):
        if arg == "--video" and (index + 1 == len(args) or args[index + 1].startswith("-")):
            args[index] = "--video="
    return args


@dataclass
class ReportArgs:
    """Judge runs with rliable: per-task learning curves (IQM over seeds, 95% CI), aggregate metrics of
    normalised scores, performance profile, probability of improvement, ACE's causal weights and resets.
    Writes PNG and PDF figures, summary.md, summary.csv and curves.csv into --out."""

    dirs: Annotated[list[Path], tyro.conf.Positional, tyro.conf.arg(metavar="DIR [DIR ...]")]
    """Run directories, or directories holding runs (a sweep directory)."""
    out: Path
    """Where the report goes (created; an earlier report's files there are replaced, only once the whole new
    report is written)."""
    reps: int = 2000
    """Bootstrap repetitions of each confidence interval."""
    seed: int = 0
    """Seed of the bootstrap (0 to 2**32-1): the same runs and seed give the same report."""
    skip_empty: bool = False
    """Leave out runs without an evaluation yet (a sweep in progress), listing them in the summary, instead of stopping."""


@dataclass
class EnvsArgs:
    """List the task suites, whether each is installed, and example ids with observation and action sizes."""


def _peek(argv: Sequence[str], flag: str, accepted: Sequence[str] | None, default: str) -> str:
    """The value given for ``flag`` (as `--flag V` or `--flag=V`), read before parsing because it decides
    the defaults (a preset, or the configuration of a resumed run)."""
    value = flag_value(argv, flag, default)
    if accepted is None or value in accepted:
        return value
    return default  # an unknown value is reported by the parser


CALLBACK_FLAG = "--callback"
TRAIN_DESCRIPTION = (
    inspect.cleandoc(TrainConfig.__doc__ or "")
    + "\n\n--callback module:name (repeatable, `ace-rl train` only): a callback of your own in the training loop "
    "(ace_rl.callbacks): name is a Callback subclass or a function returning a Callback, called with no arguments. "
    "The module is imported because you named it here; the run directory does not record it, so give it again "
    "with --resume to continue it."
)


def split_callbacks(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """The values of ``--callback`` (as `--callback V` or `--callback=V`, in order), and the other arguments."""
    specs: list[str] = []
    rest: list[str] = []
    args = iter(argv)
    for arg in args:
        if arg == CALLBACK_FLAG:
            value = next(args, None)
            if value is None or value.startswith("-"):
                raise ConfigError("--callback needs a value: module:name (a Callback subclass or a factory)")
            specs.append(value)
        elif arg.startswith(CALLBACK_FLAG + "="):
            specs.append(arg.removeprefix(CALLBACK_FLAG + "="))
        else:
            rest.append(arg)
    return specs, rest


def parse_train(argv: Sequence[str]) -> TrainConfig:
    """The configuration `ace-rl train` runs: the options on top of the preset, or, with `--resume DIR`, on top of
    the run's config.json, checked by ace_rl.api.resume_config (the one check of options given with a resume)."""
    resume = _peek(argv, "--resume", None, "")
    if resume:
        from ace_rl.api import resume_config

        # Only the options given count; the defaults shown by --help are the run's own.
        default = _stored_config(argv, Path(resume)) if {"-h", "--help"} & set(argv) else TrainConfig()
        parsed = tyro.cli(
            TrainConfig, args=list(argv), default=default, prog="ace-rl train", description=TRAIN_DESCRIPTION
        )
        given = (given_settings(argv) & TRAIN_FIELDS.keys()) - {"resume", "trust_run_code"}
        return resume_config(
            Path(resume), trust_run_code=parsed.trust_run_code, **{name: getattr(parsed, name) for name in given}
        )
    defaults = preset_config(_peek(argv, "--preset", PRESETS, "paper"), _peek(argv, "--algo", None, "ace"))
    return tyro.cli(TrainConfig, args=list(argv), default=defaults, prog="ace-rl train", description=TRAIN_DESCRIPTION)


def _stored_config(argv: Sequence[str], run_dir: Path) -> TrainConfig:
    """The run's config.json, for `--resume DIR --help`. It is data: the modules its --env / --algo name are imported
    only as this command allows."""
    trust = CodeTrust.given(
        "--trust-run-code" in argv,
        [("env", flag_value(argv, "--env", "") or None), ("algo", flag_value(argv, "--algo", "") or None)],
    )
    return load_run_config(run_dir, trust)


def load_callbacks(specs: Sequence[str]) -> list[Callback]:
    """The callbacks that ``--callback module:name`` options name, each imported because the user named it here."""
    if not specs:
        return []
    from ace_rl.callbacks import load_callback

    return [load_callback(spec) for spec in specs]


def run_train(config: TrainConfig, callbacks: Sequence[Callback] = ()) -> None:
    from ace_rl.api import TrainingStopped, train

    try:
        run = train(config, callbacks=list(callbacks))
    except TrainingStopped as stop:
        print(f"ace-rl: {stop}", file=sys.stderr)
        return
    print(f"run written to {run.run_dir}")


def run_eval(args: EvalArgs) -> None:
    from ace_rl.api import evaluate, load_policy
    from ace_rl.rundir import RunDir

    if not args.run_dir.is_dir():
        raise ConfigError(f"no run directory at {args.run_dir}")
    video = None  # --video alone: RUN/videos/eval-CHECKPOINT.mp4
    if args.video is not None:
        video = Path(args.video) if args.video else RunDir(args.run_dir).eval_video(args.checkpoint)
    policy = load_policy(args.run_dir, args.checkpoint, trust_run_code=args.trust_run_code)
    result = evaluate(policy, episodes=args.episodes, seed=args.seed, video=video)
    success = "" if result.success_rate is None else f", success rate {result.success_rate:.2f}"
    print(
        f"{policy.env_id} {args.checkpoint}: return {result.mean:.2f} +- {result.std:.2f}{success} "
        f"over {len(result.returns)} episodes"
    )
    if video is not None:
        print(f"video written to {video}")


def run_report(args: ReportArgs) -> None:
    from ace_rl.report import make_report  # matplotlib and rliable are an extra, loaded only here

    report = make_report(args.dirs, args.out, reps=args.reps, seed=args.seed, skip_empty=args.skip_empty)
    for warning in report.warnings:
        print(f"ace-rl: warning: {warning}", file=sys.stderr)
    print(
        f"report of {len(report.runs)} runs on {len(report.tasks)} task(s) written to {args.out}: summary.md, "
        f"summary.csv, curves.csv and {len(report.figures)} figure(s) as PNG and PDF"
    )


def run_export(args: ExportArgs) -> None:
    from ace_rl.api import export

    report = export(
        args.run_dir, args.out, args.format, args.checkpoint, flat=args.flat, trust_run_code=args.trust_run_code
    )
    print(
        f"{report.format} policy written to {report.path}: checked on {report.observations} observations "
        f"{report.observation_source}, largest difference from the policy {report.max_difference:.2g}; "
        f"inputs {', '.join(report.inputs)}"
    )


def run_envs(argv: Sequence[str]) -> None:
    from ace_rl.envs import format_suites, list_suites

    tyro.cli(EnvsArgs, args=list(argv), prog="ace-rl envs")
    print(format_suites(list_suites()))


TRACEBACK_FLAG = "--traceback"
TRACEBACK_VARIABLE = "ACE_RL_TRACEBACK"


def _report(error: AceRlError, whole_traceback: bool) -> None:
    """One line, or with ``whole_traceback`` the traceback of ``error`` and of what it chains (a user's own)."""
    if whole_traceback:
        traceback.print_exception(type(error), error, error.__traceback__)
    else:
        print(f"ace-rl: error: {error}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    whole_traceback = TRACEBACK_FLAG in argv or os.environ.get(TRACEBACK_VARIABLE, "") not in ("", "0")
    argv = [arg for arg in argv if arg != TRACEBACK_FLAG]
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        raise SystemExit(0 if argv else 2)
    command, rest = argv[0], argv[1:]
    try:
        if command == "train":
            specs, rest = split_callbacks(rest)
            config = parse_train(rest)
            run_train(config, load_callbacks(specs))
        elif command == "eval":
            run_eval(tyro.cli(EvalArgs, args=_bare_video_flag(rest), prog="ace-rl eval"))
        elif command == "export":
            run_export(tyro.cli(ExportArgs, args=rest, prog="ace-rl export"))
        elif command == "envs":
            run_envs(rest)
        elif command == "sweep":
            from ace_rl.sweep import sweep_main  # Ray and rich are an extra, loaded only here

            code = sweep_main(rest, parse_train)
            if code:
                raise SystemExit(code)
        elif command == "report":
            run_report(tyro.cli(ReportArgs, args=rest, prog="ace-rl report"))
        else:
            raise ConfigError(f"unknown command {command!r}; accepted: train, eval, envs, export, sweep, report")
    except AceRlError as error:  # any other exception propagates, with Python's own traceback
        _report(error, whole_traceback)
        raise SystemExit(error.exit_code) from None
    except KeyboardInterrupt:
        print("ace-rl: interrupted", file=sys.stderr)
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
