"""One-line FPP initialisation for live TPT-family models (TPT, C-TPT, O-TPT, DynaPrompt...).

``fpp_init.apply(model)`` detects the design from the model object, pretrains (or installs a
given) FPP prompt in place and keeps it right across ``reset_classnames``. Adapters never
import ``clip``: everything comes from the live model.
"""

from __future__ import annotations

from ._apply import FPPHandle, apply

__all__ = ["apply", "FPPHandle"]
