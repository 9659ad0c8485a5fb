"""fpp_init.apply on ZERO's MaPLe path (stand-in: tests/standins/zero.py, FarinaMatteo/zero c609f7c).

ZERO tunes nothing and has no reset: the design's invariant is that every text feature ZERO uses is computed
from the installed ctx (its caches are dropped on every write). Exactness is judged on the fp32 twin of the
model (as the harness does); the fp16 model as run is checked against the fp64 trajectory.
"""

from __future__ import annotations

import copy
import re
import statistics
from pathlib import Path

import pytest
import torch
from helpers import (
    CFG,
    FAST,
    assert_state,
    callable_tower,
    cpu_half_matmul,
    flags,
    load_trained,
    state_of,
    to_float64,
    trajectory,
)
from standins.maple import get_maple
from standins.tpt import TextEncoder
from standins.zero import build_zero, get_zero, get_zero_tta

import fpp_init
from fpp_init._runtime import frozen
from fpp_init.adapters import detect
from fpp_init.adapters.zero import ZERO_WARNING
from fpp_init.algorithm import optimize_flat_prompt
from fpp_init.config import FPPConfig
from fpp_init.errors import AdapterError, PromptMismatchError
from fpp_init.towers import CallableTextTower, CausalTextTower, openai_spec

pytestmark = pytest.mark.slow  # the upstream stand-in models: part of the full suite; skipped by -m 'not slow'

NAMES_A = ["banded", "blotchy", "braided", "bubbly"]
NAMES_B = ["golden_retriever", "tabby cat", "sea lion"]


def trained_zero(clip: torch.nn.Module, names: list[str], tta: bool = False, half: bool = False) -> torch.nn.Module:
    """ZERO after run.py's set-up: MaPLe weights loaded (load_pretrained), class set built."""
    model = (get_zero_tta if tta else get_zero)(clip, names, half=half)
    load_trained(model.model if tta else model)
    return model


def own_tower(model: torch.nn.Module, dtype: torch.dtype = torch.float32) -> CallableTextTower:
    """ZERO's own TextEncoder with its deep prompts as the learner holds them (the encoder rounds them)."""
    pl, enc = model.prompt_learner, model.text_encoder
    deep = [p.detach() for p in pl.compound_prompts_text]
    return callable_tower(lambda x, t: enc(x, t, deep), pl.ctx.shape[-1], dtype)


def zero_direct(model: torch.nn.Module, predefined: torch.Tensor, cfg: FPPConfig = CFG) -> torch.Tensor:
    """FPP by hand through ZERO's text encoder on the prompts it encodes (no adapter code)."""
    design = detect(model)
    with frozen([model.text_encoder]):
        return optimize_flat_prompt(own_tower(model), design.embedded(), predefined, cfg, progress=False).ctx


def test_zero_installs_fpp_pretrained_through_its_encoder_with_rounded_deep_prompts(clip3: torch.nn.Module) -> None:
    model = trained_zero(clip3, NAMES_A)
    pl = model.prompt_learner
    maple_ctx = pl.ctx.detach().clone()
    assert not hasattr(pl, "ctx_init_state") and not hasattr(pl, "tokenized_prompts")
    with pytest.warns(fpp_init.errors.BeyondPaperWarning, match="ZERO never tunes the prompt"):
        handle = fpp_init.apply(model, **FAST)
    assert handle.design == "zero_maple" and isinstance(handle.adapter.tower(), CausalTextTower)
    torch.testing.assert_close(handle.predefined, maple_ctx)  # aligned with the loaded MaPLe ctx
    torch.testing.assert_close(handle.prompt.ctx, zero_direct(model, maple_ctx), atol=1e-5, rtol=0)
    assert torch.equal(pl.ctx.detach(), handle.prompt.ctx)  # written in place
    assert not hasattr(pl, "ctx_init_state")  # no reset state is created
    assert handle.prompt.template is None and handle.prompt.classnames is None  # the CustomCLIP keeps no names
    assert all(p.grad is None for p in pl.parameters())

    # the rounding matters: the encoder sees deep[i].half(); a tower given the fp32 deep prompts does not match it
    design = handle.adapter
    x = design.embedded().assemble(maple_ctx)
    eot = design.embedded().eot_pos
    with torch.no_grad():
        theirs = model.text_encoder(x, model.tokenized_prompts, list(pl.compound_prompts_text))
        fast = design.tower().encode(x, eot)
        unrounded = {i + 1: p.detach() for i, p in enumerate(pl.compound_prompts_text)}
        enc = model.text_encoder
        spec = openai_spec(
            enc.transformer, enc.positional_embedding, enc.ln_final, enc.text_projection, deep_prompts=unrounded
        )
        plain = CausalTextTower(spec).encode(x, eot)
    near, far = float((fast - theirs).abs().max()), float((plain - theirs).abs().max())
    scale = float(theirs.abs().max())
    assert near <= 2e-6 * scale and far > 50 * near, (near, far, scale)  # fp32 rounding vs a real difference


def test_zero_text_features_follow_the_installed_ctx(clip3: torch.nn.Module) -> None:
    tta = trained_zero(clip3, NAMES_A, tta=True)
    model, pl = tta.model, tta.model.prompt_learner
    maple_ctx = pl.ctx.detach().clone()
    views = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        model(views)  # CustomCLIP.forward caches text_features from the MaPLe ctx
    assert "text_features" in vars(model)
    with pytest.warns(fpp_init.errors.BeyondPaperWarning):
        handle = fpp_init.apply(tta, **FAST)  # the TTA module itself: the design also knows its z_txt
    assert handle.model is model and "text_features" not in vars(model)  # the stale cache is gone
    assert handle.prompt.classnames == NAMES_A  # from the TTA module
    tta(views)
    tta(views)  # two samples: ZERO tunes nothing
    with torch.no_grad():
        fpp_features = model.get_text_features()
        pl.ctx.copy_(maple_ctx)
        maple_features = model.get_text_features()
        pl.ctx.copy_(handle.prompt.ctx)
    assert torch.equal(tta.z_txt, fpp_features) and not torch.allclose(tta.z_txt, maple_features, atol=1e-3)
    assert torch.equal(pl.ctx.detach(), handle.prompt.ctx)

    assert fpp_init.apply(model, **FAST) is handle  # again, through the CustomCLIP: the same installation
    assert not hasattr(tta, "z_txt")  # the remembered TTA module's cache is dropped too
    tta(views)
    tta.prepare_for_training(NAMES_B)  # another class set: their reset_classnames, hooked
    assert not hasattr(tta, "z_txt") and "text_features" not in vars(model)
    torch.testing.assert_close(handle.prompt.ctx, zero_direct(model, maple_ctx), atol=1e-5, rtol=0)
    assert torch.equal(pl.ctx.detach(), handle.prompt.ctx)
    tta(views)
    assert tta.z_txt.shape[0] == len(NAMES_B)

    handle.remove()
    assert torch.equal(pl.ctx.detach(), maple_ctx) and not hasattr(tta, "z_txt")
    assert "reset_classnames" not in vars(model) and "_fpp_init_state" not in vars(pl)
    tta(views)
    with torch.no_grad():
        torch.testing.assert_close(tta.z_txt, model.get_text_features())


def test_zero_apply_twice_remove_and_caller_state(clip3: torch.nn.Module) -> None:
    model = trained_zero(clip3, NAMES_A)
    model.text_encoder.transformer.resblocks[0].requires_grad_(False)  # a mix, as found
    model.image_encoder.eval()
    model.train()
    before = state_of(model)
    torch.manual_seed(5)
    rng = torch.get_rng_state()
    found = flags(model)
    with pytest.warns(fpp_init.errors.BeyondPaperWarning):
        h1 = fpp_init.apply(torch.nn.DataParallel(model), **FAST)
    assert h1.model is model
    after = copy.deepcopy(model.state_dict())
    assert fpp_init.apply(model, **FAST) is h1  # updates the installation (warned once, when made)
    assert_state(model, after)
    assert flags(model) == found and torch.equal(torch.get_rng_state(), rng)
    h1.remove()
    assert_state(model, before)
    assert flags(model) == found and torch.equal(torch.get_rng_state(), rng)


def test_zero_prompt_files_install_and_are_checked(clip3: torch.nn.Module, tmp_path: Path) -> None:
    model = trained_zero(clip3, NAMES_A)
    with pytest.warns(fpp_init.errors.BeyondPaperWarning):
        own = fpp_init.apply(model, **FAST).prompt
    path = own.save(tmp_path / "zero.safetensors")
    fresh = trained_zero(clip3, NAMES_A)
    with pytest.warns(fpp_init.errors.BeyondPaperWarning):
        handle = fpp_init.apply(fresh, str(path))
    assert torch.equal(fresh.prompt_learner.ctx.detach(), own.ctx)
    handle.remove()
    plain = fpp_init.pretrain_flat_prompt(clip3, NAMES_A, template="a photo", steps=1, progress=False)
    ctx = fresh.prompt_learner.ctx.detach().clone()
    with (
        pytest.raises(PromptMismatchError, match="deep text prompts"),
        pytest.warns(fpp_init.errors.BeyondPaperWarning),
    ):
        fpp_init.apply(fresh, plain)  # the tower's fingerprint includes the (rounded) deep prompts
    assert torch.equal(fresh.prompt_learner.ctx.detach(), ctx)


class ClipWrapper(torch.nn.Module):
    """ZERO without --maple (``clip/custom_clip.py`` ``ClipWrapper``): a tokenized hard prompt, no context vectors."""

    def __init__(self, clip: torch.nn.Module) -> None:
        super().__init__()
        self.text_encoder = TextEncoder(clip)
        self.token_embedding = clip.token_embedding
        self.image_encoder = clip.visual


def test_zero_refusals_say_what_to_do(clip3: torch.nn.Module) -> None:
    early = build_zero(clip3)
    load_trained(early)
    ctx = early.prompt_learner.ctx.detach().clone()
    with pytest.raises(AdapterError, match=r"before its class set.*after tta_module\.prepare_for_training"):
        fpp_init.apply(early, **FAST)
    assert torch.equal(early.prompt_learner.ctx.detach(), ctx) and "reset_classnames" not in vars(early)
    with pytest.raises(AdapterError, match="needs a TPT-style model"):
        fpp_init.apply(ClipWrapper(clip3), **FAST)
    assert detect(get_maple(clip3, NAMES_A)).name == "maple"  # PromptAlign's learner keeps its reset state


@pytest.mark.skipif(not cpu_half_matmul(), reason="this torch has no fp16 matmul on the CPU")
def test_zero_as_run_in_fp16_is_no_further_from_fp64_than_its_own_encoder(clip3: torch.nn.Module) -> None:
    model = trained_zero(clip3, NAMES_A, half=True)
    pl = model.prompt_learner
    assert pl.ctx.dtype == torch.float16 and pl.compound_prompts_text[0].dtype == torch.float32
    twin = to_float64(model)
    for m in twin.modules():  # the dtypes kept as plain attributes (fp16 here; to_float64 converts fp32 ones)
        for k, v in list(vars(m).items()):
            if v is torch.float16:
                setattr(m, k, torch.float64)
    d16, d64 = detect(model), detect(twin)
    fast16 = d16.tower()
    assert isinstance(fast16, CausalTextTower) and fast16.dtype == torch.float16
    fast, own = [], []
    for seed in (1, 2, 3):
        reference = trajectory(d64, own_tower(d64.root, torch.float64), seed)
        fast.append(float((trajectory(d16, fast16, seed) - reference).abs().max()))
        own.append(float((trajectory(d16, own_tower(model, torch.float16), seed) - reference).abs().max()))
    # both are fp16 roundings of the same trajectory (either can be the nearer one per seed): the margin of
    # tests/test_adapter_precision.py; a difference in the maths would be orders of magnitude more
    assert max(fast) < 5e-2 and statistics.median(fast) <= 2.0 * statistics.median(own), (fast, own)

    with pytest.warns(fpp_init.errors.BeyondPaperWarning, match=re.escape(ZERO_WARNING)):
        handle = fpp_init.apply(model, **FAST)
    assert handle.prompt.ctx.dtype == torch.float32  # the fp32 master, installed rounded
    assert torch.equal(pl.ctx.detach(), handle.prompt.ctx.half())
