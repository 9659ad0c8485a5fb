from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class TextTower(Protocol):
    """What the FPP optimiser needs from a text encoder."""

    @property
    def dtype(self) -> torch.dtype:
        """dtype of the tower's weights (inputs are cast to it)."""
        ...

    #: width of the token embeddings (``D``).
    width: int
    #: maximum number of positions (``L``).
    context_length: int
    #: whether :meth:`encode_shared_prefix` is available.
    supports_shared_prefix: bool

    def encode(self, x: torch.Tensor, eot: torch.Tensor) -> torch.Tensor:
        """Features ``[B, E]`` of embedded prompts ``x`` ``[B, L, D]``, read at ``eot`` ``[B]``."""
        ...

    def encode_shared_prefix(self, prefix: torch.Tensor, rest: torch.Tensor, eot: torch.Tensor) -> torch.Tensor:
        """Features ``[G, C, E]`` of prompts ``cat(prefix[g], rest[g, c])``.

        ``prefix`` ``[G, P, D]`` is shared by the ``C`` prompts of group ``g``,
        ``rest`` is ``[G, C, R, D]``; ``eot`` ``[C]`` are absolute positions.
        """
        ...

    def fingerprint(self) -> str:
        """A cheap, dtype- and device-independent hash of the weights."""
        ...
