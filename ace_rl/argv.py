"""`ace-rl train` options read by hand, beside tyro: the one reader of `--flag value` and `--flag=value` tokens.

tyro parses every command line; these few questions must be answered before it runs (`train` peeks at --preset,
--algo and --resume, which decide the defaults) or about tokens it never sees whole (`sweep` passes the train
options on, and splits those given several values into grid axes).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from types import UnionType
from typing import Union, get_args, get_origin, get_type_hints

from ace_rl.config import TrainConfig

TRAIN_FIELDS = {train_field.name: train_field for train_field in dataclasses.fields(TrainConfig)}
_TRAIN_TYPES = get_type_hints(TrainConfig)


def is_flag(token: str) -> bool:
    """Whether ``token`` is an option (`--name`, `--name=value`) rather than a value; a lone `--` is none."""
    return token.startswith("--") and len(token) > 2


def split_flag(token: str) -> tuple[str, str | None]:
    """An option token's name without its dashes, and its value when given inline: `--seed=3` -> ("seed", "3"),
    `--seed` -> ("seed", None)."""
    name, has_inline, inline = token[2:].partition("=")
    return name, inline if has_inline else None


def flag_value(argv: Sequence[str], flag: str, default: str) -> str:
    """The value last given for ``flag`` (`--flag V` or `--flag=V`), else ``default``."""
    value = default
    for index, token in enumerate(argv):
        if not is_flag(token):
            continue
        name, inline = split_flag(token)
        if "--" + name != flag:
            continue
        if inline is not None:
            value = inline
        elif index + 1 < len(argv):
            value = argv[index + 1]
    return value


def is_switch(name: str) -> bool:
    """Whether a setting is a switch (`--compile`, `--no-compile`), which takes no value."""
    return name in TRAIN_FIELDS and TRAIN_FIELDS[name].type in ("bool", bool)


def takes_list(name: str) -> bool:
    """Whether a setting holds a list of values (`--wandb-tags a b`), which is given whole to every run."""
    kind = _TRAIN_TYPES.get(name)
    if get_origin(kind) in (Union, UnionType):  # Optional[...], ... | None
        kind = next((arg for arg in get_args(kind) if arg is not type(None)), None)
    return get_origin(kind) in (list, tuple) or kind in (list, tuple)


def setting_of(flag: str) -> str:
    """The TrainConfig field a flag (without its dashes) sets: `total-steps` -> total_steps, `no-compile` -> compile."""
    name = flag.replace("-", "_")
    return name[3:] if name.startswith("no_") and is_switch(name[3:]) else name


def given_settings(tokens: Sequence[str]) -> set[str]:
    """The settings that options among ``tokens`` set (`--total-steps 10 --no-compile` -> total_steps, compile)."""
    return {setting_of(split_flag(token)[0]) for token in tokens if is_flag(token)}


def without_settings(tokens: Sequence[str], settings: set[str]) -> list[str]:
    """``tokens`` (options, each followed by its values) without the options that set one of ``settings``."""
    kept: list[str] = []
    dropping = False
    for token in tokens:
        if is_flag(token):
            dropping = setting_of(split_flag(token)[0]) in settings
        if not dropping:
            kept.append(token)
    return kept
