"""The user's modules that the runs import (`--env my_lab.envs:Arm-v0`, `--algo my_lab.agents:ddpg`): found on
the driver's sys.path, shipped to every worker with Ray's runtime_env (`py_modules`), and imported once on each node
before any run starts, so that a node that cannot import one refuses the sweep in one line instead of failing
every run. The workers of a `ray start` cluster take their environment from `ray start`, not from the sweep's
command: a PYTHONPATH set for the command alone reaches them only this way."""

from __future__ import annotations

import importlib
import importlib.util
import socket
import sys
import sysconfig
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ace_rl.sweep.args import SweepError
from ace_rl.trust import algo_module, env_module, is_standard_library

PROBE_TIMEOUT_SECONDS = 300.0  # a node's first import waits for the modules to be uploaded and unpacked there


def module_roots(envs: Iterable[str], algos: Iterable[str]) -> list[str]:
    """The top-level modules that the runs' `--env module:Id` and `--algo module:name` import (`my_lab.envs:Arm-v0`
    -> my_lab), in order; a task suite's id (`dmc:walker-walk`) and the standard library's modules name none."""
    modules = [*(env_module(env) for env in envs), *(algo_module(algo) for algo in algos)]
    roots = [module.split(".")[0] for module in modules if module and not is_standard_library(module)]
    return list(dict.fromkeys(root for root in roots if root))


def shipped_paths(roots: Iterable[str]) -> dict[str, Path]:
    """Where on this machine each module to ship lives: a package's directory or a module's .py file. Modules of
    the Python installation (the standard library, site-packages) and ace_rl itself are left out: each node has its
    own installed copy."""
    installed = {Path(sysconfig.get_paths()[key]).resolve() for key in ("stdlib", "platstdlib", "purelib", "platlib")}
    paths: dict[str, Path] = {}
    for root in roots:
        if root == "ace_rl" or root in sys.builtin_module_names:
            continue
        try:
            spec = importlib.util.find_spec(root)
        except (ImportError, ValueError):
            spec = None
        if spec is None:
            continue  # not importable here either: the run's own check names it
        if spec.submodule_search_locations:
            path = Path(next(iter(spec.submodule_search_locations)))
        elif spec.origin is not None and spec.origin.endswith(".py"):
            path = Path(spec.origin)
        else:
            continue  # built in, frozen or compiled: not shippable as source
        resolved = path.resolve()
        if any(part in ("site-packages", "dist-packages") for part in resolved.parts) or any(
            resolved.is_relative_to(prefix) for prefix in installed
        ):
            continue
        paths[root] = resolved
    return paths


def runtime_env(paths: dict[str, Path]) -> dict[str, Any] | None:
    """Ray's runtime_env that ships ``paths`` to every worker of the sweep (None: nothing to ship)."""
    return {"py_modules": [str(path) for path in paths.values()]} if paths else None


def import_modules(roots: list[str]) -> tuple[str, str, str] | None:
    """Runs in a Ray worker: import each module; the node, the module and the one-line error of the first that fails
    (None: all import)."""
    for root in roots:
        try:
            importlib.import_module(root)
        except BaseException as error:  # noqa: BLE001 - whatever the module raises, the sweep reports it
            return socket.gethostname(), root, f"{type(error).__name__}: {error}".splitlines()[0]
    return None


def check_imports(ray: Any, roots: list[str], shipped: dict[str, Path]) -> None:
    """Import ``roots`` once on every alive node, in a worker with the sweep's runtime_env, before any run starts;
    raises SweepError naming the node, the module and what to do for the first that fails."""
    if not roots:
        return
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from ace_rl.sweep.cluster import error_line

    probe = ray.remote(import_modules)
    nodes = [node for node in ray.nodes() if node.get("Alive") and node.get("Resources", {}).get("CPU", 0) > 0]
    refs = {
        probe.options(
            num_cpus=0,
            max_retries=0,
            name="ace-rl import check",
            scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False),
        ).remote(roots): node.get("NodeManagerAddress", "?")
        for node in nodes
    }
    ready, not_ready = ray.wait(list(refs), num_returns=len(refs), timeout=PROBE_TIMEOUT_SECONDS)
    if not_ready:
        raise SweepError(
            f"the modules the runs import ({', '.join(roots)}) did not import within {PROBE_TIMEOUT_SECONDS:g} s on "
            f"node {', '.join(refs[ref] for ref in not_ready)}; check that the node has free workers, or see "
            "logs/ray.log"
        )
    for ref in ready:
        try:
            failure = ray.get(ref)
        except ray.exceptions.RayError as error:
            raise SweepError(
                f"cannot ship the modules the runs import ({', '.join(roots)}) to node {refs[ref]}: {error_line(error)}"
            ) from None
        if failure is not None:
            host, root, message = failure
            where = f"shipped from {shipped[root]}" if root in shipped else "installed on that node"
            raise SweepError(
                f"module {root} does not import on node {host} ({refs[ref]}), {where}: {message}; install what it "
                "needs on every node of the cluster (nothing ran)"
            )
