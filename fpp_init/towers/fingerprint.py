"""Text-tower fingerprints: which weights a prompt was pretrained for.

The fingerprint hashes the canonical description (:class:`~fpp_init.towers.TowerSpec`) of a
tower, so it is the same for the same weights however they are held: clip-anytorch,
OpenCLIP or Hugging Face ``transformers`` (``q/k/v`` projections are concatenated in the
spec), fp16 or fp32 (values are rounded to fp16 before hashing), any device, and any
number of positions beyond the first :data:`~fpp_init.constants.FINGERPRINT_POSITIONS`
(a prompt's features never depend on positions after its EOS, so a tower truncated to 40
positions, as R-TPT keeps it, matches the 77-position original). Each tensor contributes
its shape and an evenly strided sample of its values: cheap (a few ms) and sensitive to
any real change of weights.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import torch
from torch import nn

from .. import constants as const
from ._base import LayerNormSpec, TowerSpec

__all__ = ["fingerprint_spec", "fingerprint_modules"]


def _update(h: hashlib._Hash, t: torch.Tensor | None) -> None:
    if t is None:
        h.update(b"none")
        return
    t = t.detach()
    h.update(str(tuple(t.shape)).encode())
    flat = t.reshape(-1)
    if flat.numel() > const.FINGERPRINT_SAMPLES:
        idx = torch.linspace(0, flat.numel() - 1, const.FINGERPRINT_SAMPLES, device=flat.device).long()
        flat = flat[idx]
    h.update(flat.to(device="cpu", dtype=torch.float16).numpy().tobytes())


def _update_ln(h: hashlib._Hash, ln: LayerNormSpec) -> None:
    _update(h, ln.weight)
    _update(h, ln.bias)


def fingerprint_spec(spec: TowerSpec) -> str:
    """16 hex digits identifying the tower's function (weights, heads, activations, deep prompts)."""
    h = hashlib.sha256(f"causal-clip-text heads={spec.heads}".encode())
    _update(h, spec.positional_embedding[: const.FINGERPRINT_POSITIONS])
    for blk in spec.blocks:
        h.update(blk.activation.encode())
        _update_ln(h, blk.ln_1)
        for t in (blk.qkv_weight, blk.qkv_bias, blk.out_weight, blk.out_bias):
            _update(h, t)
        _update_ln(h, blk.ln_2)
        for t in (blk.fc1_weight, blk.fc1_bias, blk.fc2_weight, blk.fc2_bias, blk.ls_1, blk.ls_2):
            _update(h, t)
    _update_ln(h, spec.ln_final)
    _update(h, spec.projection)
    for layer in sorted(spec.deep_prompts):
        h.update(f"deep {layer} at {spec.deep_start}".encode())
        _update(h, spec.deep_prompts[layer])
    return h.hexdigest()[:16]


def fingerprint_modules(parts: Iterable[nn.Module | torch.Tensor]) -> str:
    """Fallback for text encoders without a canonical description: every parameter of ``parts``.

    Differs from :func:`fingerprint_spec` for the same weights; used only where no spec exists
    (a live model's non-CLIP-shaped encoder), so such prompts match only that encoder.
    """
    h = hashlib.sha256(b"modules")
    for part in parts:
        tensors = [part] if isinstance(part, torch.Tensor) else [p for _, p in part.named_parameters()]
        for t in tensors:
            _update(h, t)
    return h.hexdigest()[:16]
