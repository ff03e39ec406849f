"""The commands and code the documentation shows cannot rot.

- Every `ace-rl ...` command in a ```bash block of README.md and docs/**/*.md is parsed by the parser the command
  itself uses, without running anything: `ace_rl.cli.main` with the function that would run the command replaced
  by one that keeps what was parsed. A train configuration is then validated as training would validate it; a
  sweep's grid is expanded and each run's configuration built by `ace-rl train`'s parser, as the sweep does
  before it runs anything. `--resume DIR` gets a temporary run directory whose config.json is the configuration
  of the command in the same file that wrote DIR (`--run-dir DIR`), else the defaults. `PYTHONPATH=...` before a
  command is honoured.
- Every ```python block compiles and runs, in a fresh directory, with its placeholders given (`observation`,
  `MyReach`), what the text before it made, and every training run cut to seconds (SNIPPET_SETUPS); what a snippet
  claims is checked (the deployment's returns are ace-rl's evaluation's). Every `python SCRIPT.py` a bash block
  runs exists.
- The README is at most 15,000 bytes and starts with the two set-up commands that .ci/run runs.

A bash block that is not meant to be parsed, or a python block that cannot run here, is marked by the line
`<!-- docs-test: skip -->` right before its opening fence (show output in a ```text block instead where possible).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import pkgutil
import re
import shlex
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOC_FILES = [README, *sorted((REPO / "docs").rglob("*.md"))]
SKIP_MARKER = "<!-- docs-test: skip -->"
README_LIMIT = 15_000
FENCE = re.compile(r"^(?P<indent>\s*)```(?P<language>[\w+-]*)\s*$")
SEPARATORS = {"&&", "||", ";", "|", "&"}
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


class Block(NamedTuple):
    path: Path
    line: int  # of the opening fence, 1-based
    language: str
    text: str
    skipped: bool


class Command(NamedTuple):
    where: str  # file:line
    env: dict[str, str]  # VAR=value given before the command
    argv: list[str]  # after `ace-rl`


def code_blocks(path: Path) -> Iterator[Block]:
    lines = path.read_text().splitlines()
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        start, indent = index, opening.group("indent")
        body: list[str] = []
        index += 1
        while index < len(lines) and lines[index].strip() != "```":
            body.append(lines[index].removeprefix(indent))
            index += 1
        skipped = start > 0 and lines[start - 1].strip() == SKIP_MARKER
        yield Block(path, start + 1, opening.group("language"), textwrap.dedent("\n".join(body)), skipped)
        index += 1


def all_blocks(language: str) -> list[Block]:
    return [block for path in DOC_FILES for block in code_blocks(path) if block.language == language]


def shell_segments(block: Block) -> Iterator[tuple[int, list[str]]]:
    """(line, tokens) of each simple command of a bash block: continuations joined, comments dropped, split at
    && || ; | &."""
    logical: list[tuple[int, str]] = []
    pending, first = "", 0
    for number, line in enumerate(block.text.splitlines(), start=block.line + 1):
        if not pending:
            first = number
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        logical.append((first, pending + line))
        pending = ""
    if pending:
        logical.append((first, pending))
    for number, line in logical:
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        segment: list[str] = []
        for token in lexer:
            if token in SEPARATORS:
                if segment:
                    yield number, segment
                segment = []
            else:
                segment.append(token)
        if segment:
            yield number, segment


def split_assignments(tokens: list[str]) -> tuple[dict[str, str], list[str]]:
    env: dict[str, str] = {}
    while tokens and ASSIGNMENT.match(tokens[0]):
        name, _, value = tokens[0].partition("=")
        env[name] = value
        tokens = tokens[1:]
    return env, tokens


def doc_commands() -> list[Command]:
    commands = []
    for block in all_blocks("bash"):
        if block.skipped:
            continue
        for number, tokens in shell_segments(block):
            env, tokens = split_assignments(tokens)
            if tokens and tokens[0] == "ace-rl":
                commands.append(Command(f"{block.path.relative_to(REPO)}:{number}", env, tokens[1:]))
    return commands


COMMANDS = doc_commands()


# ---- Parsing without running --------------------------------------------------------------------------------------
class Parsed(Exception):
    """Raised in place of running a command: parsing got that far."""

    def __init__(self, value: Any) -> None:
        super().__init__("parsed")
        self.value = value


def _keep(value: Any, *_: Any, **__: Any) -> None:
    raise Parsed(value)


def _find(package: str, name: str) -> Any:
    """``name`` from ``package`` or, where the package has been split into modules, from the one defining it."""
    module = importlib.import_module(package)
    if hasattr(module, name):
        return getattr(module, name)
    for info in pkgutil.iter_modules(getattr(module, "__path__", []), package + "."):
        submodule = importlib.import_module(info.name)
        if hasattr(submodule, name):
            return getattr(submodule, name)
    raise AssertionError(f"tests/test_docs.py: {package} defines no {name}; update the test to the sweep's new parser")


def parse_sweep(argv: list[str], parse_train: Callable[[list[str]], Any], out: Path) -> list[Any]:
    """What `ace-rl sweep` parses before it runs anything: its own options and, when a grid is given, every run's
    `ace-rl train` configuration."""
    import tyro

    sweep_args = _find("ace_rl.sweep", "SweepArgs")
    args, train_tokens = tyro.cli(sweep_args, args=list(argv), prog="ace-rl sweep", return_unknown_args=True)
    if not (args.env or args.algo or args.seed or train_tokens):
        return []  # --status DIR, or --out DIR to continue: the grid is in sweep.json
    spec = _find("ace_rl.sweep", "build_spec")(args, train_tokens)
    planned = _find("ace_rl.sweep", "plan_runs")(spec, out, parse_train, args.threads_per_run)
    return [config for _, config in planned]


@pytest.fixture(scope="module")
def run_configs() -> dict[tuple[str, str], Any]:
    """(file, --run-dir) -> the configuration a documented `ace-rl train` wrote there, for a later --resume."""
    return {}


def _validate(config: Any) -> None:
    from ace_rl.config import ConfigError, validate

    try:
        validate(config)
    except ConfigError as error:
        if "is not installed" in str(error):
            pytest.skip(f"needs an extra: {error}")
        raise


def _substitute_resume(command: Command, argv: list[str], tmp_path: Path, run_configs: dict) -> list[str]:
    if "--resume" not in argv:
        return argv
    from ace_rl.config import preset_config

    index = argv.index("--resume") + 1
    source = command.where.split(":")[0]
    config = run_configs.get((source, argv[index])) or preset_config()
    run_dir = tmp_path / "resumed"
    run_dir.mkdir()
    stored = dataclasses.replace(config, run_dir=run_dir, resume=None)
    (run_dir / "config.json").write_text(json.dumps(dataclasses.asdict(stored), default=str))  # as train writes it
    return [*argv[:index], str(run_dir), *argv[index + 1 :]]


def parse_command(command: Command, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run_configs: dict) -> Any:
    from ace_rl import cli

    for path in command.env.get("PYTHONPATH", "").split(":"):
        if path:
            monkeypatch.syspath_prepend(str(REPO / path))
    name, *rest = command.argv or [""]
    rest = _substitute_resume(command, rest, tmp_path, run_configs)
    for runner in ("run_train", "run_eval", "run_export", "run_report"):
        monkeypatch.setattr(cli, runner, _keep)
    if name == "envs":
        import ace_rl.envs

        monkeypatch.setattr(ace_rl.envs, "list_suites", list)
        monkeypatch.setattr(ace_rl.envs, "format_suites", _keep)
    if name == "sweep":
        sweep = importlib.import_module("ace_rl.sweep")
        monkeypatch.setattr(
            sweep,
            "sweep_main",
            lambda argv, parse_train: _keep(parse_sweep(list(argv), parse_train, tmp_path / "sweep")),
        )
    try:
        cli.main([name, *rest])
    except Parsed as parsed:
        return parsed.value
    except SystemExit as exit:
        if exit.code in (0, None) and "--help" in rest:
            return None
        raise AssertionError(
            f"`ace-rl {' '.join(command.argv)}` exits with status {exit.code} (see the output above)"
        ) from None
    raise AssertionError(f"`ace-rl {' '.join(command.argv)}` ran past parsing: unknown command {name!r}?")


def test_the_docs_show_commands() -> None:
    assert len(COMMANDS) >= 30, COMMANDS
    assert {command.argv[0] for command in COMMANDS} >= {"train", "eval", "export", "envs", "sweep", "report"}


@pytest.mark.parametrize("command", COMMANDS, ids=[command.where for command in COMMANDS])
def test_documented_command_parses(
    command: Command, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run_configs: dict
) -> None:
    monkeypatch.chdir(tmp_path)  # nothing a parser might touch lands in the repository
    monkeypatch.syspath_prepend(str(REPO))  # examples.point_reach, as from the repository root
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "plans").symlink_to(REPO / "benchmarks" / "plans")  # a benchmark's plan, read only
    value = parse_command(command, tmp_path, monkeypatch, run_configs)
    configs = value if isinstance(value, list) else [value]
    from ace_rl.config import TrainConfig

    for config in configs:
        if isinstance(config, TrainConfig):
            _validate(config)
    if command.argv[0] == "train" and isinstance(value, TrainConfig) and value.run_dir is not None:
        run_configs[(command.where.split(":")[0], str(value.run_dir))] = value


# ---- Python snippets and scripts ----------------------------------------------------------------------------------
PYTHON_BLOCKS = all_blocks("python")


@pytest.mark.parametrize(
    "block", PYTHON_BLOCKS, ids=[f"{block.path.relative_to(REPO)}:{block.line}" for block in PYTHON_BLOCKS]
)
def test_python_snippet_compiles(block: Block) -> None:
    compile(block.text, f"{block.path.relative_to(REPO)}:{block.line}", "exec")


# The budget every run a snippet trains gets instead of its own (20,000 steps): seconds, not hours.
TINY_BUDGET = {
    "total_steps": 150,
    "start_steps": 50,
    "batch_size": 16,
    "hidden_size": 16,
    "eval_every": 150,
    "eval_episodes": 1,
    "threads": 1,
    "progress": False,
}


def _my_reach(goal: float) -> Any:
    """The snippets' stand-in for a user's own environment (``MyReach(goal=0.3)``): the point-reach task."""
    import gymnasium as gym

    from examples.point_reach import PointReach

    return gym.wrappers.TimeLimit(PointReach(goal=(goal, goal)), max_episode_steps=100)


def _point_reach_observation() -> Any:
    from examples.point_reach import PointReach

    return PointReach(goal=(0.5, -0.3)).reset(seed=0)[0]


def _quick_start(namespace: dict[str, Any]) -> None:
    namespace["observation"] = _point_reach_observation()


def _api_overview(namespace: dict[str, Any]) -> None:
    namespace.update(observation=_point_reach_observation(), MyReach=_my_reach)


def _factory_runs(namespace: dict[str, Any]) -> None:
    import ace_rl

    namespace.update(ace_rl=ace_rl, MyReach=_my_reach, observation=_my_reach(0.3).reset(seed=0)[0])


def _deployment(namespace: dict[str, Any]) -> None:
    """The bash block before it: a run on the Dict-observation task, exported to reach.onnx."""
    import ace_rl
    import examples.point_reach  # noqa: F401 - registers PointReach-v0, as the snippet says

    run = ace_rl.train(env="examples.point_reach:PointReach-v0", env_kwargs={"dict_observations": True}, preset="small")
    run.policy().export("reach.onnx")
    namespace["run"] = run


def _deployment_claims(namespace: dict[str, Any]) -> None:
    """The ONNX file run with onnxruntime alone gives the returns that ace-rl's evaluation gives for the seed."""
    import ace_rl

    assert namespace["inputs"] == ["observation", "desired_goal"]
    returns = ace_rl.evaluate(namespace["run"].policy(), episodes=10, seed=0).returns
    assert namespace["total"] == pytest.approx(float(returns[-1]), rel=1e-4)


def _own_agent(namespace: dict[str, Any]) -> None:
    from ddpg_agent import DDPGPolicy, make_ddpg

    namespace.update(make_ddpg=make_ddpg, DDPGPolicy=DDPGPolicy)


def _own_agent_claims(namespace: dict[str, Any]) -> None:
    from ace_rl.agents import agent_spec

    spec = agent_spec("ddpg")
    assert spec.make is namespace["make_ddpg"] and spec.make_policy is namespace["DDPGPolicy"]


def _no_check(namespace: dict[str, Any]) -> None:
    """Running to the end is the check."""


def _parts_claims(namespace: dict[str, Any]) -> None:
    """The composed parts are the command line's configuration with the same choices, TD3's schedule included."""
    from ace_rl.cli import parse_train

    command = "--preset small --algo td3 --env Walker2d-v5 --seed 3 --exploration-noise 0.2".split()
    assert namespace["config"] == parse_train(command)
    assert (namespace["config"].warmup_updates, namespace["config"].reset) == (False, "none")


def _callbacks_claims(namespace: dict[str, Any]) -> None:
    """The run was not stopped (its budget is cut far below the threshold's) and the resume kept the count."""
    assert namespace["run"].stopped_early is None
    assert (Path("runs/pendulum") / "checkpoints" / "final.pt").is_file()


# How to run each Python snippet of the docs, by its file and first line: what it takes as given (its
# placeholders, or what the text before it made) and what is checked after it ran.
SNIPPET_SETUPS: dict[tuple[str, str], tuple[Callable[[dict[str, Any]], None], Callable[[dict[str, Any]], None]]] = {
    ("README.md", "import ace_rl"): (_quick_start, _no_check),
    ("python-api.md", "import ace_rl"): (_api_overview, _no_check),
    ("python-api.md", "make = lambda: MyReach(goal=0.3)"): (_factory_runs, _no_check),
    ("python-api.md", "import json"): (_deployment, _deployment_claims),
    ("python-api.md", "from ace_rl.config import RunSettings, compose"): (_no_check, _parts_claims),
    ("python-api.md", "from ace_rl.callbacks import Callback, EarlyStopping"): (_no_check, _callbacks_claims),
    ("own-algorithm.md", "from ace_rl.agents import register_agent"): (_own_agent, _own_agent_claims),
}


@pytest.mark.parametrize(
    "block",
    [block for block in PYTHON_BLOCKS if not block.skipped],
    ids=[f"{block.path.relative_to(REPO)}:{block.line}" for block in PYTHON_BLOCKS if not block.skipped],
)
def test_python_snippet_runs(block: Block, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each snippet runs as written, in a fresh directory, with its placeholders given and every training run cut to
    TINY_BUDGET; a snippet that cannot run here is marked with the skip marker (then it is only compiled)."""
    import ace_rl
    import ace_rl.agents

    where = f"{block.path.relative_to(REPO)}:{block.line}"
    setup = SNIPPET_SETUPS.get((block.path.name, block.text.strip().splitlines()[0]))
    assert setup is not None, f"{where}: tests/test_docs.py has no setup to run it (SNIPPET_SETUPS), nor is it marked"
    prepare, check = setup
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(REPO))
    monkeypatch.syspath_prepend(str(REPO / "tests"))
    train, resume = ace_rl.train, ace_rl.resume
    monkeypatch.setattr(ace_rl, "train", lambda *args, **settings: train(*args, **{**settings, **TINY_BUDGET}))
    longer = 2 * TINY_BUDGET["total_steps"]
    monkeypatch.setattr(
        ace_rl, "resume", lambda run_dir, **settings: resume(run_dir, **{**settings, "total_steps": longer})
    )
    monkeypatch.setattr(ace_rl.agents, "_REGISTRY", dict(ace_rl.agents._REGISTRY))
    namespace: dict[str, Any] = {"__name__": "docs_snippet"}
    prepare(namespace)
    # A snippet that registers an agent does so as a user would, without the test agents of this process (the
    # registry is given back afterwards).
    ace_rl.agents._REGISTRY.pop("ddpg", None)
    exec(compile(block.text, where, "exec"), namespace)
    check(namespace)


def test_documented_scripts_exist() -> None:
    missing = []
    for block in all_blocks("bash"):
        for number, tokens in shell_segments(block):
            _, tokens = split_assignments(tokens)
            script = tokens[1] if len(tokens) > 1 and tokens[0] in ("python", "python3") else ""
            if script.endswith(".py") and not (REPO / script).is_file():
                missing.append(f"{block.path.relative_to(REPO)}:{number}: {script}")
    assert not missing


def test_the_docs_are_found() -> None:
    assert any(block.language == "python" for block in PYTHON_BLOCKS)
    assert all(path.is_file() for path in DOC_FILES) and len(DOC_FILES) > 10


# ---- The README --------------------------------------------------------------------------------------------------
def ci_setup_commands() -> tuple[str, str]:
    """The quick-start and test commands as .ci/run checks and runs them."""
    ci = (REPO / ".ci" / "run").read_text()

    def variable(name: str) -> str:
        match = re.search(rf"^{name}='([^']*)'$", ci, re.MULTILINE)
        assert match, f".ci/run defines no {name}"
        return match.group(1)

    test_install = f'pip install -e ".[{variable("TEST_EXTRAS")}]"'
    return (
        f"{variable('QUICKSTART_INSTALL')} && {variable('QUICKSTART_TRAIN')}",
        f"{test_install} && {variable('TEST_COMMAND')}",
    )


def test_readme_is_short() -> None:
    size = len(README.read_bytes())
    assert size <= README_LIMIT, f"README.md is {size:,} bytes; at most {README_LIMIT:,}: move detail into docs/"


def test_readme_starts_with_the_two_setup_commands() -> None:
    blocks = list(code_blocks(README))
    assert len(blocks) >= 2
    quickstart, tests = ci_setup_commands()
    assert blocks[0].language == "bash" and quickstart in blocks[0].text
    assert blocks[1].language == "bash" and tests in blocks[1].text
    for block in blocks[:2]:
        assert len(block.text.strip().splitlines()) == 1, "each set-up command is one line to paste"
    lines = README.read_text().splitlines()
    first_section = next((i for i, line in enumerate(lines) if line.startswith("## ")), len(lines))
    assert blocks[1].line < first_section, "the set-up commands come before the README's first section"
    assert [i for i, line in enumerate(lines) if line.startswith("# ")] == [0], "the title, then the commands"


def test_docstrings_use_markdown_not_sphinx_roles() -> None:
    """mkdocstrings renders docstrings as Markdown, where `:class:`~x.Y`` shows its markup."""
    role = re.compile(r":(?:class|func|meth|mod|attr|data|exc|obj):`")
    found = [
        f"{path.relative_to(REPO)}:{number}"
        for path in sorted((REPO / "ace_rl").rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if role.search(line)
    ]
    assert not found, found
