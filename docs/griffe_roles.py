"""A griffe extension for the API reference: ace-rl's docstrings are Markdown, with a few Sphinx roles such as
:class:`~ace_rl.config.TrainConfig` left in them. Rendered as they are, those show their markup; this turns each
into inline code (`TrainConfig`; the full path without the ~), before mkdocstrings renders the docstring."""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|exc|obj):`(~?)([^`]+)`")


def _code(match: re.Match[str]) -> str:
    short, target = match.group(1), match.group(2)
    return f"`{target.rsplit('.', 1)[-1] if short else target}`"


class SphinxRolesToCode(griffe.Extension):
    def on_instance(self, *, obj: Any, **kwargs: Any) -> None:
        docstring = getattr(obj, "docstring", None)
        if docstring is not None and ":" in docstring.value:
            docstring.value = ROLE.sub(_code, docstring.value)
