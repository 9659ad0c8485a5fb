"""Every design's fast path against fp64: pretraining on the live model through the fast tower must end as
close to the fp64 trajectory as the same run through the codebase's own text encoder in fp32.

The fp64 reference runs the codebase's own encoder on an fp64 copy of the model (``helpers.to_float64``);
the fast tower of that copy runs in fp64 too and must equal it to fp64 rounding (the same maths), so what
separates the fp32 runs from it is rounding alone. MaPLe runs at prompt depth 3 on a 3-layer tower (deep
prompts before blocks 1 and 2), where the ctx reaches the EOS only through block 0.
"""

from __future__ import annotations

import statistics

import pytest
import torch
from helpers import callable_tower, load_trained, to_float64, trajectory
from standins import covered_designs

from fpp_init.adapters import PromptDesign, detect, registered_designs
from fpp_init.towers import CallableTextTower, CausalTextTower

NAMES = ["banded", "blotchy", "chequered_flag", "great white shark"]
SEEDS = (1, 2, 3, 4, 5)  # 8 steps each (helpers.trajectory)
SERVED = [d.name for d in registered_designs() if d.refusal is None]
#: the fast path's median distance from fp64 (over the seeds) may exceed the codebase encoder's by this
#: factor. Per run both are a few fp32 ulps of the ctx, either can be the nearer one (it changes with the
#: seed) and AdamW now and then amplifies one run's rounding tenfold, so the test compares medians. A
#: difference in the maths is caught by the fp64 check (the same trajectory to 1e-11), not by this factor.
MARGIN = 2.0


def own_encoder(design: PromptDesign) -> CallableTextTower:
    """The codebase's own text encoder, called on every position (no fast path)."""
    dtype = design.prefix.dtype
    return callable_tower(design.encode, design.width, dtype)


@pytest.mark.parametrize("name", SERVED)
def test_fast_path_is_as_close_to_fp64_as_the_codebase_encoder(clip3: torch.nn.Module, name: str) -> None:
    model = covered_designs()[name](clip3, NAMES)
    load_trained(model)  # a trained prompt learner (CoCoOp, MaPLe align with it)
    d32, d64 = detect(model), detect(to_float64(model))
    fast32, fast64 = d32.tower(), d64.tower()
    assert isinstance(fast32, CausalTextTower) and isinstance(fast64, CausalTextTower)
    assert fast64.dtype == torch.float64
    if name == "maple":
        assert len(fast32.spec.deep_prompts) == 2

    fast, own = [], []
    for seed in SEEDS:
        reference = trajectory(d64, own_encoder(d64), seed)
        assert float((reference[-1] - reference[0]).abs().max()) > 1e-2  # the ctx really moved
        if seed == SEEDS[0]:  # the fp64 fast path is the same maths as the codebase's encoder
            torch.testing.assert_close(trajectory(d64, fast64, seed), reference, atol=1e-11, rtol=0)
        fast.append(float((trajectory(d32, fast32, seed) - reference).abs().max()))  # over every step
        own.append(float((trajectory(d32, own_encoder(d32), seed) - reference).abs().max()))
    assert 0 < max(own) < 1e-5 and max(fast) < 1e-5
    assert statistics.median(fast) <= MARGIN * statistics.median(own), (
        f"{name}: fast path {fast} from fp64, the codebase's encoder {own}"
    )
