"""FPP's embedding noise, drawn from a private generator."""

from __future__ import annotations

import torch

__all__ = ["draw_noise"]


def draw_noise(
    generator: torch.Generator,
    copies: int,
    length: int,
    width: int,
    *,
    ctx_start: int,
    n_ctx: int,
    ctx_noise: float,
    cls_noise: float,
) -> torch.Tensor:
    """One draw ``[copies, length, width]`` (fp32, CPU): std ``ctx_noise`` on the ctx rows
    ``ctx_start .. ctx_start + n_ctx - 1`` and ``cls_noise`` on every other row.

    ``length`` is the number of rows the prompts use (up to their last EOS), never the tower's
    context length: rows after the EOS cannot change a feature, so a tower truncated to fewer
    positions (R-TPT keeps 40) draws exactly the same numbers.
    """
    noise = torch.randn(copies, length, width, generator=generator)
    scale = torch.full((length, 1), float(cls_noise))
    scale[ctx_start : ctx_start + n_ctx] = float(ctx_noise)
    return noise * scale
