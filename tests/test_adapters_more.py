"""fpp_init.apply on TPT's CoCoOp path and on MaPLe / PromptAlign (stand-ins in tests/standins/)."""

from __future__ import annotations

import copy

import pytest
import torch
from helpers import CFG, FAST, assert_state, callable_tower, flags, load_trained, state_of
from standins import TextEncoder, get_cocoop, get_maple

import fpp_init
from fpp_init._runtime import frozen
from fpp_init.algorithm import EmbeddedPrompts, optimize_flat_prompt
from fpp_init.errors import AdapterError, PromptMismatchError

pytestmark = pytest.mark.slow  # the upstream stand-in models: part of the full suite; skipped by -m 'not slow'

NAMES_A = ["banded", "blotchy", "braided", "bubbly"]
NAMES_B = ["golden_retriever", "tabby cat", "sea lion"]


def embedded(learner: torch.nn.Module) -> EmbeddedPrompts:
    return EmbeddedPrompts(learner.token_prefix, learner.token_suffix, learner.tokenized_prompts.argmax(-1))


def images(n: int = 3) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(0))


# -- CoCoOp (TPT --cocoop) ------------------------------------------------------------------------
def cocoop_direct(model: torch.nn.Module, predefined: torch.Tensor) -> torch.Tensor:
    """FPP by hand on the live text encoder and prompt_generator's prompts (no adapter code)."""
    pg, enc = model.prompt_generator, model.text_encoder
    tower = callable_tower(lambda x, t: enc(x, t), 128)
    with frozen([enc]):
        return optimize_flat_prompt(tower, embedded(pg), predefined, CFG, progress=False).ctx


def test_cocoop_untrained_equals_pretrain_flat_prompt(tiny_clip: torch.nn.Module) -> None:
    # ctx = the words "a photo of a": exactly the front door's FPP for that template
    model = get_cocoop(tiny_clip, NAMES_A)
    handle = fpp_init.apply(model, **FAST)
    ref = fpp_init.pretrain_flat_prompt(tiny_clip, NAMES_A, template="a photo of a", steps=3, seed=1, progress=False)
    assert handle.design == "cocoop"
    torch.testing.assert_close(handle.prompt.ctx, ref.ctx, atol=1e-5, rtol=0)
    assert handle.prompt.fingerprint == ref.fingerprint


def test_cocoop_tta_start_is_the_fpp_ctx_plus_the_meta_net_bias(tiny_clip: torch.nn.Module) -> None:
    model = get_cocoop(tiny_clip, NAMES_A)
    load_trained(model)  # TPT's --cocoop always loads a trained CoCoOp checkpoint first
    pg = model.prompt_generator
    trained = pg.ctx.detach().clone()
    handle = fpp_init.apply(model, **FAST)
    torch.testing.assert_close(handle.predefined, trained)  # aligned with the trained ctx
    torch.testing.assert_close(handle.prompt.ctx, cocoop_direct(model, trained), atol=1e-5, rtol=0)
    assert not torch.allclose(handle.prompt.ctx, trained, atol=1e-4)
    assert handle.prompt.template is None and not hasattr(pg, "ctx_init_state")
    torch.testing.assert_close(pg.ctx.detach(), handle.prompt.ctx)

    x = images()
    for aug in (True, False):  # what TPT's loop starts tuning from: pgen_ctx = gen_ctx(images, args.tpt)
        feats, pgen_ctx = model.gen_ctx(x, aug)
        avg = feats[:1] if aug else feats.mean(0, keepdim=True)
        with torch.no_grad():
            bias = pg.meta_net(avg)
        assert pgen_ctx.shape == (1, 4, 128)
        torch.testing.assert_close(pgen_ctx[0] - bias, handle.prompt.ctx, atol=1e-6, rtol=0)
    twin = get_cocoop(tiny_clip, NAMES_A)
    load_trained(twin)
    with torch.no_grad():
        twin.prompt_generator.ctx.copy_(handle.prompt.ctx)
    torch.testing.assert_close(model.gen_ctx(x, True)[1], twin.gen_ctx(x, True)[1])


def test_cocoop_per_dataset_hook_stays_aligned_with_the_trained_ctx(tiny_clip: torch.nn.Module) -> None:
    model = get_cocoop(tiny_clip, NAMES_A)
    load_trained(model)
    pg = model.prompt_generator
    trained = pg.ctx.detach().clone()
    handle = fpp_init.apply(model, **FAST)
    first = handle.prompt.ctx.clone()
    pg.reset_classnames(NAMES_B, "ViT-B/16")  # TPT: model.prompt_generator.reset_classnames(...)
    second = handle.prompt.ctx
    assert not torch.allclose(first, second, atol=1e-4)
    torch.testing.assert_close(pg.ctx.detach(), second)
    torch.testing.assert_close(second, cocoop_direct(model, trained), atol=1e-5, rtol=0)
    pg.reset_classnames(NAMES_A, "ViT-B/16")
    torch.testing.assert_close(pg.ctx.detach(), first)


def test_cocoop_optimizer_twice_remove_and_caller_state(tiny_clip: torch.nn.Module) -> None:
    model = get_cocoop(tiny_clip, NAMES_A)
    load_trained(model)
    for name, param in model.named_parameters():  # what TPT's --cocoop does
        if "text_encoder" not in name:
            param.requires_grad_(False)
    model.prompt_generator.ctx.requires_grad_(True)
    model.image_encoder.eval()
    model.train()
    pg = model.prompt_generator
    optimizer = torch.optim.AdamW(pg.parameters(), 5e-3)
    before = state_of(model)
    torch.manual_seed(7)
    rng = torch.get_rng_state()
    found = flags(model)

    h1 = fpp_init.apply(model, **FAST)
    assert flags(model) == found and torch.equal(torch.get_rng_state(), rng)
    after1 = copy.deepcopy(model.state_dict())
    assert fpp_init.apply(model, **FAST) is h1
    assert_state(model, after1)
    assert optimizer.param_groups[0]["params"][0] is pg.ctx
    feats = model.image_encoder(images(2))
    pg(feats, ctx_only=True).square().sum().backward()
    optimizer.step()
    assert not torch.allclose(pg.ctx.detach(), h1.prompt.ctx, atol=1e-6)  # the installed Parameter moved

    h1.remove()
    assert "reset_classnames" not in pg.__dict__ and "_fpp_init_state" not in pg.__dict__
    assert not hasattr(pg, "ctx_init_state")
    assert_state(model, before)
    assert flags(model) == found and torch.equal(torch.get_rng_state(), rng)


def test_cocoop_inside_data_parallel(tiny_clip: torch.nn.Module) -> None:
    model = get_cocoop(tiny_clip, NAMES_A)
    handle = fpp_init.apply(torch.nn.DataParallel(model), **FAST)
    assert handle.model is model and handle.design == "cocoop"


# -- MaPLe / PromptAlign ------------------------------------------------------------------------
def maple_direct(model: torch.nn.Module, predefined: torch.Tensor, deep: list[torch.Tensor] | None = None) -> object:
    """FPP by hand through the MaPLe text encoder with the given deep prompts (default: the model's)."""
    pl, enc = model.prompt_learner, model.text_encoder
    deep = [p.detach().clone() for p in pl.compound_prompts_text] if deep is None else deep
    tower = callable_tower(lambda x, t: enc(x, t, deep), 128)
    with frozen([enc]):
        return optimize_flat_prompt(tower, embedded(pl), predefined, CFG, progress=False)


def test_maple_without_deep_prompts_equals_pretrain_flat_prompt(tiny_clip: torch.nn.Module) -> None:
    # depth 1 (no deep prompts) and n_ctx 4: the MaPLe text encoder is plain CLIP maths
    model = get_maple(tiny_clip, NAMES_A, n_ctx=4, prompt_depth=1)
    handle = fpp_init.apply(model, **FAST)
    ref = fpp_init.pretrain_flat_prompt(tiny_clip, NAMES_A, template="a photo of a", steps=3, seed=1, progress=False)
    assert handle.design == "maple"
    torch.testing.assert_close(handle.prompt.ctx, ref.ctx, atol=1e-5, rtol=0)


def test_maple_pretrains_through_the_deep_prompts(clip3: torch.nn.Module, caplog: pytest.LogCaptureFixture) -> None:
    model = get_maple(clip3, NAMES_A)  # n_ctx 2 ("a photo"), suffix "of a <class>."
    load_trained(model)  # updates ctx only: ctx_init_state is stale until tpt()'s set_prompt_inits()
    pl = model.prompt_learner
    assert pl.token_prefix.shape[1] == 1 and pl.ctx.shape == (2, 128) and len(pl.compound_prompts_text) == 2
    trained = pl.ctx.detach().clone()
    with pytest.warns(fpp_init.errors.BeyondPaperWarning, match=r"beyond the paper.*") as record:
        handle = fpp_init.apply(model, **FAST)
    assert "proj" in str(record[0].message)
    torch.testing.assert_close(handle.predefined, trained)  # aligned with the original (trained) ctx
    direct = maple_direct(model, trained)
    torch.testing.assert_close(handle.prompt.ctx, direct.ctx, atol=1e-5, rtol=0)
    # the deep prompts matter: ignoring them gives another prompt
    zero = [torch.zeros(2, 128), torch.zeros(2, 128)]
    assert not torch.allclose(maple_direct(model, trained, zero).ctx, direct.ctx, atol=1e-4)
    assert all(p.grad is None for p in pl.parameters())  # nothing leaked into the learner's grads
    longer = fpp_init.apply(model, **dict(FAST, steps=15))  # update in place with a longer run
    assert longer is handle and longer.prompt.history["loss"][-1] < longer.prompt.history["loss"][0]


def test_maple_tta_start_is_the_fpp_ctx_before_and_after_set_prompt_inits(clip3: torch.nn.Module) -> None:
    model = get_maple(clip3, NAMES_A)
    load_trained(model)
    pl = model.prompt_learner
    deep = [p.detach().clone() for p in pl.compound_prompts_text]
    proj = pl.proj.weight.detach().clone()
    for name, param in model.named_parameters():  # trainer.tpt(): freeze all but the prompt learner
        if "prompt_learner" not in name:
            param.requires_grad_(False)
    optimizer = torch.optim.AdamW(pl.parameters(), 4e-2)
    handle = fpp_init.apply(model, **FAST)  # the added line, before trainer.tpt()
    model.set_prompt_inits()  # trainer.tpt() snapshots the current prompts
    with torch.no_grad():
        model.reset()  # before each test sample
    torch.testing.assert_close(pl.ctx.detach(), handle.prompt.ctx)
    torch.testing.assert_close(pl.ctx_init_state, handle.prompt.ctx)
    assert all(torch.equal(a, b.detach()) for a, b in zip(deep, pl.compound_prompts_text, strict=True))
    assert torch.equal(pl.proj.weight.detach(), proj)  # the image-branch projection is untouched
    assert optimizer.param_groups[0]["params"][0] is pl.ctx
    model.get_text_features().square().sum().backward()
    optimizer.step()
    assert not torch.allclose(pl.ctx.detach(), handle.prompt.ctx, atol=1e-6)
    with torch.no_grad():
        model.reset()
    torch.testing.assert_close(pl.ctx.detach(), handle.prompt.ctx)

    late = get_maple(clip3, NAMES_A)  # apply after set_prompt_inits: reset() restores FPP too
    load_trained(late)
    late.set_prompt_inits()
    h = fpp_init.apply(late, **FAST)
    with torch.no_grad():
        late.reset()
    torch.testing.assert_close(late.prompt_learner.ctx.detach(), h.prompt.ctx)
    torch.testing.assert_close(h.prompt.ctx, handle.prompt.ctx)


def test_maple_twice_remove_caller_state_and_per_dataset(clip3: torch.nn.Module) -> None:
    model = get_maple(clip3, NAMES_A)
    load_trained(model)
    pl = model.prompt_learner
    model.image_encoder.eval()
    model.train()
    before = state_of(model)
    init_state = pl.ctx_init_state
    trained = pl.ctx.detach().clone()
    torch.manual_seed(3)
    rng = torch.get_rng_state()
    found = flags(model)

    h1 = fpp_init.apply(torch.nn.DataParallel(model), **FAST)
    assert h1.model is model
    after1 = copy.deepcopy(model.state_dict()), pl.ctx_init_state.clone()
    assert fpp_init.apply(model, **FAST) is h1
    assert_state(model, after1[0])
    assert torch.equal(pl.ctx_init_state, after1[1])
    assert flags(model) == found and torch.equal(torch.get_rng_state(), rng)

    model.reset_classnames(NAMES_B, None)  # not called by PromptAlign's tpt(); the hook still works
    torch.testing.assert_close(h1.prompt.ctx, maple_direct(model, trained).ctx, atol=1e-5, rtol=0)
    torch.testing.assert_close(pl.ctx_init_state, h1.prompt.ctx)
    model.reset_classnames(NAMES_A, None)

    h1.remove()
    assert "reset_classnames" not in pl.__dict__ and pl.ctx_init_state is init_state
    assert_state(model, before)
    assert flags(model) == found and torch.equal(torch.get_rng_state(), rng)


def test_maple_fingerprint_includes_the_deep_prompts(clip3: torch.nn.Module) -> None:
    plain = fpp_init.pretrain_flat_prompt(clip3, NAMES_A, template="a photo", steps=1, progress=False)
    model = get_maple(clip3, NAMES_A)
    ctx = model.prompt_learner.ctx.detach().clone()
    with pytest.raises(PromptMismatchError, match="deep text prompts"):
        fpp_init.apply(model, plain)
    assert torch.equal(model.prompt_learner.ctx.detach(), ctx)
    handle = fpp_init.apply(model, plain, strict=False)
    torch.testing.assert_close(model.prompt_learner.ctx.detach(), plain.ctx)
    handle.remove()
    own = fpp_init.apply(model, **FAST).prompt
    handle = fpp_init.apply(get_maple(clip3, NAMES_A), own)  # same tower and deep prompts: accepted
    assert handle.prompt is own


def test_malformed_new_designs_are_refused(tiny_clip: torch.nn.Module) -> None:
    model = get_maple(tiny_clip, NAMES_A)
    model.text_encoder = TextEncoder(tiny_clip)  # deep prompts but a two-argument encoder
    with pytest.raises(AdapterError, match="compound_prompts_deeper_text"):
        fpp_init.apply(model, **FAST)
    cocoop = get_cocoop(tiny_clip, NAMES_A)
    del cocoop.prompt_generator.token_suffix
    with pytest.raises(AdapterError, match="token_suffix"):
        fpp_init.apply(cocoop, **FAST)
    assert "reset_classnames" not in cocoop.prompt_generator.__dict__


@pytest.mark.parametrize("depth", [1, 3])
def test_maple_runs_on_the_fast_exact_path(clip3: torch.nn.Module, depth: int) -> None:
    """MaPLe's deep prompts replace the ctx rows of every class alike, so the shared-prefix, truncated tower
    applies: its features and FPP gradients equal the model's own text encoder."""
    from fpp_init.adapters import detect
    from fpp_init.towers import CausalTextTower

    model = get_maple(clip3, NAMES_A, prompt_depth=depth)
    load_trained(model)
    live = detect(model)
    tower = live.tower()
    assert isinstance(tower, CausalTextTower) and len(tower.spec.deep_prompts) == depth - 1
    pl, enc = model.prompt_learner, model.text_encoder
    deep = [p.detach() for p in pl.compound_prompts_text]
    p = live.embedded()
    ctx = pl.ctx.detach().clone().requires_grad_()
    weights = torch.linspace(-1, 1, 64)
    ref = enc(p.assemble(ctx), pl.tokenized_prompts, deep)
    (ref * weights).sum().backward()
    ref_grad, ctx.grad = ctx.grad, None
    head = torch.cat([p.prefix[0], ctx], 0)[None]
    fast = tower.encode_shared_prefix(head, p.suffix[None], p.eot_pos)[0]
    (fast * weights).sum().backward()
    torch.testing.assert_close(fast, ref.detach(), atol=1e-5, rtol=1e-5)
    # float32 rounding, relative to the gradient's scale (the module's own fp32 gradient is as far from fp64)
    scale = float(ref_grad.abs().max())
    torch.testing.assert_close(ctx.grad, ref_grad, atol=1e-6 * scale, rtol=0)
    with torch.no_grad():
        torch.testing.assert_close(tower.encode(p.assemble(ctx), p.eot_pos), ref.detach(), atol=1e-5, rtol=1e-5)
