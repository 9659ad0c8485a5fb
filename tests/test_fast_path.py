"""The fast text-tower path and the chunked optimiser are exact (speed is measured by
``examples/benchmark_pretrain.py``, not asserted here)."""

from __future__ import annotations

import pytest
import torch
from _reference import encode_embeddings
from helpers import build_tiny_clip, callable_tower, clip_tower, is_fast_tower
from standins import AuxTextEncoder, TextEncoder

from fpp_init import FPPConfig
from fpp_init.algorithm import EmbeddedPrompts, optimize_flat_prompt, plan_chunks
from fpp_init.models.clip import import_clip

# prompt lengths 7..13 tokens: chunks of different lengths, padding inside a chunk
NAMES = ["banded", "blotchy", "braided", "bubbly", "chequered_flag", "great white shark", "a long class name", "sea"]


def _embed(model, names=NAMES, template="a photo of a"):
    tokens = import_clip().tokenize([f"{template} {n.replace('_', ' ')}." for n in names])
    with torch.no_grad():
        emb = model.token_embedding(tokens).float()
    return tokens, emb, tokens.argmax(-1)


def _prompts(emb, eot_pos, n_pre=1, n_ctx=4):
    return EmbeddedPrompts(prefix=emb[:, :n_pre], suffix=emb[:, n_pre + n_ctx :], eot_pos=eot_pos)


def test_truncated_encode_equals_encode_text(tiny_clip):
    tokens, emb, eot_pos = _embed(tiny_clip)
    assert len(set(eot_pos.tolist())) >= 3  # really different lengths in one batch
    tower = clip_tower(tiny_clip)
    with torch.no_grad():
        ref = tiny_clip.encode_text(tokens)
        fast = tower.encode(emb, eot_pos)
        short = tower.encode(emb[:, : int(eot_pos.max()) + 1], eot_pos)  # the caller may truncate too
    with torch.enable_grad():
        graded = tower.encode(emb.requires_grad_(), eot_pos)
    torch.testing.assert_close(fast, ref, atol=1e-5, rtol=1e-5)
    assert torch.equal(short, fast)
    # the in-place (no autograd) and the autograd evaluation do the same arithmetic
    assert torch.equal(graded.detach(), fast)


@pytest.mark.parametrize("n_pre", [5, 3, 1])
def test_shared_prefix_equals_separate_prompts(tiny_clip, n_pre):
    _, emb, eot_pos = _embed(tiny_clip)
    tower = clip_tower(tiny_clip)
    gen = torch.Generator().manual_seed(0)
    noise = 0.1 * torch.randn(3, emb.shape[1], emb.shape[2], generator=gen)  # one pattern per group
    heads = emb[0, :n_pre][None] + noise[:, :n_pre]  # [G, P, D]
    rest = emb[None, :, n_pre:] + noise[:, None, n_pre:]  # [G, C, R, D]
    full = torch.cat([heads[:, None].expand(-1, len(NAMES), -1, -1), rest], dim=2)
    with torch.no_grad():
        shared = tower.encode_shared_prefix(heads, rest, eot_pos)
        separate = tower.encode(full.flatten(0, 1), eot_pos.repeat(3)).view(3, len(NAMES), -1)
        spec = encode_embeddings(tiny_clip, full.flatten(0, 1), eot_pos.repeat(3)).view(3, len(NAMES), -1)
    with torch.enable_grad():
        h = heads.clone().requires_grad_()
        graded = tower.encode_shared_prefix(h, rest, eot_pos)
        graded.square().sum().backward()
    assert shared.shape == (3, len(NAMES), 64)
    torch.testing.assert_close(shared, separate, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(shared, spec, atol=1e-5, rtol=1e-5)
    assert torch.equal(graded.detach(), shared)
    assert h.grad is not None and bool(h.grad.abs().sum() > 0)


def test_shared_prefix_gradient_equals_separate(tiny_clip):
    _, emb, eot_pos = _embed(tiny_clip)
    tower = clip_tower(tiny_clip)
    ctx = torch.randn(4, 128, generator=torch.Generator().manual_seed(1)) * 0.1
    grads = []
    for share in (True, False):
        c = ctx.clone().requires_grad_()
        if share:
            out = tower.encode_shared_prefix(torch.cat([emb[0, :1], c])[None], emb[None, :, 5:], eot_pos)[0]
        else:
            out = tower.encode(torch.cat([emb[:, :1], c[None].expand(len(NAMES), -1, -1), emb[:, 5:]], 1), eot_pos)
        (out * torch.linspace(-1, 1, out.shape[-1])).sum().backward()
        grads.append(c.grad)
    torch.testing.assert_close(grads[0], grads[1], atol=1e-5, rtol=1e-4)


def test_tpt_text_encoders_match(tiny_clip):
    tokens, emb, eot_pos = _embed(tiny_clip)
    x = emb.type(tiny_clip.dtype)
    with torch.no_grad():
        for enc in (TextEncoder(tiny_clip), AuxTextEncoder(tiny_clip)):
            tower = clip_tower(enc)
            assert is_fast_tower(enc)
            out = enc(x, tokens) if isinstance(enc, TextEncoder) else enc(x, tokens, None)[0]
            torch.testing.assert_close(tower.encode(emb, eot_pos), out, atol=1e-5, rtol=1e-5)


def _spec_run(model, emb, eot_pos, n_ctx, cfg):
    """A straightforward full-length loop of the spec, the package's documented draw order."""

    def norm(f):
        return f / f.norm(dim=-1, keepdim=True)

    def assemble(ctx):
        return torch.cat([emb[:, :1], ctx[None].expand(emb.shape[0], -1, -1), emb[:, 1 + n_ctx :]], dim=1)

    c, length, width = emb.shape
    gen = torch.Generator().manual_seed(cfg.seed)
    with torch.no_grad():
        target = norm(encode_embeddings(model, assemble(emb[0, 1 : 1 + n_ctx]), eot_pos))
    ctx = torch.nn.Parameter(torch.randn(n_ctx, width, generator=gen) * cfg.init_std)
    opt = torch.optim.AdamW([ctx], lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.steps, eta_min=cfg.min_lr)
    losses = []
    used = int(eot_pos.max()) + 1  # noise is drawn for the rows up to the last EOS only
    for _ in range(cfg.steps):
        noise = torch.zeros(cfg.num_noise, length, width)
        noise[:, :used] = torch.randn(cfg.num_noise, used, width, generator=gen)
        noise[:, 1 : 1 + n_ctx] *= cfg.ctx_noise
        noise[:, :1] *= cfg.cls_noise
        noise[:, 1 + n_ctx :] *= cfg.cls_noise
        with torch.no_grad():
            noisy_in = (assemble(ctx)[None] + noise[:, None]).flatten(0, 1)
            noisy = norm(encode_embeddings(model, noisy_in, eot_pos.repeat(cfg.num_noise))).view(cfg.num_noise, c, -1)
        f = norm(encode_embeddings(model, assemble(ctx), eot_pos))
        align = f.shape[-1] * ((f - target) ** 2).mean()
        flat = -(1 + 15 / c) * (f[None] * noisy).sum(-1).mean()
        opt.zero_grad()
        (align + flat).backward()
        opt.step()
        sched.step()
        losses += [align.item(), flat.item()]
    return ctx.detach(), losses


def test_optimiser_equals_straightforward_loop(tiny_clip):
    _, emb, eot_pos = _embed(tiny_clip)
    cfg = FPPConfig(steps=3, seed=3, autocast="off")
    want_ctx, want_losses = _spec_run(tiny_clip, emb, eot_pos, 4, cfg)
    for chunk, share in [(128, True), (2, True), (3, False)]:
        run = cfg.replace(chunk_classes=chunk, share_prefix=share)
        res = optimize_flat_prompt(clip_tower(tiny_clip), _prompts(emb, eot_pos), emb[0, 1:5], run, progress=False)
        torch.testing.assert_close(res.ctx, want_ctx, atol=1e-5, rtol=0)
        got = [v for pair in zip(res.history["align"], res.history["flat"], strict=True) for v in pair]
        assert got == pytest.approx(want_losses, abs=1e-5)


def test_chunked_equals_unchunked(tiny_clip):
    _, emb, eot_pos = _embed(tiny_clip)
    tower = clip_tower(tiny_clip)
    prompts = _prompts(emb, eot_pos)
    cfg = FPPConfig(steps=3, seed=5)
    results = {}
    for chunk, share in [(1000, True), (2, True), (1, True), (1000, False), (2, False)]:
        run = cfg.replace(chunk_classes=chunk, share_prefix=share)
        results[chunk, share] = optimize_flat_prompt(tower, prompts, emb[0, 1:5], run, progress=False)
    base = results[1000, True]
    for res in results.values():
        torch.testing.assert_close(res.ctx, base.ctx, atol=1e-5, rtol=0)
        for key in ("align", "flat", "loss", "cos"):
            assert res.history[key] == pytest.approx(base.history[key], abs=1e-5)


def test_plan_chunks_groups_by_length():
    eot_pos = torch.tensor([9, 7, 8, 7, 17, 8, 8, 9, 7, 12])
    for limit in (1, 2, 3, 100):
        chunks = plan_chunks(eot_pos + 1 - 5, limit, 5 + 16)
        flat = torch.cat(chunks)
        assert sorted(flat.tolist()) == list(range(len(eot_pos)))  # each class exactly once
        assert all(0 < len(ch) <= limit for ch in chunks)
        assert eot_pos[flat].tolist() == sorted(eot_pos.tolist())  # sorted by prompt length
    # the single long prompt is not allowed to pad every other one to 13 rows
    assert [len(ch) for ch in plan_chunks(eot_pos + 1 - 5, 100, 5 + 16)][-1] <= 2


def test_unsupported_towers_are_detected():
    model = build_tiny_clip(64, layers=2, seed=1)
    tf = model.transformer
    assert is_fast_tower(model)
    saved = tf.resblocks[1].attn_mask
    tf.resblocks[1].attn_mask = None  # a bidirectional block: truncation would not be exact
    assert not is_fast_tower(model)
    tf.resblocks[1].attn_mask = torch.zeros_like(saved)
    assert not is_fast_tower(model)
    tf.resblocks[1].attn_mask = saved.triu(2)  # causal-looking but sees one position ahead
    assert not is_fast_tower(model)
    tf.resblocks[1].attn_mask = saved
    assert is_fast_tower(model)
    tf.resblocks[0].attn = torch.nn.Linear(64, 64)
    assert not is_fast_tower(model)


def test_bf16_autocast_on_cpu_keeps_fp32_master(tiny_clip):
    _, emb, eot_pos = _embed(tiny_clip, NAMES[:4])
    tower = clip_tower(tiny_clip)
    cfg = FPPConfig(steps=2, seed=0)
    exact = optimize_flat_prompt(tower, _prompts(emb, eot_pos), emb[0, 1:5], cfg, progress=False)
    low = optimize_flat_prompt(tower, _prompts(emb, eot_pos), emb[0, 1:5], cfg.replace(autocast="bf16"), progress=False)
    assert low.ctx.dtype == torch.float32 and bool(torch.isfinite(low.ctx).all())
    assert low.ctx.shape == exact.ctx.shape and not torch.equal(low.ctx, exact.ctx)  # it did run in bf16
    assert low.history["align"][0] == pytest.approx(exact.history["align"][0], rel=0.05)
    assert low.history["cos"][0] == pytest.approx(exact.history["cos"][0], abs=0.01)


def test_fp64_tower_runs_in_fp64_on_every_path(tiny_clip):
    """An fp64 model gives an fp64 fast tower (LayerNorms included) and an fp64 run: the fast path and the
    module's own modules agree to fp64 rounding, features and whole trajectories."""
    from helpers import Trace, to_float64

    model = to_float64(tiny_clip)
    _, emb, eot_pos = _embed(model)
    emb = emb.double()
    tower = clip_tower(model)
    assert tower.dtype == torch.float64
    with torch.no_grad():
        fast = tower.encode(emb, eot_pos)
        ref = encode_embeddings(model, emb, eot_pos)
    assert fast.dtype == torch.float64
    torch.testing.assert_close(fast, ref, atol=1e-12, rtol=0)

    def module(x, t):
        return encode_embeddings(model, x, t.argmax(-1))

    slow = callable_tower(module, 128, torch.float64)
    prompts, cfg = _prompts(emb, eot_pos), FPPConfig(steps=4, seed=0)
    traces = {}
    for name, t in {"fast": tower, "module": slow}.items():
        traces[name] = Trace()
        optimize_flat_prompt(t, prompts, emb[0, 1:5].float(), cfg, progress=False, checkpoint=traces[name])
    fast_path, own = traces["fast"].trajectory(), traces["module"].trajectory()
    assert fast_path.shape == (4, 4, 128) and float((fast_path[-1] - fast_path[0]).abs().max()) > 1e-3
    torch.testing.assert_close(fast_path, own, atol=1e-12, rtol=0)
    # the fp32 run is another trajectory: rounding, not the maths, separates them
    f32 = Trace()
    optimize_flat_prompt(clip_tower(tiny_clip), _prompts(emb.float(), eot_pos), emb[0, 1:5].float(), cfg, progress=False,
                         checkpoint=f32)  # fmt: skip
    gap = float((f32.trajectory() - own).abs().max())
    assert 1e-9 < gap < 1e-5
