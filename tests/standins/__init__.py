"""Stand-ins for the live models of TPT-family codebases, one module per upstream design.

Each module follows one repository at one commit (named in its docstring; the commits are those
of ``shared/docs/upstream-tpt-family.md``), with the same attribute names, shapes, dtypes and
methods, built on a tiny clip-anytorch CLIP, and declares ``COVERS``: the registered design names
its builders stand in for (``tests/test_adapter_registry.py`` checks every registered design is
covered). A new design's stand-in is one new module here; nothing else needs to list it.
``_common`` holds the prompt-embedding steps the modules share and covers no design.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import Any

from torch import nn

from .cocoop import get_cocoop
from .dynaprompt import get_dynaprompt
from .fpp_reference import AuxTextEncoder, get_fpp_reference
from .maple import get_maple
from .refused import IT3AModel
from .tpt import TextEncoder, get_scaled, get_tpt

#: what the tests import from the package (everything else from its module)
__all__ = [
    "AuxTextEncoder",
    "IT3AModel",
    "TextEncoder",
    "covered_designs",
    "get_cocoop",
    "get_coop",
    "get_maple",
    "get_tpt",
]

_COOP_KINDS: dict[str, Callable[..., nn.Module]] = {
    "tpt": get_tpt,
    "fpp_reference": get_fpp_reference,
    "dynaprompt": get_dynaprompt,
    "scaled": get_scaled,
}


def get_coop(clip_model: nn.Module, classnames: list[str], kind: str = "tpt", **kw: Any) -> nn.Module:
    """A fresh ``get_coop``-style stand-in of ``kind`` (``tpt``, ``fpp_reference``, ``dynaprompt``,
    ``scaled``) on a private copy of ``clip_model`` (same weights)."""
    return _COOP_KINDS[kind](clip_model, classnames, **kw)


def covered_designs() -> dict[str, Callable[..., nn.Module]]:
    """Design name -> stand-in builder ``(clip_model, classnames) -> model``, from every module's ``COVERS``."""
    covers: dict[str, Callable[..., nn.Module]] = {}
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        covers.update(getattr(module, "COVERS", {}))
    return covers
