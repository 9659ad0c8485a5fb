"""Optional dependencies: import them on first use, or say exactly how to install the extra.

The install command matches how fpp-init itself was installed: from a clone (editable or
not) the extra is installed from that folder; from an index, by name.
"""

from __future__ import annotations

import importlib
import json
from functools import cache
from importlib import metadata
from types import ModuleType
from urllib.parse import unquote, urlparse

from .errors import MissingDependencyError, PlotDependencyError

__all__ = ["install_command", "require"]


@cache
def _install_source() -> tuple[str, bool] | None:
    """``(folder, editable)`` when fpp-init was installed from a local folder, else ``None``."""
    # (an in-tree egg-info of a source checkout may come first on sys.path: look at every copy)
    texts = [d.read_text("direct_url.json") for d in metadata.distributions(name="fpp-init")]
    text = next((t for t in texts if t), None)
    if not text:
        return None
    try:
        info = json.loads(text)
    except ValueError:
        return None
    url = info.get("url", "")
    if not url.startswith("file://"):
        return None
    return unquote(urlparse(url).path), bool(info.get("dir_info", {}).get("editable"))


def install_command(extra: str) -> str:
    """The pip command that adds ``extra`` to this installation of fpp-init."""
    source = _install_source()
    if source is None:
        return f'pip install "fpp-init[{extra}]"'
    folder, editable = source
    return f'pip install {"-e " if editable else ""}"{folder}[{extra}]"'


def require(module: str, extra: str, what: str) -> ModuleType:
    """Import ``module``, or raise :class:`MissingDependencyError` naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        cls = PlotDependencyError if extra == "plot" else MissingDependencyError
        raise cls(
            f"{what} needs the optional package {module!r}, which is not installed ({exc.msg}); "
            f"install it with: {install_command(extra)}"
        ) from None
