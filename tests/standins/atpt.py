"""Layout stand-in of A-TPT: MB-Shihab-Aaqil-Ahamed/A-TPT at d76ecf6, ``clip/custom_clip.py`` (C-TPT's
``ClipTestTimeTuning``, i.e. TPT's layout) and ``atpt_classification.py`` ``test_time_tuning``
(``--run_type tpt_atpt``).

The live model is TPT's (``standins.tpt``) plus A-TPT's angular-diversity terms: a plain flag ``ang_norm_cal``
set by the loop and, when it is on, ``inference()`` sets ``min_ang_norm_mean`` / ``min_ang_norm_mean_training``
(``-acos`` of each class's largest cosine to another class, clamped to ``tau``, averaged). Served by the TPT
design.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from .tpt import ClipTestTimeTuning


def min_ang_norm_mean(text_features: torch.Tensor, tau: float = 0.99999) -> torch.Tensor:
    """A-TPT's ``mean(-acos(clamp(max_j!=i cos(w_i, w_j), -tau, tau)))``."""
    w = F.normalize(text_features, p=2, dim=1)
    wwt = w @ w.t()
    wwt = wwt - 2.0 * torch.diag(torch.diag(wwt))
    return (-torch.acos(wwt.max(dim=1)[0].clamp(-tau, tau))).mean()


class ATPTModel(ClipTestTimeTuning):
    ang_norm_cal = False

    def inference(self, image_features: torch.Tensor) -> torch.Tensor:
        """Logits of (already encoded) image features; sets A-TPT's terms when ``ang_norm_cal`` is on."""
        text = self.get_text_features()
        if self.ang_norm_cal:
            self.min_ang_norm_mean_training = min_ang_norm_mean(text)
            self.min_ang_norm_mean = float(self.min_ang_norm_mean_training)
        return self.logit_scale.exp() * F.normalize(image_features, dim=-1) @ text.t()


def tuning_step(model: ATPTModel, images: torch.Tensor, optimizer: torch.optim.Optimizer, lam: float = 80.0) -> None:
    """``test_time_tuning`` with ``--run_type tpt_atpt --lambda_term 80 --tau_term 0.99999`` (one step): the
    entropy of the averaged view probabilities, then ``-lambda * min_ang_norm_mean`` of ``get_text_features()``."""
    probs = model.inference(images).softmax(-1).mean(0)
    loss = -(probs * probs.log()).sum() - lam * min_ang_norm_mean(model.get_text_features())
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def get_atpt(clip_model: nn.Module, classnames: list[str], **kw: Any) -> ATPTModel:
    return ATPTModel(copy.deepcopy(clip_model), classnames, **kw)
