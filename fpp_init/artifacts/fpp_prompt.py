"""The prompt artifact: context vectors plus the metadata that says where they come from.

An :class:`FPPPrompt` is valid from construction on: its ``ctx`` is a finite, non-empty,
floating ``[n_ctx, D]`` tensor and its metadata have the documented types; a ctx changed in
place afterwards is checked again (:func:`current_ctx`) wherever a prompt is saved, cached,
exported, returned or installed, so an invalid prompt never gets there.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save

from .. import constants as const
from .._io import NESTED_TOO_DEEPLY, atomic_write_bytes
from .._validate import check_classnames, check_ctx, check_device, check_dtype, check_int, check_path
from .._version import __version__
from ..errors import ClassNameError, ConfigError, PromptFormatError, PromptMismatchError

__all__ = ["FPPPrompt", "save_fpp_prompt", "prompt_bytes", "canonical_safetensors", "current_ctx"]

# metadata keys holding JSON-encoded values
_JSON_FIELDS = ("classnames", "class_agnostic", "num_classes", "config", "final_losses", "n_ctx", "width")
_TEXT_FIELDS = ("backbone", "template", "fingerprint")


def _check_optional_str(value: Any, name: str) -> None:
    if value is not None and not isinstance(value, str):
        raise ConfigError(f"FPPPrompt.{name} must be a string or None, got {value!r}", param=name)


@dataclass
class FPPPrompt:
    """Pretrained context vectors ``ctx`` ``[n_ctx, D]`` and their provenance.

    Attributes:
        ctx: the context vectors (fp32, CPU unless moved with :meth:`to`).
        backbone: CLIP backbone name (``"ViT-B/16"``) or checkpoint file name, if known.
        template: the hand-written prompt aligned to, or ``None`` for a given ctx tensor.
        classnames: class names pretrained for, or ``None`` (class-agnostic).
        class_agnostic: pretrained with random class tokens; fits any class set.
        num_classes: number of classes pretrained for (``C`` in ``lambda = 1 + 15/C``).
        config: the :class:`~fpp_init.FPPConfig` fields used, as a dict.
        final_losses: losses of the last step (``align``, ``flat``, ``loss``, ``cos``).
        fingerprint: hash of the text tower's weights (see :func:`fpp_init.fingerprint_model`).
        version: fpp-init version that produced it.
        history: per-step losses of the run that produced it, a dict of four lists
            (``align``, ``flat``, ``loss``, ``cos``); empty when loaded from a file or the cache.
        cache_entry: the cache file this prompt was served from, or ``None`` (computed or loaded).
    """

    ctx: torch.Tensor
    backbone: str | None = None
    template: str | None = const.DEFAULT_TEMPLATE
    classnames: list[str] | None = None
    class_agnostic: bool = False
    num_classes: int | None = None
    config: dict[str, Any] = field(default_factory=dict)
    final_losses: dict[str, float] = field(default_factory=dict)
    fingerprint: str | None = None
    version: str = __version__
    history: dict[str, list[float]] = field(default_factory=dict, repr=False, compare=False)
    cache_entry: Path | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.ctx = check_ctx(self.ctx, "FPPPrompt.ctx")
        for name in _TEXT_FIELDS:
            _check_optional_str(getattr(self, name), name)
        if not isinstance(self.version, str):
            raise ConfigError(f"FPPPrompt.version must be a string, got {self.version!r}", param="version")
        if self.classnames is not None:
            # (as recorded: files written before repeats were refused may hold some)
            self.classnames = check_classnames(self.classnames, "FPPPrompt.classnames", repeats="allow")
        if not isinstance(self.class_agnostic, bool):
            raise ConfigError(
                f"FPPPrompt.class_agnostic must be True or False, got {self.class_agnostic!r}", param="class_agnostic"
            )
        if self.class_agnostic and self.classnames is not None:
            raise ClassNameError("a class-agnostic FPPPrompt has no class names (classnames must be None)")
        if self.num_classes is not None:
            check_int(self.num_classes, "FPPPrompt.num_classes", min=1, max=const.MAX_NUM_CLASSES)
            if self.classnames is not None and len(self.classnames) != self.num_classes:
                raise ClassNameError(
                    f"FPPPrompt lists {len(self.classnames)} class names but num_classes={self.num_classes}"
                )
        if not isinstance(self.config, dict):
            raise ConfigError(f"FPPPrompt.config must be a dict, got {type(self.config).__name__}", param="config")
        losses = self.final_losses
        if not isinstance(losses, dict) or not all(
            isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            for k, v in losses.items()
        ):
            raise ConfigError(
                f"FPPPrompt.final_losses must map names to finite numbers, got {losses!r}", param="final_losses"
            )

    @property
    def n_ctx(self) -> int:
        return int(self.ctx.shape[0])

    @property
    def width(self) -> int:
        return int(self.ctx.shape[1])

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> FPPPrompt:
        """A copy whose ``ctx`` is on ``device`` / of ``dtype`` (validated, see :func:`fpp_init.load_fpp_prompt`)."""
        dev = None if device is None else check_device(device)
        dt = None if dtype is None else check_dtype(dtype)
        return replace(self, ctx=self.ctx.to(device=dev, dtype=dt), history=self.history)

    def check(
        self,
        *,
        n_ctx: int | None = None,
        width: int | None = None,
        backbone: str | None = None,
        fingerprint: str | None = None,
        where: str = "prompt",
    ) -> None:
        """Raise :class:`~fpp_init.errors.PromptMismatchError` unless the prompt meets every given expectation."""
        if n_ctx is not None and self.n_ctx != n_ctx:
            raise PromptMismatchError(
                f"{where} has n_ctx={self.n_ctx} context vectors but {n_ctx} were expected; "
                "pretrain with a template of that many tokens"
            )
        if width is not None and self.width != width:
            raise PromptMismatchError(
                f"{where} has width {self.width} but {width} was expected (a prompt of another backbone?)"
            )
        if backbone is not None and _norm_backbone(backbone) != _norm_backbone(self.backbone or ""):
            raise PromptMismatchError(
                f"{where} was pretrained for backbone {self.backbone!r} but {backbone!r} was expected"
            )
        if fingerprint is not None and self.fingerprint != fingerprint:
            if self.fingerprint is None:
                raise PromptMismatchError(
                    f"{where} records no text-tower fingerprint (converted from a tensor or a CoOp file), so it "
                    f"cannot be checked against {fingerprint!r}; drop the fingerprint / model check or check width= instead"
                )
            raise PromptMismatchError(
                f"{where} was pretrained for text tower {self.fingerprint!r} (backbone {self.backbone!r}) but the "
                f"expected one is {fingerprint!r}; pretrain a prompt for this model (other weights give other prompts)"
            )

    def metadata(self) -> dict[str, str]:
        """String metadata as written into the safetensors header."""
        meta = {
            "format": "pt",
            "fpp_format": const.FORMAT_NAME,
            "fpp_format_version": str(const.FORMAT_VERSION),
            "fpp_init_version": self.version,
        }
        meta.update({k: getattr(self, k) for k in _TEXT_FIELDS if getattr(self, k) is not None})
        meta.update({k: json.dumps(getattr(self, k), sort_keys=True) for k in _JSON_FIELDS})
        return meta

    @classmethod
    def from_metadata(cls, ctx: torch.Tensor, meta: dict[str, str], where: str = "prompt file") -> FPPPrompt:
        """Rebuild a prompt from a tensor and its string metadata (validated like any prompt)."""

        def parse(key: str) -> Any:
            raw = meta.get(key)
            if raw is None:
                return None
            try:
                return json.loads(raw)
            except json.JSONDecodeError as exc:
                raise PromptFormatError(
                    f"{where}: metadata field {key!r} is not valid JSON ({exc.msg}): {raw[:80]!r}; "
                    "the file was edited or written by another tool: re-export it with fpp-init"
                ) from None
            except RecursionError:
                raise PromptFormatError(f"{where}: metadata field {key!r} {NESTED_TOO_DEEPLY}") from None

        values = {k: parse(k) for k in _JSON_FIELDS}
        for key, size in (("n_ctx", ctx.shape[0]), ("width", ctx.shape[-1])):
            if values[key] is not None and values[key] != size:
                raise PromptFormatError(
                    f"{where}: metadata says {key}={values[key]} but the 'ctx' tensor has {size}; the file is inconsistent"
                )
        try:
            return cls(
                ctx=ctx,
                backbone=meta.get("backbone"),
                template=meta.get("template"),
                classnames=values["classnames"],
                class_agnostic=False if values["class_agnostic"] is None else values["class_agnostic"],
                num_classes=values["num_classes"],
                config={} if values["config"] is None else values["config"],
                final_losses={} if values["final_losses"] is None else values["final_losses"],
                fingerprint=meta.get("fingerprint"),
                version=meta.get("fpp_init_version", "unknown"),
            )
        except (ConfigError, ClassNameError) as exc:  # metadata of the wrong type: the file is bad
            raise PromptFormatError(f"{where}: invalid metadata: {exc}") from None

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write a drop-in safetensors file (key ``ctx``, string metadata), atomically."""
        return save_fpp_prompt(self, path)

    def __repr__(self) -> str:
        what = "class-agnostic" if self.class_agnostic else f"{len(self.classnames or [])} classes"
        return (
            f"FPPPrompt(n_ctx={self.n_ctx}, width={self.width}, backbone={self.backbone!r}, "
            f"template={self.template!r}, {what}, fingerprint={self.fingerprint!r})"
        )


def _norm_backbone(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def canonical_safetensors(data: bytes) -> bytes:
    """The same safetensors file with its JSON header written with sorted keys: same content, same bytes.

    (The library writes the metadata map in hash order, which differs from run to run.)
    """
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)  # the format aligns the data to 8 bytes with spaces
    return len(text).to_bytes(8, "little") + text + data[8 + n :]


def current_ctx(prompt: FPPPrompt) -> torch.Tensor:
    """``prompt.ctx`` as it is *now*, checked by the one ctx validator: a prompt is valid when made, but
    its tensor can be changed in place afterwards (``prompt.ctx[0, 0] = inf``). Every path that
    returns, saves, exports, caches or installs a prompt calls this at that moment."""
    return check_ctx(prompt.ctx, "the prompt's ctx")


def prompt_bytes(prompt: FPPPrompt, extra_metadata: dict[str, str] | None = None) -> bytes:
    """The bytes of a prompt file: ``ctx`` as CPU fp32, string metadata; the same prompt gives the same bytes."""
    ctx = current_ctx(prompt).to(device="cpu", dtype=torch.float32).contiguous()
    return canonical_safetensors(save({const.CTX_KEY: ctx}, metadata={**prompt.metadata(), **(extra_metadata or {})}))


def save_fpp_prompt(prompt: FPPPrompt, path: str | os.PathLike[str]) -> Path:
    """Save ``prompt`` as ``path`` (safetensors), atomically (temp file + rename)."""
    if not isinstance(prompt, FPPPrompt):
        raise ConfigError(f"save_fpp_prompt needs an FPPPrompt, got {type(prompt).__name__}", param="prompt")
    return atomic_write_bytes(check_path(path, "path"), prompt_bytes(prompt), what="prompt file")
