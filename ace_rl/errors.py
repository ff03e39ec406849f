"""The base class of ace-rl's one-line errors, which says the exit status `ace-rl` gives each of them.

Only the standard library is imported here, so that the command can read the status without loading the modules
that raise the errors."""

from __future__ import annotations

from typing import ClassVar

USER_FAULT = 2  # the user's input or code: a setting, a file, an environment, an agent, a missing extra
RUN_FAULT = 1  # a fault of the run itself: a NaN in training, a disk that fills up


class AceRlError(Exception):
    """An error `ace-rl` reports as one line, ``ace-rl: error: MESSAGE``, exiting with ``exit_code``
    (the whole traceback with ``--traceback`` or ``ACE_RL_TRACEBACK=1``). Each error class of ace-rl derives from it
    and from the built-in exception it has always been (ValueError, OSError, ...)."""

    exit_code: ClassVar[int] = USER_FAULT


class ConfigError(AceRlError, ValueError):
    """A setting is invalid; the message names the setting and what is accepted (raised by ace_rl.config, and by the
    modules below it that check a setting, without importing the configuration)."""
