"""One validator per concept; every public argument goes through one of these where it enters.

Each raises the error class of its concept (see :mod:`fpp_init.errors`), with a message that
starts with the argument's name and says what was expected. torch is imported lazily (the
CLI's ``--help`` and :class:`~fpp_init.FPPConfig` need no torch).
"""

from __future__ import annotations

import json
import math
import os
import stat
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast, overload

from . import constants as const
from ._io import NESTED_TOO_DEEPLY, check_readable_file, default_cache_dir, path_stat, read_regular_file
from .errors import (
    ClassNameError,
    ClassNameWarning,
    ConfigError,
    FPPError,
    ModelLoadError,
    PromptFileError,
    PromptShapeError,
    TemplateError,
)

if TYPE_CHECKING:  # pragma: no cover
    import torch

T = TypeVar("T")

_MAX_CLASSNAME_FILE = 64 * 2**20

__all__ = [
    "check_int",
    "check_float",
    "check_bool",
    "check_choice",
    "check_str",
    "check_path",
    "check_file_name",
    "check_cache",
    "check_device_name",
    "check_device",
    "check_model_reference",
    "is_model_folder",
    "check_prompt_path",
    "is_prompt_path",
    "check_dtype",
    "check_ctx",
    "check_classnames",
    "read_classnames",
    "ReadNames",
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
    if not isinstance(value, int) or isinstance(value, bool):
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
    return value


@overload
def check_str(
    value: Any, name: str, *, allow_none: Literal[False] = False, error: type[FPPError] = ConfigError
) -> str: ...
@overload
def check_str(value: Any, name: str, *, allow_none: bool, error: type[FPPError] = ConfigError) -> str | None: ...
def check_str(value: Any, name: str, *, allow_none: bool = False, error: type[FPPError] = ConfigError) -> str | None:
    """A non-empty string (or ``None`` when allowed; then the return value is ``None``)."""
    if value is None and allow_none:
        return None
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
    except UnicodeEncodeError as exc:
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
    return cast(str, value)  # a str: every other value set `why` above


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


def check_device_name(value: Any, name: str = "device") -> str:
    """A device name torch can parse (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``), checked without torch;
    whether the device exists here is :func:`check_device`'s question."""
    text = value.strip() if isinstance(value, str) else None
    kind, _, index = (text or "").partition(":")
    known = kind in const.DEVICE_TYPES or (kind.isidentifier() and _device_plugins())
    if text is None or not known or (index and not index.isdigit()) or text.endswith(":"):
        raise ConfigError(f"{name} {value!r} is not a device name; use 'cpu', 'cuda', 'cuda:N' or 'mps'", param=name)
    return text


def _device_plugins() -> bool:
    """Whether an installed package registers a torch device backend that torch loads at import (the
    ``torch.backends`` entry points: Ascend's ``npu`` and the like), whose name only torch can check."""
    from importlib.metadata import entry_points

    try:
        return bool(entry_points(group="torch.backends"))
    except Exception:  # a broken distribution's metadata: let torch judge the name
        return True


def check_device(value: Any, name: str = "device") -> torch.device:
    """A usable ``torch.device`` from a string (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``) or a device."""
    import torch

    if isinstance(value, str):
        try:  # torch knows every name, plugins' too
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


# -- model references and prompt files (no torch: the CLI checks them before it imports torch) -----
def _looks_like_path(text: str) -> bool:
    return text.endswith(const.CHECKPOINT_SUFFIXES) or text.startswith((".", "/", "~"))


def check_model_reference(value: Any, name: str = "model", *, known: Sequence[str] = const.CLIP_MODEL_NAMES) -> str:
    """A model reference that can be resolved: a clip-anytorch name in ``known``, an existing checkpoint
    file or model folder, ``open_clip:ARCH/PRETRAINED`` (its checkpoint file must exist when it names
    one) or ``hf:ORG/REPO`` / ``hf:FOLDER``. :class:`ModelLoadError` otherwise; nothing is loaded."""
    if not isinstance(value, (str, os.PathLike)) or not os.fspath(value).strip():
        raise ConfigError(f"{name} must be a model name or a checkpoint path, got {value!r}", param=name)
    ref = os.fspath(value)
    where = "" if name == "model" else f"{name}: "
    if ref.startswith(const.OPEN_CLIP_PREFIX):
        rest = ref[len(const.OPEN_CLIP_PREFIX) :]
        arch, _, pretrained = rest.partition("/")
        if rest.startswith("hf-hub:"):
            return ref  # (its form is the OpenCLIP loader's to check)
        if pretrained and _looks_like_path(pretrained):
            if path_stat(os.path.expanduser(pretrained), what="OpenCLIP checkpoint", error=ModelLoadError) is None:
                raise ModelLoadError(
                    f"{where}OpenCLIP checkpoint not found: {pretrained!r} (in {ref!r}); check the path"
                )
        elif not arch or not pretrained:
            raise ModelLoadError(
                f"{where}OpenCLIP reference {ref!r} does not name the weights; use '{const.OPEN_CLIP_PREFIX}ARCH/PRETRAINED' "
                f"(e.g. '{const.OPEN_CLIP_PREFIX}ViT-B-16/openai') or '{const.OPEN_CLIP_PREFIX}hf-hub:ORG/REPO'"
            )
        return ref
    if ref.startswith(const.HF_PREFIX):
        rest = ref[len(const.HF_PREFIX) :]
        if not rest.strip():
            raise ModelLoadError(
                f"{where}{ref!r} names no model; use '{const.HF_PREFIX}ORG/REPO' or '{const.HF_PREFIX}FOLDER'"
            )
        folder = os.path.expanduser(rest)
        if rest.startswith((".", "/", "~")) and not _is_dir(folder, "transformers model folder"):
            raise ModelLoadError(f"{where}transformers model folder not found: {rest!r}; check the path")
        return ref
    if ref in known:
        return ref
    found = path_stat(ref, what="CLIP checkpoint", error=ModelLoadError)
    if found is None:
        if _looks_like_path(ref):
            raise ModelLoadError(f"{where}CLIP checkpoint not found: {ref!r}; check the path")
        raise ModelLoadError(
            f"{where}unknown CLIP model {ref!r}; use one of {list(known)}, the path of a checkpoint file, "
            f"'{const.OPEN_CLIP_PREFIX}ARCH/PRETRAINED' (OpenCLIP) or '{const.HF_PREFIX}ORG/REPO' (transformers)"
        )
    if stat.S_ISDIR(found.st_mode):
        if not is_model_folder(ref):
            raise ModelLoadError(
                f"{where}{ref!r} is a folder; pass the checkpoint file inside it (or a transformers folder with config.json)"
            )
    else:
        check_readable_file(ref, what="CLIP checkpoint", error=ModelLoadError)
    return ref


def is_model_folder(path: str) -> bool:
    """Whether ``path`` is a transformers model folder (``save_pretrained``): a folder with a ``config.json`` file."""
    if not os.path.isdir(path):  # (what cannot be stat'ed is judged as a checkpoint file, with its reason)
        return False
    config = path_stat(os.path.join(path, "config.json"), what="model folder file", error=ModelLoadError)
    return config is not None and stat.S_ISREG(config.st_mode)


def _is_dir(path: str, what: str) -> bool:
    found = path_stat(path, what=what, error=ModelLoadError)
    return found is not None and stat.S_ISDIR(found.st_mode)


def is_prompt_path(text: str) -> bool:
    """Whether ``text`` names a prompt file (by its suffix, or because the file exists) rather than a
    template string."""
    return text.endswith((const.SUFFIX, ".pt", ".pth")) or os.path.isfile(text)


def check_prompt_path(value: Any, name: str = "source", *, readable: bool = True) -> Path:
    """The local prompt file ``value`` names: it must be a regular, readable file (:class:`PromptFileError`;
    a missing ``OWNER/REPO/FILE`` gets the ``hf://`` spelling as a hint). Read nothing, import nothing.
    ``readable=False`` leaves the open-to-check to a caller that reads the file at once (same messages)."""
    path = check_path(value, name)
    text = os.fspath(value)
    if (
        isinstance(value, str)
        and text.count("/") >= 1
        and ":" not in text
        and not text.startswith((".", "/", "~"))
        and path_stat(path, what="prompt file", error=PromptFileError) is None
    ):
        hint = f"hf://{text}" if text.count("/") >= 2 else f"load_fpp_prompt({text!r}, 'FILE.safetensors')"
        raise PromptFileError(f"prompt file not found: {text!r}. For a Hugging Face Hub file use {hint}")
    if readable:
        check_readable_file(path, what="prompt file", error=PromptFileError)
    return path


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


Repeats = Literal["refuse", "warn", "allow"]

_SHOWN_REPEATS = 3


def check_classnames(
    value: Any,
    name: str = "classnames",
    *,
    repeats: Repeats = "refuse",
    where: Sequence[str] | None = None,
) -> list[str]:
    """A non-empty list (or tuple) of non-blank strings, each class named once.

    ``repeats``: a name given twice is refused (``"refuse"``: :class:`ClassNameError`), only
    warned about (``"warn"``: a live model's own class set, which the caller cannot change) or
    accepted (``"allow"``: names recorded in a prompt file). Names that differ only in case,
    spaces or underscores (``"Dog"`` / ``"dog"``) always just warn (:class:`ClassNameWarning`):
    CLIP's tokenizer gives them the same prompt. ``where`` names each entry in messages (a
    file's line numbers); by default ``name[i]``.
    """
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
    if repeats != "allow" and not isinstance(value, ReadNames):
        _check_repeats(names, name, repeats, where)
    return names


class ReadNames(list[str]):
    """Class names :func:`read_classnames` has checked, repeats included (in the file's words, with its line
    numbers): passed on to an entry point, they are not warned about a second time. A holder that kept them
    in another container (a zoo job's tuple) passes them on as ``ReadNames(names)``."""


def _check_repeats(names: list[str], name: str, repeats: Repeats, where: Sequence[str] | None) -> None:
    """Refuse (or warn about) exact repeats; warn about names that only case, spaces or underscores tell apart."""
    at: dict[str, list[int]] = {}
    folded: dict[str, list[int]] = {}
    for i, item in enumerate(names):
        at.setdefault(item, []).append(i)
        folded.setdefault(" ".join(item.replace("_", " ").lower().split()), []).append(i)

    def place(i: int) -> str:
        if where is not None:
            return where[i]
        return f"{name}[{i}]" if name.isidentifier() else f"position {i}"

    def places(group: list[int]) -> str:
        shown = [place(i) for i in group]
        return " and ".join(shown) if len(shown) == 2 else ", ".join(shown)

    def listed(groups: list[list[int]], show: Any) -> str:
        parts = [show(g) for g in groups[:_SHOWN_REPEATS]]
        more = len(groups) - _SHOWN_REPEATS
        return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")

    exact = [g for g in at.values() if len(g) > 1]
    if exact:
        text = listed(exact, lambda g: f"{names[g[0]]!r} ({places(g)})")
        verb = "is" if len(exact) == 1 else "are"
        if repeats == "refuse":
            raise ClassNameError(
                f"{name}: {text} {verb} given more than once; name each class once (remove the repeat, or rename "
                "one if they are different classes)"
            )
        warnings.warn(
            f"{name}: {text} {verb} given more than once; their prompts are identical, so the model cannot tell "
            "them apart; FPP pretrains with the class set as it is",
            ClassNameWarning,
            stacklevel=4,
        )
    near = [g for g in folded.values() if len({names[i] for i in g}) > 1]
    if near:
        text = listed(near, lambda g: " and ".join(f"{names[i]!r} ({place(i)})" for i in g if i == at[names[i]][0]))
        warnings.warn(
            f"{name}: {text} differ only in case, spaces or underscores; CLIP's tokenizer gives them the same "
            "prompt, so the model cannot tell them apart: rename one if they are different classes",
            ClassNameWarning,
            stacklevel=4,
        )


def read_classnames(path: str | os.PathLike[str], *, empty_hint: str = "") -> list[str]:
    """Class names from a file: a JSON list of strings, or one name per line (UTF-8), validated as
    :func:`check_classnames` does (each class once), with the file and its line numbers in messages."""
    shown = os.fspath(path)
    data = read_regular_file(path, limit=_MAX_CLASSNAME_FILE, what="class-name file", error=ClassNameError)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ClassNameError(
            f"class-name file {shown!r} is not UTF-8 text (byte {exc.start}: {data[exc.start : exc.start + 1]!r}); "
            "save it as UTF-8"
        ) from None
    text = text.lstrip("\ufeff")
    what = f"class-name file {shown!r}"
    if text.strip().startswith("["):
        try:
            names = json.loads(text.strip())
        except json.JSONDecodeError as exc:
            raise ClassNameError(
                f"{shown!r} starts with '[' but is not valid JSON: {exc.msg} at line {exc.lineno}"
            ) from None
        except RecursionError:
            raise ClassNameError(f"{what} {NESTED_TOO_DEEPLY}") from None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ClassNameError(f"{shown!r} must hold a JSON list of strings")
        where = [f"entry {i + 1}" for i in range(len(names))]
    else:
        numbered = [(i + 1, line.strip()) for i, line in enumerate(text.splitlines()) if line.strip()]
        names = [n for _, n in numbered]
        where = [f"line {i}" for i, _ in numbered]
    if not names:
        raise ClassNameError(f"{what} holds no class names; write one name per line (or a JSON list){empty_hint}")
    return ReadNames(check_classnames(names, what, where=where))


def check_template(value: Any, name: str = "template") -> str:
    """The words before the class name, whitespace-normalised; the class always goes at the end.

    Underscores are read as spaces, as TPT-family code reads ``--ctx_init a_photo_of_a``
    (``ctx_init.replace("_", " ")``), so both spellings give the same prompt.
    """
    if not isinstance(value, str) or not value.replace("_", " ").strip():
        raise TemplateError(f"{name} must be a non-empty string such as {const.DEFAULT_TEMPLATE!r}, got {value!r}")
    for marker in ("[CLS]", "{}", "{classname}"):
        if marker in value:
            raise TemplateError(
                f"{name} {value!r} places the class name with {marker!r}; FPP supports only the "
                f"class at the end: give the words before it, e.g. {const.DEFAULT_TEMPLATE!r}"
            )
    return " ".join(value.replace("_", " ").split())


def _show(value: Any) -> str:
    """``repr(value)``, except that an int of more than 40 digits is described, not printed."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 133:
        return f"an int of about {int(value.bit_length() * 0.30103) + 1} digits"
    return repr(value)


def _error(cls: type[FPPError], message: str, param: str) -> FPPError:
    return cls(message, param=param) if issubclass(cls, ConfigError) else cls(message)
