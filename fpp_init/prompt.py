"""The prompt artifact: context vectors plus the metadata that says where they come from."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from . import constants as C
from ._utils import atomic_write_bytes
from ._version import __version__
from .errors import PromptFormatError

__all__ = ["FPPPrompt", "save_fpp_prompt"]

# metadata keys holding JSON-encoded values
_JSON_FIELDS = ("classnames", "class_agnostic", "num_classes", "config", "final_losses", "n_ctx", "width")


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
        fingerprint: hash of the text tower's weights (see :func:`fingerprint_model`).
        version: fpp-init version that produced it.
        history: per-step losses of the run that produced it (not saved to files).
    """

    ctx: torch.Tensor
    backbone: str | None = None
    template: str | None = C.DEFAULT_TEMPLATE
    classnames: list[str] | None = None
    class_agnostic: bool = False
    num_classes: int | None = None
    config: dict[str, Any] = field(default_factory=dict)
    final_losses: dict[str, float] = field(default_factory=dict)
    fingerprint: str | None = None
    version: str = __version__
    history: dict[str, list[float]] = field(default_factory=dict, repr=False, compare=False)

    @property
    def n_ctx(self) -> int:
        return int(self.ctx.shape[0])

    @property
    def width(self) -> int:
        return int(self.ctx.shape[1])

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> FPPPrompt:
        """A copy whose ``ctx`` is on ``device`` / of ``dtype``."""
        return replace(self, ctx=self.ctx.to(device=device, dtype=dtype))

    def metadata(self) -> dict[str, str]:
        """String metadata as written into the safetensors header."""
        meta = {
            "format": "pt",
            "fpp_format": C.FORMAT_NAME,
            "fpp_format_version": str(C.FORMAT_VERSION),
            "fpp_init_version": self.version,
        }
        for key in ("backbone", "template", "fingerprint"):
            value = getattr(self, key)
            if value is not None:
                meta[key] = str(value)
        meta.update({k: json.dumps(getattr(self, k), sort_keys=True) for k in _JSON_FIELDS})
        return meta

    @classmethod
    def from_metadata(cls, ctx: torch.Tensor, meta: dict[str, str]) -> FPPPrompt:
        """Rebuild a prompt from a tensor and its string metadata (validated)."""

        def parse(key: str) -> Any:
            raw = meta.get(key)
            if raw is None:
                return None
            try:
                return json.loads(raw)
            except json.JSONDecodeError as exc:
                raise PromptFormatError(
                    f"metadata field {key!r} is not valid JSON ({exc}): {raw[:80]!r}; "
                    "the file was edited or written by another tool: re-export it with fpp-init"
                ) from exc

        values = {k: parse(k) for k in _JSON_FIELDS}
        names = values["classnames"]
        if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
            raise PromptFormatError("metadata field 'classnames' must be a JSON list of strings or null")
        for key in ("config", "final_losses"):
            if values[key] is not None and not isinstance(values[key], dict):
                raise PromptFormatError(f"metadata field {key!r} must be a JSON object")
        for key, size in (("n_ctx", ctx.shape[0]), ("width", ctx.shape[-1])):
            if values[key] is not None and values[key] != size:
                raise PromptFormatError(
                    f"metadata says {key}={values[key]} but the 'ctx' tensor has {size}; the file is inconsistent"
                )
        if values["class_agnostic"] is not None and not isinstance(values["class_agnostic"], bool):
            raise PromptFormatError("metadata field 'class_agnostic' must be true or false")
        n = values["num_classes"]
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise PromptFormatError(f"metadata field 'num_classes' must be a positive int or null, got {n!r}")
        if names is not None and n is not None and len(names) != n:
            raise PromptFormatError(
                f"metadata lists {len(names)} class names but num_classes={n}; the file is inconsistent"
            )
        losses = values["final_losses"] or {}
        bad = {k: v for k, v in losses.items() if isinstance(v, bool) or not isinstance(v, (int, float))}
        if bad:
            raise PromptFormatError(f"metadata field 'final_losses' must map names to numbers, got {bad!r}")
        return cls(
            ctx=ctx,
            backbone=meta.get("backbone"),
            template=meta.get("template"),
            classnames=names,
            class_agnostic=bool(values["class_agnostic"] or False),
            num_classes=n,
            config=values["config"] or {},
            final_losses=losses,
            fingerprint=meta.get("fingerprint"),
            version=meta.get("fpp_init_version", "unknown"),
        )

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write a drop-in safetensors file (key ``ctx``, string metadata), atomically."""
        return save_fpp_prompt(self, path)

    def __repr__(self) -> str:
        what = "class-agnostic" if self.class_agnostic else f"{len(self.classnames or [])} classes"
        return (
            f"FPPPrompt(n_ctx={self.n_ctx}, width={self.width}, backbone={self.backbone!r}, "
            f"template={self.template!r}, {what}, fingerprint={self.fingerprint!r})"
        )


def prompt_bytes(prompt: FPPPrompt) -> bytes:
    """The safetensors bytes of a prompt file (``ctx`` as CPU fp32, string metadata)."""
    from safetensors.torch import save

    ctx = prompt.ctx.detach().to(device="cpu", dtype=torch.float32).contiguous()
    return save({C.CTX_KEY: ctx}, metadata=prompt.metadata())


def save_fpp_prompt(prompt: FPPPrompt, path: str | os.PathLike[str]) -> Path:
    """Save ``prompt`` as ``path`` (safetensors), atomically (temp file + rename)."""
    return atomic_write_bytes(path, prompt_bytes(prompt))
