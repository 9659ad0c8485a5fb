"""The general (slower) path: a tower around any TPT-style ``text_encoder(prompts, tokenized_prompts)``."""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["CallableTextTower"]


class CallableTextTower:
    """Runs the encoder itself on all ``L`` positions (no truncation, no prefix sharing).

    ``tokenized_prompts`` is only used by such encoders for ``argmax`` (the EOS position), so a
    one-hot row at ``eot_pos`` is passed. ``fingerprint`` is supplied by whoever knows the weights.
    """

    supports_shared_prefix = False

    def __init__(
        self,
        encoder: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        *,
        width: int,
        context_length: int,
        dtype: torch.dtype,
        device: torch.device,
        fingerprint: Callable[[], str],
    ) -> None:
        self._encoder = encoder
        self.width = width
        self.context_length = context_length
        self._dtype, self._device = dtype, device
        self._fingerprint = fingerprint

    @property
    def dtype(self) -> torch.dtype:
        return self._dtype

    @property
    def device(self) -> torch.device:
        return self._device

    def encode(self, x: torch.Tensor, eot_pos: torch.Tensor) -> torch.Tensor:
        b, length = x.shape[0], x.shape[1]
        if length < self.context_length:  # the encoder adds all L positional embeddings
            pad = x.new_zeros(b, self.context_length - length, x.shape[2])
            x = torch.cat([x, pad], dim=1)
            length = self.context_length
        tokens = torch.zeros(b, length, dtype=torch.long, device=x.device)
        tokens[torch.arange(b, device=x.device), eot_pos.to(x.device)] = 1
        out = self._encoder(x.to(self.dtype), tokens)
        return out[0] if isinstance(out, tuple) else out

    def encode_shared_prefix(self, prefix: torch.Tensor, rest: torch.Tensor, eot_pos: torch.Tensor) -> torch.Tensor:
        g, c = rest.shape[0], rest.shape[1]
        full = torch.cat([prefix[:, None].expand(g, c, *prefix.shape[1:]), rest], dim=2)
        return self.encode(full.flatten(0, 1), eot_pos.repeat(g)).view(g, c, -1)

    def fingerprint(self) -> str:
        return self._fingerprint()
