"""The identity of a pretraining run: everything that determines its result, and the key hashed from it."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property

import torch

from .. import constants as const
from .._version import __version__
from ..config import FPPConfig
from .fpp_prompt import FPPPrompt

__all__ = ["RunIdentity"]


def _tensor_digest(t: torch.Tensor | None) -> str | None:
    if t is None:
        return None
    t = t.detach().to("cpu", torch.float32).contiguous()
    return hashlib.sha256(str(tuple(t.shape)).encode() + t.numpy().tobytes()).hexdigest()


@dataclass(frozen=True)
class RunIdentity:
    """Everything that determines a pretraining result: what a run is. Its :attr:`key` names the
    run's cache entry, is what a checkpoint must have been written for, and what every rank of a
    distributed run must agree on."""

    fingerprint: str
    classnames: list[str] | None
    num_classes: int
    template: str | None  # or a description of the live model's prompt layout
    predefined: torch.Tensor
    init_ctx: torch.Tensor | None
    config: FPPConfig

    @cached_property  # read several times per run (cache lookup and store, checkpoint, ranks); hashed once
    def key(self) -> str:
        payload = {
            "format": const.FORMAT_VERSION,
            "fpp_init": __version__,
            "fingerprint": self.fingerprint,
            "classnames": self.classnames,
            "num_classes": self.num_classes,
            "template": self.template,
            "predefined": _tensor_digest(self.predefined),
            "init_ctx": _tensor_digest(self.init_ctx),
            "config": self.config.result_dict(),
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]

    def matches(self, prompt: FPPPrompt, recorded_key: str | None) -> bool:
        """Whether a prompt file's own metadata (and the key it records) says it is this run's result."""
        return (
            recorded_key == self.key
            and prompt.fingerprint == self.fingerprint
            and prompt.classnames == self.classnames
            and prompt.num_classes == self.num_classes
            and self.config.matches_recorded(prompt.config, self.num_classes)
        )
