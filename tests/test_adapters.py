"""fpp_init.apply on stand-ins of the TPT-family live models (tests/standins/)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from helpers import FAST, assert_state, build_tiny_clip, callable_tower, clip_tower, flags, reference, state_of
from standins import IT3AModel, get_cocoop, get_coop, get_maple

import fpp_init
from fpp_init._runtime import frozen
from fpp_init.algorithm import EmbeddedPrompts, optimize_flat_prompt
from fpp_init.config import FPPConfig
from fpp_init.errors import AdapterError, PromptMismatchError

pytestmark = pytest.mark.slow  # the upstream stand-in models: part of the full suite; skipped by -m 'not slow'

NAMES_A = ["banded", "blotchy", "braided", "bubbly"]
NAMES_B = ["golden_retriever", "tabby cat", "sea lion"]
KINDS = ["tpt", "fpp_reference", "dynaprompt"]  # stand-in kinds, named as the designs


def effective_init(model: torch.nn.Module) -> torch.Tensor:
    """The ctx the model's prompts contain right after reset() (what TPT tunes from)."""
    pl = model.prompt_learner
    with torch.no_grad():
        model.reset()
        prompts = pl()
    start = pl.token_prefix.shape[-2]
    return prompts[0, start : start + pl.n_ctx].float()


@pytest.mark.parametrize("kind", KINDS)
def test_live_pretraining_equals_pretrain_flat_prompt(tiny_clip: torch.nn.Module, kind: str) -> None:
    model = get_coop(tiny_clip, NAMES_A, kind=kind)
    handle = fpp_init.apply(model, **FAST)
    ref = reference(tiny_clip, NAMES_A)
    assert handle.design == kind
    torch.testing.assert_close(handle.prompt.ctx, ref.ctx, atol=1e-5, rtol=0)
    assert handle.prompt.fingerprint == ref.fingerprint == fpp_init.fingerprint_model(tiny_clip)
    assert handle.prompt.classnames == NAMES_A and handle.prompt.template == "a photo of a"
    torch.testing.assert_close(effective_init(model), ref.ctx, atol=1e-5, rtol=0)


def test_encoder_that_is_not_plain_clip_is_called_itself(
    tiny_clip: torch.nn.Module, caplog: pytest.LogCaptureFixture
) -> None:
    # features doubled: the fast tower disagrees, so the live encoder is used (normalised: same FPP result)
    model = get_coop(tiny_clip, NAMES_A, kind="scaled")
    with pytest.warns(fpp_init.errors.FastPathWarning, match="disagrees"):
        handle = fpp_init.apply(model, **FAST)
    torch.testing.assert_close(handle.prompt.ctx, reference(tiny_clip, NAMES_A).ctx, atol=1e-5, rtol=0)


def test_dynaprompt_prompt_goes_into_init_ctx(tiny_clip: torch.nn.Module) -> None:
    # n_ctx=2 of "a photo of a": token_prefix = SOS "a photo", ctx starts at position 3
    model = get_coop(tiny_clip, NAMES_A, kind="dynaprompt", n_ctx=2, num_p=3)
    pl = model.prompt_learner
    original = pl.init_ctx.clone()
    handle = fpp_init.apply(model, **FAST)
    assert handle.design == "dynaprompt" and pl.token_prefix.shape[1] == 3
    torch.testing.assert_close(handle.predefined, original)
    torch.testing.assert_close(pl.init_ctx, handle.prompt.ctx)
    assert not pl.ctx.detach().any() and not pl.ctx_init_state.any()  # the residual stays zero
    with torch.no_grad():
        model.reset()
        prompts = pl()  # [num_p, C, L, D]
    for p in range(3):
        torch.testing.assert_close(prompts[p, :, 3:5], handle.prompt.ctx.expand(len(NAMES_A), -1, -1))
    assert not torch.equal(handle.prompt.ctx, original)


def test_prefix_longer_than_sos_is_exact_on_every_path(tiny_clip: torch.nn.Module) -> None:
    """The P > 1 generalisation: shared-prefix fast path == full fast path == calling the encoder."""
    model = get_coop(tiny_clip, NAMES_A, kind="dynaprompt", n_ctx=2)
    pl, enc = model.prompt_learner, model.text_encoder
    prompts = EmbeddedPrompts(pl.token_prefix, pl.token_suffix, pl.tokenized_prompts.argmax(-1))
    cfg = FPPConfig(steps=3, seed=2)

    def call(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return enc(x, t)

    towers = {
        "shared": (clip_tower(enc), cfg),
        "full": (clip_tower(enc), cfg.replace(share_prefix=False)),
        "call": (callable_tower(call, 128), cfg),
    }
    with frozen([enc]):
        out = {k: optimize_flat_prompt(t, prompts, pl.init_ctx, c, progress=False).ctx for k, (t, c) in towers.items()}
    torch.testing.assert_close(out["shared"], out["full"], atol=1e-5, rtol=0)
    torch.testing.assert_close(out["shared"], out["call"], atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", KINDS)
def test_upstream_optimizer_still_updates_the_installed_prompt(tiny_clip: torch.nn.Module, kind: str) -> None:
    model = get_coop(tiny_clip, NAMES_A, kind=kind)
    for name, param in model.named_parameters():  # what the main scripts do before the optimizer
        if "prompt_learner" not in name:
            param.requires_grad_(False)
    optimizer = torch.optim.AdamW(model.prompt_learner.parameters(), 5e-3)
    optim_state = copy.deepcopy(optimizer.state_dict())
    handle = fpp_init.apply(model, **FAST)
    ctx = model.prompt_learner.ctx
    assert optimizer.param_groups[0]["params"][0] is ctx
    image = torch.randn(2, 64, generator=torch.Generator().manual_seed(0))
    for _ in range(2):  # two test samples, as the TPT loop does them
        with torch.no_grad():
            model.reset()
        optimizer.load_state_dict(optim_state)
        start = effective_init(model)
        logits = model.logit_scale.exp() * image @ model.get_text_features().t()
        probs = logits.softmax(-1)
        (-(probs * probs.log()).sum(-1).mean()).backward()
        optimizer.step()
        optimizer.zero_grad()
        torch.testing.assert_close(start, handle.prompt.ctx, atol=1e-6, rtol=0)
        assert not torch.allclose(effective_init_no_reset(model), handle.prompt.ctx, atol=1e-6)


def effective_init_no_reset(model: torch.nn.Module) -> torch.Tensor:
    pl = model.prompt_learner
    with torch.no_grad():
        prompts = pl()
    start = pl.token_prefix.shape[-2]
    return prompts.reshape(-1, *prompts.shape[-2:])[0, start : start + pl.n_ctx].float()


@pytest.mark.parametrize("kind", KINDS)
def test_second_dataset_gets_its_own_prompt_aligned_to_the_template(tiny_clip: torch.nn.Module, kind: str) -> None:
    model = get_coop(tiny_clip, NAMES_A, kind=kind)
    handle = fpp_init.apply(model, **FAST)
    first = handle.prompt.ctx.clone()
    original = handle.predefined.clone()
    model.reset_classnames(NAMES_B, "ViT-B/16")  # the per-dataset call of the main loop
    second = handle.prompt.ctx
    assert handle.prompt.classnames == ["golden retriever", "tabby cat", "sea lion"]
    assert not torch.allclose(first, second, atol=1e-4)
    torch.testing.assert_close(handle.predefined, original)
    torch.testing.assert_close(effective_init(model), second, atol=1e-6, rtol=0)
    # aligned to the template "a photo of a", not to the first FPP prompt
    torch.testing.assert_close(second, reference(tiny_clip, NAMES_B).ctx, atol=1e-5, rtol=0)
    # back to the first class set: the memoised first prompt comes back
    model.reset_classnames(NAMES_A, "ViT-B/16")
    torch.testing.assert_close(effective_init(model), first, atol=1e-6, rtol=0)


@pytest.mark.parametrize("kind", KINDS)
def test_apply_twice_changes_nothing_and_remove_restores(tiny_clip: torch.nn.Module, kind: str) -> None:
    model = get_coop(tiny_clip, NAMES_A, kind=kind)
    pl = model.prompt_learner
    before = state_of(model)
    init_state, init_ctx = pl.ctx_init_state, getattr(pl, "init_ctx", None)
    h1 = fpp_init.apply(model, **FAST)
    after1 = copy.deepcopy(model.state_dict()), pl.ctx_init_state.clone(), effective_init(model)
    h2 = fpp_init.apply(model, **FAST)
    assert h2 is h1
    after2 = model.state_dict(), pl.ctx_init_state, effective_init(model)
    for k in after1[0]:
        assert torch.equal(after1[0][k], after2[0][k]), k
    assert torch.equal(after1[1], after2[1]) and torch.equal(after1[2], after2[2])
    hook = pl.__dict__["reset_classnames"]
    assert type(hook.original).__name__ == "method"  # wrapped once, around the real method

    h1.remove()
    assert "reset_classnames" not in pl.__dict__ and "_fpp_init_state" not in pl.__dict__
    assert pl.ctx_init_state is init_state and getattr(pl, "init_ctx", None) is init_ctx
    assert_state(model, before)
    h1.remove()  # harmless
    assert not h1.active


def test_caller_state_untouched_and_context_manager(tiny_clip: torch.nn.Module) -> None:
    model = get_coop(tiny_clip, NAMES_A)
    model.text_encoder.transformer.resblocks[0].requires_grad_(False)  # a mix, as found
    model.image_encoder.eval()
    model.train()
    model.text_encoder.ln_final.eval()
    torch.manual_seed(123)
    rng = torch.get_rng_state()
    found = flags(model)
    original = model.prompt_learner.ctx.detach().clone()
    with fpp_init.apply(model, **FAST) as handle:
        assert flags(model) == found
        assert torch.equal(torch.get_rng_state(), rng)
        model.reset_classnames(NAMES_B, "ViT-B/16")
        assert flags(model) == found and torch.equal(torch.get_rng_state(), rng)
        assert not torch.equal(model.prompt_learner.ctx.detach(), original)
    assert not handle.active
    torch.testing.assert_close(model.prompt_learner.ctx.detach(), original)


def test_data_parallel_wrapper_is_unwrapped(tiny_clip: torch.nn.Module) -> None:
    model = get_coop(tiny_clip, NAMES_A)
    handle = fpp_init.apply(torch.nn.DataParallel(model), **FAST)
    assert handle.model is model
    torch.testing.assert_close(effective_init(model), handle.prompt.ctx, atol=1e-6, rtol=0)


def test_data_parallel_text_encoder_is_unwrapped(tiny_clip: torch.nn.Module) -> None:
    # TCA's --multi_gpu wraps the text encoder itself (on CPU the wrapper just calls the module)
    model = get_coop(tiny_clip, NAMES_A)
    model.text_encoder = torch.nn.DataParallel(model.text_encoder)
    handle = fpp_init.apply(model, **FAST)
    ref = reference(tiny_clip, NAMES_A)
    assert handle.design == "tpt" and handle.adapter.text_encoder is model.text_encoder.module
    torch.testing.assert_close(handle.prompt.ctx, ref.ctx, atol=1e-5, rtol=0)
    assert handle.prompt.fingerprint == ref.fingerprint


def test_given_prompt_is_checked_by_fingerprint_and_installed(tiny_clip: torch.nn.Module, tmp_path: Path) -> None:
    prompt = reference(tiny_clip, NAMES_A)
    model = get_coop(tiny_clip, NAMES_A)
    path = prompt.save(tmp_path / "p.safetensors")
    handle = fpp_init.apply(model, str(path))
    torch.testing.assert_close(effective_init(model), prompt.ctx)
    torch.testing.assert_close(model.prompt_learner.ctx_init_state, prompt.ctx)
    handle.remove()

    other = build_tiny_clip(128, seed=1)
    foreign = fpp_init.pretrain_flat_prompt(other, NAMES_A, steps=1, progress=False)
    ctx_before = model.prompt_learner.ctx.detach().clone()
    with pytest.raises(PromptMismatchError, match="fingerprint"):
        fpp_init.apply(model, foreign)
    assert torch.equal(model.prompt_learner.ctx.detach(), ctx_before)  # a failed apply changes nothing
    assert "reset_classnames" not in model.prompt_learner.__dict__
    fpp_init.apply(model, foreign, strict=False).remove()

    with pytest.raises(PromptMismatchError, match=r"\[3, 128\]"):
        fpp_init.apply(model, torch.zeros(3, 128))
    with pytest.raises(PromptMismatchError, match="another backbone"):
        fpp_init.apply(model, torch.zeros(4, 64))
    with pytest.raises(fpp_init.errors.PromptShapeError, match="NaN or Inf"):
        fpp_init.apply(model, torch.full((4, 128), float("nan")))


def test_apply_again_after_new_weights_checks_the_new_weights(tiny_clip: torch.nn.Module) -> None:
    prompt = reference(tiny_clip, NAMES_A)
    model = copy.deepcopy(get_coop(tiny_clip, NAMES_A))
    handle = fpp_init.apply(model, prompt)
    with torch.no_grad():  # the script loads other CLIP weights into the same model
        model.text_encoder.text_projection.mul_(2.0)
    with pytest.raises(PromptMismatchError, match="fingerprint"):
        fpp_init.apply(model, prompt)
    assert handle.active and handle.prompt is prompt


def test_given_class_agnostic_prompt_is_reinstalled_per_dataset(tiny_clip: torch.nn.Module) -> None:
    agnostic = fpp_init.pretrain_flat_prompt(tiny_clip, class_agnostic=True, num_classes=8, steps=2, progress=False)
    model = get_coop(tiny_clip, NAMES_A)
    handle = fpp_init.apply(model, agnostic)
    model.reset_classnames(NAMES_B, "RN50")
    assert handle.prompt is agnostic
    torch.testing.assert_close(effective_init(model), agnostic.ctx)


def test_pretrained_prompts_are_cached(tiny_clip: torch.nn.Module, tmp_path: Path) -> None:
    opts = dict(FAST, cache=tmp_path)
    first = fpp_init.apply(get_coop(tiny_clip, NAMES_A), **opts)
    assert first.prompt.history  # computed here
    assert len(list(tmp_path.glob("*.safetensors"))) == 1
    again = fpp_init.apply(get_coop(tiny_clip, NAMES_A), **opts)  # another run (seed of the TPT loop)
    assert not again.prompt.history  # read from the cache
    torch.testing.assert_close(again.prompt.ctx, first.prompt.ctx)
    other = fpp_init.apply(get_coop(tiny_clip, NAMES_A), **dict(opts, seed=2))
    assert other.prompt.history and len(list(tmp_path.glob("*.safetensors"))) == 2


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda clip: IT3AModel(clip), "several prompts"),
        (lambda clip: clip, "pretrain_flat_prompt"),
        (lambda clip: object(), "builtins.object"),
        (lambda clip: get_coop(clip, NAMES_A, ctx_init="a_[CLS]_photo"), "class token at position 'middle'"),
        (lambda clip: get_coop(clip, NAMES_A, learned_cls=True), "learned_cls"),
    ],
)
def test_unsupported_models_are_refused_clearly(tiny_clip: torch.nn.Module, build: object, match: str) -> None:
    with pytest.raises(AdapterError, match=match):
        fpp_init.apply(build(tiny_clip), **FAST)  # type: ignore[operator]


@pytest.mark.parametrize(("build", "design"), [(get_cocoop, "cocoop"), (get_maple, "maple")])
def test_cocoop_and_maple_are_supported(tiny_clip: torch.nn.Module, build: object, design: str) -> None:
    # formerly refused; tests/test_adapters_more.py checks them in depth
    handle = fpp_init.apply(build(tiny_clip, NAMES_A), **FAST)  # type: ignore[operator]
    assert handle.design == design and handle.prompt.ctx.shape == handle.predefined.shape


def test_class_agnostic_pretraining_on_a_live_model_is_explained(tiny_clip: torch.nn.Module) -> None:
    with pytest.raises(fpp_init.errors.ConfigError, match="pretrain_flat_prompt"):
        fpp_init.apply(get_coop(tiny_clip, NAMES_A), class_agnostic=True)


def test_noise_follows_a_longer_prefix(tiny_clip: torch.nn.Module) -> None:
    """With a 3-token prefix the ctx noise goes to positions 3..4 and nowhere else."""
    model = get_coop(tiny_clip, NAMES_A, kind="dynaprompt", n_ctx=2)
    pl, enc = model.prompt_learner, model.text_encoder
    seen: list[torch.Tensor] = []

    def call(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        seen.append(x.detach().clone())
        return enc(x, t)

    tower = callable_tower(call, 128)
    prompts = EmbeddedPrompts(pl.token_prefix, pl.token_suffix, pl.tokenized_prompts.argmax(-1))
    cfg = FPPConfig(steps=2, num_noise=2, cls_noise=0.0, ctx_noise=0.5)
    with frozen([enc]):
        optimize_flat_prompt(tower, prompts, pl.init_ctx, cfg, progress=False)
    c = len(NAMES_A)
    clean = [x for x in seen if x.shape[0] == c][1:]  # after the target
    noisy = [x.view(2, c, *x.shape[1:]) for x in seen if x.shape[0] == 2 * c]
    assert len(clean) == len(noisy) == 2
    for x, xs in zip(clean, noisy, strict=True):
        changed = (xs - x[None]).abs().amax(dim=(0, 1, 3)) > 0
        assert changed.nonzero().flatten().tolist() == [3, 4]


def test_a_deep_copy_of_the_model_keeps_its_own_installation(tiny_clip: torch.nn.Module) -> None:
    model = get_coop(tiny_clip, NAMES_A)
    handle = fpp_init.apply(model, **FAST)
    twin = copy.deepcopy(model)
    twin.reset_classnames(NAMES_B, "ViT-B/16")
    torch.testing.assert_close(effective_init(model), handle.prompt.ctx)  # the original is untouched
    assert model.prompt_learner.classnames == NAMES_A
    torch.testing.assert_close(effective_init(twin), reference(tiny_clip, NAMES_B).ctx, atol=1e-5, rtol=0)
