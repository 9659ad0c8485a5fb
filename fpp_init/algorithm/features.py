"""The one encoder path: normalised class features of ctx variants, clean or with embedding noise.

Pretraining and the sharpness measure both use :class:`ClassFeatures`; it picks the fastest
exact way the tower offers (a prefix computed once per ctx variant when every class shares the
rows before the ctx) and runs classes in chunks of similar prompt length.
"""

from __future__ import annotations

import torch

from ..towers import TextTower
from .embedded import EmbeddedPrompts, plan_chunks

__all__ = ["ClassFeatures", "normalize"]

#: Cost of one more chunk, in sequence rows (its prefix pass and per-call overhead); used only to
#: decide how classes of different prompt lengths are grouped. Measured on CPU with one thread; each
#: kernel of a chunk is a parallel region per thread, so on the CPU the cost is counted per thread.
#: On accelerators a row costs far less than a kernel launch (not measured).
_CHUNK_OVERHEAD_PER_THREAD = 16
_CHUNK_OVERHEAD_OTHER = 512


def chunk_overhead(device: torch.device) -> int:
    if device.type == "cpu":
        return _CHUNK_OVERHEAD_PER_THREAD * torch.get_num_threads()
    return _CHUNK_OVERHEAD_OTHER


def normalize(x: torch.Tensor) -> torch.Tensor:
    """Unit rows in at least fp32 (fp64 features stay fp64)."""
    x = x.to(torch.promote_types(x.dtype, torch.float32))
    norm: torch.Tensor = x.norm(dim=-1, keepdim=True)  # (torch leaves Tensor.norm's return unannotated)
    return x / norm


class ClassFeatures:
    """Features ``[G, c, E]`` of ``G`` ctx variants for each chunk of classes.

    ``prompts`` are moved to ``device`` and cut after the last read position; chunks hold at
    most ``chunk_classes`` classes each. ``share_prefix=False`` runs every prompt in full.
    """

    def __init__(
        self,
        tower: TextTower,
        prompts: EmbeddedPrompts,
        n_ctx: int,
        *,
        chunk_classes: int,
        share_prefix: bool,
        device: torch.device,
    ) -> None:
        self.tower, self.n_ctx = tower, n_ctx
        self.ctx_start = prompts.ctx_start
        self.head_length = self.ctx_start + n_ctx  # rows before the class: prefix + ctx
        self.share = share_prefix and tower.supports_shared_prefix and prompts.shares_prefix()
        overhead = chunk_overhead(device) + self.head_length
        rows = prompts.eot_pos.cpu() + 1 - self.head_length
        self.class_index = plan_chunks(rows, chunk_classes, overhead)
        self.chunks = [prompts.select(idx, n_ctx, device) for idx in self.class_index]

    def __call__(self, chunk: EmbeddedPrompts, ctxs: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Normalised features ``[G, c, E]`` of ``chunk`` with ctx variants ``ctxs`` ``[G, n_ctx, D]``,
        plus ``noise`` ``[G, >=n, D]`` on every position (one pattern per variant, shared by its classes)."""
        groups, n = ctxs.shape[0], chunk.used_length
        ctxs = ctxs.to(chunk.prefix.dtype)
        if self.share:
            head = torch.cat([chunk.prefix[:1].expand(groups, -1, -1), ctxs], dim=1)
            rest = chunk.suffix[None].expand(groups, -1, -1, -1)
            if noise is not None:
                head = head + noise[:, : self.head_length]
                rest = rest + noise[:, None, self.head_length : n]
            return normalize(self.tower.encode_shared_prefix(head, rest, chunk.eot_pos))
        classes = chunk.num_classes
        full = torch.cat(
            [
                chunk.prefix[None].expand(groups, -1, -1, -1),
                ctxs[:, None].expand(-1, classes, -1, -1),
                chunk.suffix[None].expand(groups, -1, -1, -1),
            ],
            dim=2,
        )
        if noise is not None:
            full = full + noise[:, None, :n]
        feats = self.tower.encode(full.flatten(0, 1), chunk.eot_pos.repeat(groups))
        return normalize(feats).view(groups, classes, -1)

    def all_classes(self, ctxs: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Features ``[G, C, E]`` of every class, in the original class order."""
        out = torch.cat([self(chunk, ctxs, noise) for chunk in self.chunks], dim=1)
        order = torch.cat(self.class_index).to(out.device)
        return out[:, torch.argsort(order)]
