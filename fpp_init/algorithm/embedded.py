"""Embedded class prompts (without the ctx) and how classes are grouped into chunks."""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["EmbeddedPrompts", "plan_chunks", "shard_classes"]


@dataclass
class EmbeddedPrompts:
    """Token embeddings of ``C`` prompts ``[SOS] ctx_1..ctx_n [CLASS] . [EOS]``, minus the ctx.

    Attributes:
        prefix: ``[C, S, D]`` embeddings before the ctx (SOS, plus any fixed leading template
            words; the ctx starts at position ``S``, usually 1).
        suffix: ``[C, T, D]`` embeddings after the ctx (class, ``.``, EOS, padding).
        eot_pos: ``[C]`` absolute read positions (the EOS).
    """

    prefix: torch.Tensor
    suffix: torch.Tensor
    eot_pos: torch.Tensor

    @property
    def num_classes(self) -> int:
        return int(self.prefix.shape[0])

    @property
    def ctx_start(self) -> int:
        """Position of the first ctx vector (the prefix length)."""
        return int(self.prefix.shape[1])

    @property
    def used_length(self) -> int:
        """Positions up to the last read position: nothing after it can change a feature."""
        return int(self.eot_pos.max()) + 1

    def assemble(self, ctx: torch.Tensor) -> torch.Tensor:
        """Full embeddings ``[C, S + n_ctx + T, D]`` with ``ctx`` ``[n_ctx, D]`` in every prompt."""
        return torch.cat(
            [self.prefix, ctx.to(self.prefix.dtype)[None].expand(self.num_classes, -1, -1), self.suffix], 1
        )

    def select(self, idx: torch.Tensor, n_ctx: int, device: torch.device | None = None) -> EmbeddedPrompts:
        """The classes ``idx``, cut after their own last read position (``eot_pos`` stays on the CPU)."""
        eot_pos = self.eot_pos[idx.to(self.eot_pos.device)].cpu()
        keep = int(eot_pos.max()) + 1 - self.ctx_start - n_ctx
        rows = idx.to(self.prefix.device)
        prefix, suffix = self.prefix[rows], self.suffix[rows, :keep]
        if device is not None:
            prefix, suffix = prefix.to(device), suffix.to(device)
        return EmbeddedPrompts(prefix, suffix, eot_pos)

    def shares_prefix(self) -> bool:
        """Whether every class has the same rows before the ctx (then they can be computed once)."""
        return bool((self.prefix == self.prefix[:1]).all())


def plan_chunks(lengths: torch.Tensor, limit: int, overhead: int) -> list[torch.Tensor]:
    """Group classes into chunks of at most ``limit``, by the number of rows each must compute.

    Each chunk is computed up to its own longest prompt, so classes are sorted by length and
    cut where the padding saved outweighs one more chunk (``overhead`` rows; an exact dynamic
    programme over the sorted lengths). Grouping never changes a result: the loss is a sum
    over classes.
    """
    order = torch.argsort(lengths.cpu(), stable=True)
    sorted_lengths = lengths.cpu()[order].tolist()
    n = len(sorted_lengths)
    best, cut = [0] * (n + 1), [0] * (n + 1)
    for i in range(1, n + 1):
        longest = sorted_lengths[i - 1]  # sorted: the chunk (j, i] is as long as its last prompt
        best[i] = -1
        for j in range(max(0, i - limit), i):
            cost = best[j] + (i - j) * longest + overhead
            if best[i] < 0 or cost < best[i]:
                best[i], cut[i] = cost, j
    bounds, i = [], n
    while i > 0:
        bounds.append((cut[i], i))
        i = cut[i]
    return [order[a:b] for a, b in reversed(bounds)]


def shard_classes(lengths: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    """The classes rank ``rank`` of ``world`` computes: sorted by length, dealt out in turn,
    so every rank gets about the same number of rows (and of classes)."""
    order = torch.argsort(lengths.cpu(), stable=True)
    return order[rank::world].sort().values
