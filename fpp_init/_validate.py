"""One validator per concept; every public argument goes through one of these where it enters.

Each raises the error class of its concept (see :mod:`fpp_init.errors`), with a message that
starts with the argument's name and says what was expected. torch is imported lazily (the
CLI's ``--help`` and :class:`~fpp_init.FPPConfig` need no torch).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from . import constants as const
from ._io import default_cache_dir
from .errors import ClassNameError, ConfigError, FPPError, PromptShapeError, TemplateError

if TYPE_CHECKING:  # pragma: no cover
    import torch

T = TypeVar("T")

__all__ = [
    "check_int",
    "check_float",
    "check_bool",
    "check_choice",
    "check_str",
    "check_path",
    "check_file_name",
    "check_cache",
    "check_device",
    "check_dtype",
    "check_ctx",
    "check_classnames",
    "check_template",
    "available_devices",
    "default_device",
]


def check_int(
    value: Any,
    name: str,
    *,
    min: int | None = None,
    max: int | None = None,
    error: type[FPPError] = ConfigError,
) -> int:
    """An ``int`` (not a bool) within ``[min, max]``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise _error(error, f"{name} must be an int, got {value!r} ({type(value).__name__})", name)
    if (min is not None and value < min) or (max is not None and value > max):
        if max is None:
            rule = f">= {min}"
        elif min is None:
            rule = f"<= {max}"
        else:
            rule = f"in [{min}, {max}]"
        raise _error(error, f"{name} must be an int {rule}, got {_show(value)}", name)
    return value


def check_float(
    value: Any,
    name: str,
    *,
    min: float | None = None,
    max: float | None = None,
    positive: bool = False,
    error: type[FPPError] = ConfigError,
) -> float:
    """A finite real number (int or float, not a bool), ``>= min``, ``<= max`` and ``> 0`` if ``positive``,
    of a magnitude a 32-bit float can carry (``<= 3.4e38``: the computation runs in fp32)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _error(error, f"{name} must be a finite number, got {value!r}", name)
    if isinstance(value, float) and not math.isfinite(value):
        raise _error(error, f"{name} must be a finite number, got {value!r}", name)
    if abs(value) > const.MAX_FLOAT:  # (an int of any size compares exactly)
        raise _error(
            error,
            f"{name} must be a finite number of magnitude <= {const.MAX_FLOAT:.3g} (fp32), got {_show(value)}",
            name,
        )
    if positive and value <= 0:
        raise _error(error, f"{name} must be a finite number > 0, got {value!r}", name)
    if min is not None and value < min:
        raise _error(error, f"{name} must be a finite number >= {min:g}, got {value!r}", name)
    if max is not None and value > max:
        raise _error(error, f"{name} must be a finite number <= {max:g}, got {value!r}", name)
    return float(value)


def check_bool(value: Any, name: str, *, error: type[FPPError] = ConfigError) -> bool:
    """``True`` or ``False`` (not ``1``, not ``"yes"``)."""
    if not isinstance(value, bool):
        raise _error(error, f"{name} must be True or False, got {value!r}", name)
    return value


def check_choice(value: Any, name: str, choices: Iterable[T]) -> T:
    options = tuple(choices)
    if not isinstance(value, type(options[0])) or value not in options:
        raise ConfigError(f"{name} must be one of {', '.join(repr(o) for o in options)}; got {value!r}", param=name)
    return value  # type: ignore[no-any-return]


def check_str(value: Any, name: str, *, allow_none: bool = False, error: type[FPPError] = ConfigError) -> str:
    """A non-empty string (or ``None`` when allowed; then the return value is ``None``)."""
    if value is None and allow_none:
        return None  # type: ignore[return-value]
    if not isinstance(value, str) or not value.strip():
        raise _error(error, f"{name} must be a non-empty string, got {value!r}", name)
    return value


def check_path(value: Any, name: str) -> Path:
    """A file-system path given as ``str`` or ``os.PathLike`` (not empty, no NUL byte, encodable)."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value or "\0" in value:
        raise ConfigError(f"{name} must be a file path (str or os.PathLike), got {value!r}", param=name)
    try:
        os.fsencode(value)
    except UnicodeError as exc:
        raise ConfigError(
            f"{name} {value!r} is not a usable file path: {value[exc.start]!r} cannot be encoded for the file "
            "system (a lone surrogate?)",
            param=name,
        ) from None
    return Path(value).expanduser()


def check_file_name(value: Any, what: str, *, param: str, suffix: str | None = None) -> str:
    """A plain file name for a folder fpp-init writes: one path component (no ``/``, ``\\``, NUL or
    other control character), not hidden, encodable, at most 255 bytes, ending in ``suffix`` if given;
    ``what`` starts the message (``"file name"``), ``param`` is the argument it came from."""
    why = None
    if not isinstance(value, str) or not value:
        why = "must be a non-empty string"
    elif "/" in value or "\\" in value:
        why = "must be a plain name, not a path"
    elif any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        why = "holds a NUL or other control character"
    elif value.startswith("."):
        why = "must not start with '.' (hidden names are fpp-init's temporary files)"
    elif suffix is not None and not value.endswith(suffix):
        why = f"must end in {suffix}"
    else:
        try:
            size = len(os.fsencode(value))
        except UnicodeError:
            why = "holds characters the file system cannot encode (a lone surrogate?)"
        else:
            if size > 255:
                why = f"is {size} bytes long; file systems allow at most 255"
    if why is not None:
        raise ConfigError(f"{what} {value!r} {why}", param=param)
    return value


def check_cache(value: Any, name: str = "cache") -> Path | None:
    """``cache=``: ``False``/``None`` (no cache), ``True`` (the default folder) or a folder path."""
    if value is None or value is False:
        return None
    if value is True:
        return default_cache_dir()
    if isinstance(value, (str, os.PathLike)):
        return check_path(value, name)
    raise ConfigError(f"{name} must be True, False or a folder path, got {value!r}", param=name)


# -- devices and dtypes ---------------------------------------------------------------------------
def available_devices() -> list[str]:
    """The devices torch can use here, e.g. ``['cpu', 'cuda:0']``."""
    import torch

    out = ["cpu"]
    if torch.cuda.is_available():
        out += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        out.append("mps")
    return out


def default_device() -> torch.device:
    """CUDA when a GPU is visible, else the CPU."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def check_device(value: Any, name: str = "device") -> torch.device:
    """A usable ``torch.device`` from a string (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``) or a device."""
    import torch

    if isinstance(value, str):
        try:
            dev = torch.device(value.strip())
        except (RuntimeError, ValueError):
            raise ConfigError(
                f"{name} {value!r} is not a device name; use one of {available_devices()}", param=name
            ) from None
    elif isinstance(value, torch.device):
        dev = value
    else:
        raise ConfigError(
            f"{name} must be a device name such as 'cpu' or 'cuda' (or a torch.device), got {value!r}", param=name
        )
    here = available_devices()
    if dev.type == "cpu":
        return torch.device("cpu")
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(
                f"{name} {str(dev)!r} is not available: torch sees no CUDA GPU here "
                f"(torch.cuda.is_available() is False); available: {', '.join(here)}",
                param=name,
            )
        if dev.index is not None and dev.index >= count:
            raise ConfigError(f"{name} {str(dev)!r} does not exist; available: {', '.join(here)}", param=name)
        return dev
    if dev.type == "mps" and "mps" in here:
        return dev
    raise ConfigError(f"{name} {str(dev)!r} is not available here; available: {', '.join(here)}", param=name)


_DTYPE_NAMES = {
    "float32": "float32",
    "fp32": "float32",
    "float": "float32",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float64": "float64",
    "double": "float64",
}


def check_dtype(value: Any, name: str = "dtype") -> torch.dtype:
    """A floating-point ``torch.dtype``, also given by name (``"float16"``, ``"bf16"``...)."""
    import torch

    if isinstance(value, str) and value.strip().lower().removeprefix("torch.") in _DTYPE_NAMES:
        value = getattr(torch, _DTYPE_NAMES[value.strip().lower().removeprefix("torch.")])
    if not isinstance(value, torch.dtype) or not value.is_floating_point:
        raise ConfigError(
            f"{name} must be a floating-point torch dtype such as torch.float16 (or 'float16'), got {value!r}",
            param=name,
        )
    return value


# -- prompts ------------------------------------------------------------------------------------
def check_ctx(value: Any, what: str, *, width: int | None = None, n_ctx: int | None = None) -> torch.Tensor:
    """A finite, non-empty, floating ``[n_ctx, D]`` tensor (detached); ``PromptShapeError`` otherwise.

    ``what`` names the tensor in the message (``"init_ctx"``, ``"'ctx' in prompt.safetensors"``).
    """
    import torch

    if not isinstance(value, torch.Tensor):
        raise PromptShapeError(f"{what} must be a torch.Tensor [n_ctx, D], got {type(value).__name__}")
    if value.dim() != 2:
        hint = " (a class-specific CoOp ctx [n_cls, n_ctx, D] is not supported)" if value.dim() == 3 else ""
        raise PromptShapeError(f"{what} must have shape [n_ctx, D], got {tuple(value.shape)}{hint}")
    if not value.is_floating_point():
        raise PromptShapeError(f"{what} must be a floating-point tensor, got {value.dtype}")
    if value.shape[0] == 0 or value.shape[1] == 0:
        raise PromptShapeError(f"{what} is empty: shape {tuple(value.shape)}")
    if width is not None and value.shape[1] != width:
        raise PromptShapeError(
            f"{what} has width {value.shape[1]} but the model's text tower has width {width} "
            "(a prompt of another backbone?)"
        )
    if n_ctx is not None and value.shape[0] != n_ctx:
        raise PromptShapeError(f"{what} has {value.shape[0]} context vectors, expected {n_ctx}")
    if not bool(torch.isfinite(value).all()):
        raise PromptShapeError(f"{what} contains NaN or Inf values; the prompt is unusable")
    return value.detach()


def check_classnames(value: Any, name: str = "classnames") -> list[str]:
    """A non-empty list (or tuple) of non-blank strings."""
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ClassNameError(
            f"{name} must be a list of strings, got {type(value).__name__}"
            + (" (wrap a single name in a list)" if isinstance(value, str) else "")
        )
    names = list(value)
    if not names:
        raise ClassNameError(f"{name} is empty; pass at least one class name (or use class_agnostic=True)")
    if len(names) > const.MAX_NUM_CLASSES:
        raise ClassNameError(f"{name} has {len(names)} entries; at most {const.MAX_NUM_CLASSES} are supported")
    for i, item in enumerate(names):
        if not isinstance(item, str):
            raise ClassNameError(f"{name}[{i}] is {type(item).__name__} ({item!r}), not a string")
        if not item.strip():
            raise ClassNameError(f"{name}[{i}] is empty or blank")
    return names


def check_template(value: Any, name: str = "template") -> str:
    """The words before the class name, whitespace-normalised; the class always goes at the end."""
    if not isinstance(value, str) or not value.strip():
        raise TemplateError(f"{name} must be a non-empty string such as {const.DEFAULT_TEMPLATE!r}, got {value!r}")
    for marker in ("[CLS]", "{}", "{classname}"):
        if marker in value:
            raise TemplateError(
                f"{name} {value!r} places the class name with {marker!r}; FPP supports only the "
                f"class at the end: give the words before it, e.g. {const.DEFAULT_TEMPLATE!r}"
            )
    return " ".join(value.split())


def _show(value: Any) -> str:
    """``repr(value)``, except that an int of more than 40 digits is described, not printed."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 133:
        return f"an int of about {int(value.bit_length() * 0.30103) + 1} digits"
    return repr(value)


def _error(cls: type[FPPError], message: str, param: str) -> FPPError:
    return cls(message, param=param) if issubclass(cls, ConfigError) else cls(message)
