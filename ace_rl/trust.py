"""What a run directory, a policy file or a sweep directory may make ace-rl import: nothing the user did not allow.

Files are data. An environment id of the form ``module:NAME`` and an ``--algo module:name`` are code: building
them imports the module, which runs whatever it holds, and an environment factory is then called with arguments
that also come from the file. So an id read from a file (``config.json``, a checkpoint, best.pt / final.pt's
metadata, ``sweep.json``) is used only when the user allowed its module:

- by giving the same id again on the command line or in the call (``ace-rl train --resume DIR --env mod:Env``),
- by ``--trust-run-code`` (``trust_run_code=True`` in Python), which allows the modules that the files name and
  says which it imports, or
- by listing the module (or a package above it) in the environment variable ``ACE_RL_TRUSTED_MODULES``,
  comma-separated, for example ``ACE_RL_TRUSTED_MODULES=my_lab.envs,my_lab.agents``.

Ids of the task suites (``Hopper-v5``, ``dmc:walker-run``, ``metaworld:door-open-v3``, ``PandaReach-v3``) and the
built-in agents (``ace``, ``sac``, ``td3``) name no module of the file's choosing and need no permission.

This module imports nothing heavy, so that the check costs nothing before a command starts.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass

from ace_rl.errors import AceRlError

DMC_PREFIX = "dmc:"
METAWORLD_PREFIX = "metaworld:"
SUITE_PREFIXES = (DMC_PREFIX, METAWORLD_PREFIX)
TRUSTED_MODULES_VARIABLE = "ACE_RL_TRUSTED_MODULES"
HOW_TO_ALLOW = (
    f"pass --trust-run-code (trust_run_code=True in Python), give the id again (--env / --algo), or list the module "
    f"in {TRUSTED_MODULES_VARIABLE}"
)


class UntrustedCodeError(AceRlError, ValueError):
    """A file names code (a module to import) that the user has not allowed."""


def env_module(env_id: str) -> str | None:
    """The module that building ``env_id`` imports (``module:NAME``), None for a task suite's id."""
    if env_id.startswith(SUITE_PREFIXES):
        return None
    module, separator, _ = env_id.rpartition(":")
    return module if separator else None


def algo_module(algo: str) -> str | None:
    """The module that ``--algo module:name`` imports, None for a registered name."""
    module, separator, _ = algo.rpartition(":")
    return module if separator else None


def is_standard_library(module: str) -> bool:
    """Whether ``module`` belongs to Python's standard library (never an environment's or an agent's home)."""
    return module.split(".")[0] in sys.stdlib_module_names


def _covers(allowed: str, module: str) -> bool:
    return module == allowed or module.startswith(allowed + ".")


@dataclass(frozen=True)
class CodeTrust:
    """Which modules named in files may be imported: every one (``everything``, from --trust-run-code), or those the
    user named (``modules``: ids given again, and the ACE_RL_TRUSTED_MODULES allow-list)."""

    everything: bool = False
    modules: frozenset[str] = frozenset()

    @classmethod
    def given(cls, trust_run_code: bool = False, ids: Iterable[tuple[str, str | None]] = ()) -> CodeTrust:
        """The trust of a command: ``trust_run_code``, the modules of the ids it gave (``("env", id)`` or
        ``("algo", id)`` pairs; None where not given) and the allow-list of the environment."""
        modules = {module.strip() for module in os.environ.get(TRUSTED_MODULES_VARIABLE, "").split(",")}
        for kind, value in ids:
            if isinstance(value, str):
                modules.add((env_module if kind == "env" else algo_module)(value) or "")
        modules.discard("")
        return cls(everything=bool(trust_run_code), modules=frozenset(modules))

    def allows(self, module: str) -> bool:
        """Whether a file may make ace-rl import ``module``: never one of the standard library (`check` refuses it
        whatever the trust), else as the user allowed."""
        if is_standard_library(module):
            return False
        return self.everything or any(_covers(allowed, module) for allowed in self.modules)

    def check(self, kind: str, value: object, source: str) -> None:
        """Refuse, in one line, an ``env`` or ``algo`` id read from ``source`` whose module is not allowed; say which
        module a blanket --trust-run-code lets in."""
        if not isinstance(value, str):
            return  # not an id at all: the reader's own checks refuse it
        module = env_module(value) if kind == "env" else algo_module(value)
        if module is None or module == "__main__" or "<" in value:
            return  # names no module to import (a script's or a lambda's factory): building it is refused anyway
        flag = "--env" if kind == "env" else "--algo"
        if is_standard_library(module):
            raise UntrustedCodeError(
                f"{source} names {flag} {value!r}, which would import the standard-library module {module!r}; an "
                "environment or agent never comes from there, so it is refused"
            )
        if any(_covers(allowed, module) for allowed in self.modules):
            return
        if not self.everything:
            raise UntrustedCodeError(
                f"{source} names {flag} {value!r}, which would import and run module {module!r}; files are data, so "
                f"it is not imported unless you allow it: {HOW_TO_ALLOW}"
            )
        print(f"ace-rl: note: importing module {module!r} named by {source} (--trust-run-code)", file=sys.stderr)
