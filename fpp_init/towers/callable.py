from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .openai import fingerprint_modules


class CallableTextTower:
    """A tower around any TPT-style ``text_encoder(prompts, tokenized_prompts)``.

    The general, slower path: it runs the encoder on all ``L`` positions.
    ``tokenized_prompts`` is only used for ``argmax`` (the EOS position), so a
    one-hot row at ``eot`` is passed.
    """

    supports_shared_prefix = False

    def __init__(
        self,
        encoder: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        *,
        width: int,
        context_length: int,
        dtype: torch.dtype,
        modules: list[nn.Module] | None = None,
    ) -> None:
        self._encoder = encoder
        self.width = width
        self.context_length = context_length
        self.dtype = dtype
        self._modules = modules or []

    def encode(self, x: torch.Tensor, eot: torch.Tensor) -> torch.Tensor:
        b, length = x.shape[0], x.shape[1]
        if length < self.context_length:  # the encoder adds all L positional embeddings
            pad = x.new_zeros(b, self.context_length - length, x.shape[2])
            x = torch.cat([x, pad], dim=1)
            length = self.context_length
        tokens = torch.zeros(b, length, dtype=torch.long, device=x.device)
        tokens[torch.arange(b, device=x.device), eot.to(x.device)] = 1
        out = self._encoder(x.to(self.dtype), tokens)
        if isinstance(out, tuple):
            out = out[0]
        return out

    def encode_shared_prefix(self, prefix: torch.Tensor, rest: torch.Tensor, eot: torch.Tensor) -> torch.Tensor:
        g, c = rest.shape[0], rest.shape[1]
        full = torch.cat([prefix[:, None].expand(g, c, *prefix.shape[1:]), rest], dim=2)
        return self.encode(full.flatten(0, 1), eot.repeat(g)).view(g, c, -1)

    def fingerprint(self) -> str:
        return fingerprint_modules(self._modules)
