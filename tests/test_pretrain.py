"""pretrain_flat_prompt: faithful to the spec, reproducible, and harmless to the caller."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from _reference import encode_embeddings, spec_losses
from helpers import build_tiny_clip, classnames, clip_tower, cpu_half_matmul, save_and_load

import fpp_init
from fpp_init import FPPConfig
from fpp_init.algorithm import draw_noise
from fpp_init.models.clip import import_clip

NAMES = ["banded", "blotchy", "braided", "bubbly", "chequered_flag"]


def _embed(model, names, template="a photo of a"):
    clip = import_clip()
    tokens = clip.tokenize([f"{template} {n.replace('_', ' ')}." for n in names])
    with torch.no_grad():
        emb = model.token_embedding(tokens).float()
    return tokens, emb, tokens.argmax(-1)


def test_fast_tower_reproduces_encode_text(tiny_clip):
    tokens, emb, eot_pos = _embed(tiny_clip, NAMES)
    tower = clip_tower(tiny_clip)
    with torch.no_grad():
        ref = tiny_clip.encode_text(tokens)
        fast = tower.encode(emb, eot_pos)
        shared = tower.encode_shared_prefix(emb[:1, :5], emb[None, :, 5:], eot_pos)[0]
        mine = encode_embeddings(tiny_clip, emb, eot_pos)
    assert ref.shape == fast.shape == (len(NAMES), 64)
    torch.testing.assert_close(fast, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(shared, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(mine, ref, atol=1e-6, rtol=1e-6)  # the test oracle itself


@pytest.mark.parametrize("share_prefix", [True, False])
def test_step0_losses_match_direct_computation(tiny_clip, share_prefix):
    cfg = FPPConfig(steps=1, seed=7, share_prefix=share_prefix)
    prompt = fpp_init.pretrain_flat_prompt(tiny_clip, NAMES, config=cfg, progress=False)

    _, emb, eot_pos = _embed(tiny_clip, NAMES)
    n_ctx = 4
    gen = torch.Generator().manual_seed(7)
    start = torch.randn(n_ctx, emb.shape[-1], generator=gen) * cfg.init_std
    used = int(eot_pos.max()) + 1  # noise is drawn for the rows up to the last EOS; later rows never matter
    noise = torch.zeros(cfg.num_noise, 77, emb.shape[-1])
    noise[:, :used] = torch.randn(cfg.num_noise, used, emb.shape[-1], generator=gen)
    noise[:, 1 : 1 + n_ctx] *= cfg.ctx_noise
    noise[:, :1] *= cfg.cls_noise
    noise[:, 1 + n_ctx :] *= cfg.cls_noise
    lam = 1 + 15 / len(NAMES)
    align, flat = spec_losses(tiny_clip, emb, eot_pos, n_ctx, emb[0, 1:5], start, noise, lam)

    assert prompt.history["align"][0] == pytest.approx(align, rel=1e-5, abs=1e-6)
    assert prompt.history["flat"][0] == pytest.approx(flat, rel=1e-5, abs=1e-6)
    assert prompt.config["flat_weight"] == pytest.approx(lam)
    assert align > 0.1  # a random start is far from the template


def test_draw_noise_structure():
    noise = draw_noise(
        torch.Generator().manual_seed(0), 64, 77, 128, ctx_start=1, n_ctx=4, ctx_noise=0.5, cls_noise=2.0
    )
    assert noise.shape == (64, 77, 128)
    assert noise[:, 1:5].std().item() == pytest.approx(0.5, rel=0.05)
    assert noise[:, 5:].std().item() == pytest.approx(2.0, rel=0.05)
    assert noise[:, 0].std().item() == pytest.approx(2.0, rel=0.1)


def test_zero_noise_from_predefined_stays_put(tiny_clip):
    # weight decay off: AdamW's decoupled decay would shrink ctx even at zero gradient
    prompt = fpp_init.pretrain_flat_prompt(
        tiny_clip, NAMES, steps=5, init="predefined", ctx_noise=0.0, cls_noise=0.0, weight_decay=0.0, progress=False
    )
    _, emb, _ = _embed(tiny_clip, NAMES)
    assert prompt.history["align"] == [0.0] * 5
    assert prompt.history["cos"] == pytest.approx([1.0] * 5, abs=1e-6)
    assert torch.equal(prompt.ctx, emb[0, 1:5])


def test_normal_run_lowers_loss_and_raises_cosine(tiny_clip):
    prompt = fpp_init.pretrain_flat_prompt(tiny_clip, NAMES, steps=60, seed=1, progress=False)
    h = prompt.history
    assert len(h["loss"]) == 60
    assert sum(h["loss"][-5:]) / 5 < h["loss"][0] - 0.1
    assert sum(h["cos"][-5:]) / 5 > h["cos"][0] + 0.02
    assert prompt.final_losses["loss"] == pytest.approx(h["loss"][-1])
    assert prompt.ctx.shape == (4, 128) and prompt.ctx.dtype == torch.float32 and prompt.ctx.device.type == "cpu"


def test_seeds_reproduce_and_differ(tiny_clip):
    a = fpp_init.pretrain_flat_prompt(tiny_clip, NAMES, steps=3, seed=3, progress=False)
    b = fpp_init.pretrain_flat_prompt(tiny_clip, NAMES, steps=3, seed=3, progress=False)
    c = fpp_init.pretrain_flat_prompt(tiny_clip, NAMES, steps=3, seed=4, progress=False)
    assert torch.equal(a.ctx, b.ctx)
    assert a.history == b.history
    assert (a.ctx - c.ctx).abs().max() > 1e-3


def test_caller_state_untouched(tiny_ckpt):
    clip = import_clip()
    model, _ = clip.load(str(tiny_ckpt), device="cpu", jit=False)
    model.train()
    model.visual.eval()
    model.ln_final.weight.requires_grad_(False)
    grads = {n: p.requires_grad for n, p in model.named_parameters()}
    modes = {n: m.training for n, m in model.named_modules()}
    torch.manual_seed(1234)
    rng = torch.get_rng_state()
    fpp_init.pretrain_flat_prompt(model, NAMES, steps=2, progress=False)
    fpp_init.pretrain_flat_prompt(str(tiny_ckpt), class_agnostic=True, num_classes=3, steps=1, progress=False)
    assert torch.equal(torch.get_rng_state(), rng)
    assert {n: p.requires_grad for n, p in model.named_parameters()} == grads
    assert {n: m.training for n, m in model.named_modules()} == modes
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("width", [512, 768])
def test_widths(tmp_path, width):
    model = save_and_load(build_tiny_clip(width, layers=1), tmp_path / f"w{width}.pt")
    prompt = fpp_init.pretrain_flat_prompt(model, NAMES[:2], steps=2, progress=False)
    assert prompt.ctx.shape == (4, width)
    assert torch.isfinite(prompt.ctx).all()


def test_class_agnostic(tiny_clip):
    prompt = fpp_init.pretrain_flat_prompt(tiny_clip, class_agnostic=True, num_classes=6, steps=20, progress=False)
    assert prompt.class_agnostic and prompt.classnames is None and prompt.num_classes == 6
    assert prompt.config["flat_weight"] == pytest.approx(1 + 15 / 6)
    assert prompt.history["loss"][-1] < prompt.history["loss"][0]
    other = fpp_init.pretrain_flat_prompt(
        tiny_clip, class_agnostic=True, num_classes=6, steps=20, seed=1, progress=False
    )
    assert not torch.equal(prompt.ctx, other.ctx)


def test_predefined_and_init_tensors(tiny_clip):
    # one step with a vanishing learning rate (and no decay) shows the start the run took
    still = dict(steps=1, lr=1e-12, min_lr=0.0, weight_decay=0.0, progress=False)
    coop = torch.randn(6, 128, generator=torch.Generator().manual_seed(0)) * 0.02
    with _no_warning():  # a given ctx of 6 vectors is the user's choice: no context-length warning
        prompt = fpp_init.pretrain_flat_prompt(tiny_clip, NAMES, predefined_ctx=coop, init_ctx=coop, **still)
    assert prompt.template is None and prompt.n_ctx == 6
    torch.testing.assert_close(prompt.ctx, coop, atol=1e-10, rtol=0)
    assert prompt.history["align"][0] == 0.0  # started on the predefined ctx
    from_template = fpp_init.pretrain_flat_prompt(tiny_clip, NAMES, init="predefined", **still)
    _, emb, _ = _embed(tiny_clip, NAMES)
    torch.testing.assert_close(from_template.ctx, emb[0, 1:5], atol=1e-10, rtol=0)
    with pytest.warns(fpp_init.errors.ContextLengthWarning, match="gives 5 context vectors, not 4"):
        longer = fpp_init.pretrain_flat_prompt(tiny_clip, NAMES, template="a blurry photo of the", **still)
    assert longer.n_ctx == 5


class _no_warning:
    """Fail on any fpp-init warning inside the block."""

    def __enter__(self):
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("error", fpp_init.FPPWarning)

    def __exit__(self, *exc):
        self._ctx.__exit__(*exc)


def test_result_does_not_depend_on_the_towers_context_length(tmp_path):
    """R-TPT keeps 40 positions: the same weights truncated give the same prompt and fingerprint."""
    full = build_tiny_clip(128, layers=2, seed=3)
    short = build_tiny_clip(128, layers=2, seed=4, context_length=40)
    weights = full.state_dict()
    weights["positional_embedding"] = weights["positional_embedding"][:40]
    short.load_state_dict(weights)
    a = fpp_init.pretrain_flat_prompt(full, NAMES, steps=4, seed=2, progress=False)
    b = fpp_init.pretrain_flat_prompt(short, NAMES, steps=4, seed=2, progress=False)
    assert a.fingerprint == b.fingerprint == fpp_init.fingerprint_model(short)
    torch.testing.assert_close(a.ctx, b.ctx, atol=1e-6, rtol=0)
    assert a.history["loss"] == pytest.approx(b.history["loss"], abs=1e-6)


def test_metadata(tiny_clip, tiny_ckpt):
    prompt = fpp_init.pretrain_flat_prompt(str(tiny_ckpt), NAMES, steps=1, progress=False)
    assert prompt.backbone == tiny_ckpt.name
    assert prompt.classnames == NAMES and not prompt.class_agnostic and prompt.num_classes == 5
    assert prompt.template == "a photo of a"
    assert prompt.fingerprint == fpp_init.fingerprint_model(tiny_clip)
    assert prompt.version == fpp_init.__version__
    assert set(prompt.final_losses) == {"align", "flat", "loss", "cos"}
    assert FPPConfig.from_dict(prompt.config).steps == 1


def test_fingerprint_is_dtype_independent_and_weight_sensitive(tiny_clip, tmp_path):
    import copy

    half = copy.deepcopy(tiny_clip).half()
    assert fpp_init.fingerprint_model(half) == fpp_init.fingerprint_model(tiny_clip)
    other = save_and_load(build_tiny_clip(128, seed=1), tmp_path / "other.pt")
    assert fpp_init.fingerprint_model(other) != fpp_init.fingerprint_model(tiny_clip)


@pytest.mark.skipif(not cpu_half_matmul(), reason="this torch has no fp16 matmul on the CPU")
def test_fp16_weights_keep_fp32_master(tiny_clip):
    import copy

    half = copy.deepcopy(tiny_clip).half()
    prompt = fpp_init.pretrain_flat_prompt(half, NAMES, steps=3, progress=False)
    ref = fpp_init.pretrain_flat_prompt(tiny_clip, NAMES, steps=3, progress=False)
    assert prompt.ctx.dtype == torch.float32
    assert (prompt.ctx - ref.ctx).abs().max() < 5e-2  # fp16 arithmetic, same optimisation


def test_other_context_length(tmp_path):
    clip = import_clip()
    model = save_and_load(build_tiny_clip(128, layers=1, context_length=24), tmp_path / "l24.pt")
    tokens = clip.tokenize([f"a photo of a {n}." for n in NAMES], context_length=24)
    with torch.no_grad():
        fast = clip_tower(model).encode(model.token_embedding(tokens), tokens.argmax(-1))
        torch.testing.assert_close(fast, model.encode_text(tokens), atol=1e-5, rtol=1e-5)
    prompt = fpp_init.pretrain_flat_prompt(model, NAMES, steps=2, progress=False)
    assert prompt.ctx.shape == (4, 128)
    with pytest.raises(fpp_init.errors.ClassNameError, match="context length is 24"):
        fpp_init.pretrain_flat_prompt(model, ["a very long class name " * 5], steps=1, progress=False)


def test_tpt_spelling_of_the_template(tiny_clip, tmp_path):
    """``a_photo_of_a`` (how TPT-family scripts write --ctx_init) is read as TPT reads it: 4 tokens, same prompt."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", fpp_init.errors.ContextLengthWarning)
        tpt = fpp_init.pretrain_flat_prompt(tiny_clip, NAMES[:2], template="a_photo_of_a", steps=2, progress=False)
    plain = fpp_init.pretrain_flat_prompt(tiny_clip, NAMES[:2], template="a photo of a", steps=2, progress=False)
    assert tpt.n_ctx == 4 and tpt.template == "a photo of a"
    assert torch.equal(tpt.ctx, plain.ctx)
    with pytest.raises(fpp_init.errors.TemplateError, match="must be a non-empty string"):
        fpp_init.pretrain_flat_prompt(tiny_clip, NAMES[:2], template="___", steps=1, progress=False)


def test_bytes_repeat_at_a_fixed_thread_count_and_agree_closely_across_counts(tmp_path: Path) -> None:
    """What is reproducible: the same inputs at the same ``threads`` give the same bytes; other thread
    counts round BLAS sums differently, so ctx differs there, by far less than 1e-6 (relative)."""
    clip = build_tiny_clip(128)
    names = classnames("dtd", 8)
    runs = {}
    for label, threads in (("a", 1), ("b", 1), ("two", 2)):
        prompt = fpp_init.pretrain_flat_prompt(clip, names, steps=50, threads=threads, progress=False)
        runs[label] = prompt.save(tmp_path / f"{label}.safetensors").read_bytes(), prompt.ctx
    assert runs["a"][0] == runs["b"][0]
    one, two = runs["a"][1], runs["two"][1]
    assert float((one - two).norm() / one.norm()) <= 1e-6
