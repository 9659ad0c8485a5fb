"""Sharpness diagnostics on tiny CLIP models loaded through the real ``clip.load``."""

from __future__ import annotations

import itertools
import struct
import sys
from pathlib import Path

import pytest
import torch

import fpp_init
from fpp_init import constants as C
from fpp_init.algorithm import measure_sharpness
from fpp_init.cli import main
from fpp_init.errors import ConfigError, PlotDependencyError, PromptShapeError
from fpp_init.models import build_class_prompts, text_model

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def fpp_prompt(tiny_clip: torch.nn.Module, dtd_names: list[str]) -> fpp_init.FPPPrompt:
    return fpp_init.pretrain_flat_prompt(tiny_clip, dtd_names, steps=40, progress=False)


def _direct_features(model: torch.nn.Module, emb: torch.Tensor, eot_pos: torch.Tensor) -> torch.Tensor:
    """Plain full-length CLIP text forward on embeddings (independent of the fast tower)."""
    emb = torch.nn.functional.pad(emb, (0, 0, 0, 77 - emb.shape[1]))  # rows after the EOS never matter
    x = emb + model.positional_embedding
    x = model.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)
    x = model.ln_final(x)
    f = x[torch.arange(x.shape[0]), eot_pos] @ model.text_projection
    return f / f.norm(dim=-1, keepdim=True)


def test_cos_drop_equals_direct_computation(tiny_clip: torch.nn.Module, dtd_names: list[str]) -> None:
    names = dtd_names[:4]
    g = torch.Generator().manual_seed(3)
    ctx = torch.randn(4, 128, generator=g) * 0.1
    res = fpp_init.sharpness(tiny_clip, ctx, names, factors=[0, 1, 2], draws=2, seed=7)
    # rebuild the same noise: randn(draws, rows used, D) from a generator seeded 7, ctx rows x0.0707, others x0.1414
    inputs = build_class_prompts(text_model(tiny_clip), names)
    p = inputs.prompts
    used = int(p.eot_pos.max()) + 1
    noise = torch.zeros(2, 77, 128)  # rows after the last EOS: no noise (they never matter)
    noise[:, :used] = torch.randn(2, used, 128, generator=torch.Generator().manual_seed(7))
    scale = torch.full((77, 1), C.DEFAULT_CLS_NOISE)
    scale[1:5] = C.DEFAULT_CTX_NOISE
    noise = noise * scale
    full = p.assemble(ctx)
    with torch.no_grad():
        clean = _direct_features(tiny_clip, full, p.eot_pos)
        for factor, got in zip([1, 2], res.cos_drop[1:], strict=True):
            noisy = torch.stack([_direct_features(tiny_clip, full + factor * n[:used], p.eot_pos) for n in noise])
            want = float((1 - (noisy * clean).sum(-1)).mean())
            assert got == pytest.approx(want, abs=2e-5)
        target = _direct_features(tiny_clip, p.assemble(inputs.predefined_ctx), p.eot_pos)
    assert res.align == pytest.approx(float(((clean - target) ** 2).sum(-1).mean()), abs=2e-5)
    assert res.cos_drop[0] == 0.0 and res.factors == [0.0, 1.0, 2.0]
    assert (res.n_ctx, res.num_classes, res.draws, res.seed) == (4, 4, 2, 7)


def test_fpp_prompt_is_flatter_than_its_random_start(
    tiny_clip: torch.nn.Module, dtd_names: list[str], fpp_prompt: fpp_init.FPPPrompt
) -> None:
    cfg = fpp_init.FPPConfig()
    start = torch.randn(4, 128, generator=torch.Generator().manual_seed(cfg.seed)) * cfg.init_std
    fpp = fpp_init.sharpness(tiny_clip, fpp_prompt, draws=4)
    rnd = fpp_init.sharpness(tiny_clip, start, dtd_names, draws=4)
    for f in (0.5, 1.0, 2.0, 4.0):
        assert fpp.drop_at(f) < rnd.drop_at(f)
    assert fpp.drop_at(1.0) < 0.8 * rnd.drop_at(1.0)
    assert fpp.align < rnd.align
    # it measures what FPP optimised: 1 - cos over the run's last steps, up to the different noise draws
    late_cos = sum(fpp_prompt.history["cos"][-10:]) / 10
    many = fpp_init.sharpness(tiny_clip, fpp_prompt, draws=32, factors=[1.0])
    assert many.drop_at(1.0) == pytest.approx(1 - late_cos, abs=0.05)


def test_template_prompt_and_forms_agree(
    tmp_path: Path, tiny_clip: torch.nn.Module, dtd_names: list[str], fpp_prompt: fpp_init.FPPPrompt
) -> None:
    tmpl = fpp_init.sharpness(tiny_clip, "a photo of a", dtd_names, draws=3)
    assert tmpl.align == pytest.approx(0.0, abs=1e-10)
    assert tmpl.label == "template 'a photo of a'"
    drops = tmpl.cos_drop
    assert drops[0] == 0.0 and all(a < b for a, b in itertools.pairwise(drops))
    path = fpp_prompt.save(tmp_path / "p.safetensors")
    by_file = fpp_init.sharpness(tiny_clip, str(path), draws=3)
    by_obj = fpp_init.sharpness(tiny_clip, fpp_prompt, draws=3)
    by_tensor = fpp_init.sharpness(tiny_clip, fpp_prompt.ctx, dtd_names, template="a photo of a", draws=3)
    assert by_file.cos_drop == by_obj.cos_drop == by_tensor.cos_drop
    assert by_file.align == by_obj.align == by_tensor.align
    assert by_file.label == "p"


def test_leaves_model_and_global_rng_alone(tiny_clip: torch.nn.Module, dtd_names: list[str]) -> None:
    tiny_clip.train()
    tiny_clip.token_embedding.weight.requires_grad_(True)
    state = torch.random.get_rng_state()
    try:
        a = fpp_init.sharpness(tiny_clip, "a photo of a", dtd_names, draws=2, landscape=True, points=3, points2d=2)
        b = fpp_init.sharpness(tiny_clip, "a photo of a", dtd_names, draws=2, landscape=True, points=3, points2d=2)
        assert torch.equal(torch.random.get_rng_state(), state)
        assert tiny_clip.training and tiny_clip.transformer.training
        assert tiny_clip.token_embedding.weight.requires_grad
        assert a.cos_drop == b.cos_drop and a.landscape.line == b.landscape.line  # type: ignore[union-attr]
        c = fpp_init.sharpness(tiny_clip, "a photo of a", dtd_names, draws=2, seed=1)
        assert c.cos_drop != a.cos_drop
    finally:
        tiny_clip.eval()


def test_landscape_shapes_and_centre(tiny_clip: torch.nn.Module, dtd_names: list[str]) -> None:
    res = fpp_init.sharpness(tiny_clip, "a photo of a", dtd_names[:3], landscape=True, points=5, points2d=3)
    land = res.landscape
    assert land is not None and land.norm == "noise"  # one step size for every prompt, by default
    assert land.alphas == pytest.approx([-1, -0.5, 0, 0.5, 1])
    assert land.line[2] == pytest.approx(0.0, abs=1e-6)
    assert min(land.line[0], land.line[4]) > land.line[1] > land.line[2]
    assert land.grid2d is not None and land.grid2d.shape == (3, 3) and land.alphas2d == [-1, 0, 1]
    assert float(land.grid2d[1, 1]) == pytest.approx(0.0, abs=1e-6)
    assert float(land.grid2d[2, 1]) == pytest.approx(land.line[4], abs=1e-5)  # (1, 0) is on the 1-D line
    filter_norm = fpp_init.sharpness(
        tiny_clip, "a photo of a", dtd_names[:3], landscape=True, points=3, points2d=0, direction_norm="filter"
    )
    assert filter_norm.landscape is not None and filter_norm.landscape.grid2d is None
    assert filter_norm.landscape.norm == "filter"
    d = res.to_dict()
    assert d["landscape"]["grid2d"][1][1] == pytest.approx(0.0, abs=1e-6)


def test_bad_arguments(tiny_clip: torch.nn.Module, dtd_names: list[str]) -> None:
    with pytest.raises(PromptShapeError, match="same length"):
        fpp_init.sharpness(tiny_clip, torch.zeros(3, 128), dtd_names)
    with pytest.raises(PromptShapeError, match="width"):
        fpp_init.sharpness(tiny_clip, torch.zeros(4, 64), dtd_names)
    with pytest.raises(ConfigError, match="factors"):
        fpp_init.sharpness(tiny_clip, "a photo of a", dtd_names, factors=[-1])
    with pytest.raises(ConfigError, match="direction_norm"):
        fpp_init.sharpness(tiny_clip, "a photo of a", dtd_names, direction_norm="unit")
    with pytest.raises(fpp_init.errors.ClassNameError, match="classnames is required"):
        fpp_init.sharpness(tiny_clip, "a photo of a")


def test_nan_input_is_refused(tiny_clip: torch.nn.Module, dtd_names: list[str]) -> None:
    with pytest.raises(PromptShapeError, match="source contains NaN or Inf"):
        fpp_init.sharpness(tiny_clip, torch.full((4, 128), float("nan")), dtd_names)
    with pytest.raises(ConfigError, match="ctx_noise must be a finite number"):
        fpp_init.sharpness(tiny_clip, "a photo of a", dtd_names, ctx_noise=float("nan"))
    with pytest.raises(ConfigError, match=r"factor 3.0 was not measured; measured factors: \[0.0, 1.0\]"):
        fpp_init.sharpness(tiny_clip, "a photo of a", dtd_names, factors=[0, 1], draws=1).drop_at(3.0)
    with pytest.raises(ConfigError, match=r"unknown FPP option\(s\) \['drawz'\]"):
        fpp_init.sharpness(tiny_clip, "a photo of a", dtd_names, drawz=3)


def test_core_runs_on_prompts_with_a_longer_prefix(tiny_clip: torch.nn.Module, dtd_names: list[str]) -> None:
    # adapters may keep fixed leading words in the prefix: ctx at position P > 1
    tm = text_model(tiny_clip)
    inputs = build_class_prompts(tm, dtd_names[:3], template="a photo of a")
    p = inputs.prompts
    two = fpp_init.algorithm.EmbeddedPrompts(
        prefix=torch.cat([p.prefix, inputs.predefined_ctx[None, :1].expand(3, -1, -1)], dim=1),
        suffix=p.suffix,
        eot_pos=p.eot_pos,
    )
    ctx = inputs.predefined_ctx[1:]
    kw = dict(config=fpp_init.FPPConfig(), measure=fpp_init.SharpnessConfig(factors=(0, 1), draws=2))
    res = measure_sharpness(tm.tower, two, ctx, ctx, **kw)
    full = measure_sharpness(tm.tower, p, inputs.predefined_ctx, inputs.predefined_ctx, **kw)
    assert res.align == pytest.approx(0.0, abs=1e-10) and res.n_ctx == 3
    assert res.cos_drop[1] > 0 and res.cos_drop[1] != full.cos_drop[1]  # the noise layout follows P


def test_cli_table_and_plot(
    tmp_path: Path,
    tiny_ckpt: Path,
    dtd_names: list[str],
    fpp_prompt: fpp_init.FPPPrompt,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pytest.importorskip("matplotlib")
    prompt_file = fpp_prompt.save(tmp_path / "fpp_tiny.safetensors")
    out = tmp_path / "sharp.png"
    args = ["sharpness", "--weights", str(tiny_ckpt), "a photo of a", str(prompt_file)]
    args += ["--draws", "2", "--points", "5", "--points2d", "3", "--plot", str(out), "--title", "tiny"]
    assert main(args) == 0
    table = capsys.readouterr().out
    assert '"a photo of a"' in table and "fpp_tiny" in table and "drop@1x" in table
    data = out.read_bytes()
    assert data[:8] == PNG
    assert struct.unpack(">II", data[16:24]) == (800, 720)  # 2 columns x 2 rows of 4.0 x 3.6 in at 100 dpi


def test_plot_panels(tiny_clip: torch.nn.Module, dtd_names: list[str]) -> None:
    pytest.importorskip("matplotlib")
    from fpp_init.plotting import plot_sharpness

    kw = dict(draws=2, landscape=True, points=3, points2d=3)
    results = [fpp_init.sharpness(tiny_clip, t, dtd_names[:3], **kw) for t in ("a photo of a", "a photo of the")]
    results.append(fpp_init.sharpness(tiny_clip, "a sketch of a", dtd_names[:3], template="a sketch of a", **kw))
    fig = plot_sharpness(results)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[:2] == ["Under FPP embedding noise", "1-D landscape slice"]
    assert sum(t.startswith("2-D slice") for t in titles) == 3
    assert len(fig.axes) == 2 + 3 + 1  # + the colour bar
    assert len(fig.axes[0].get_lines()) == 3
    no_land = plot_sharpness([fpp_init.sharpness(tiny_clip, "a photo of a", dtd_names[:3], draws=2)])
    assert len(no_land.axes) == 1


def test_cli_plot_without_matplotlib(
    monkeypatch: pytest.MonkeyPatch, tiny_ckpt: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    args = ["sharpness", "--weights", str(tiny_ckpt), "--classnames", "x", "a photo of a", "--plot", "o.png"]
    assert main(args) == 2
    err = capsys.readouterr().err
    # the install command matches this installation: an editable install from this clone
    assert err.count("\n") == 1 and 'pip install -e "' in err and '[plot]"' in err
    with pytest.raises(PlotDependencyError, match=r"pip install .*\[plot\]"):
        from fpp_init.plotting import require_matplotlib

        require_matplotlib()


@pytest.mark.parametrize("kind", ["tpt", "fpp_reference"])
def test_live_tpt_family_model(tiny_clip: torch.nn.Module, kind: str) -> None:
    from standins import get_coop

    names = ["banded", "blotchy", "braided", "bubbly"]
    model = get_coop(tiny_clip, names, kind=kind)
    kw = dict(draws=2, factors=[0, 1, 2])
    # before FPP: the live model's initial ctx is the template's embeddings
    live = fpp_init.sharpness(model, **kw)
    plain = fpp_init.sharpness(tiny_clip, "a photo of a", names, **kw)
    assert live.label == "current init" and live.align == pytest.approx(0.0, abs=1e-10)
    assert live.cos_drop == pytest.approx(plain.cos_drop, abs=1e-5)
    handle = fpp_init.apply(model, steps=20, seed=0, cache=False, progress=False)
    after = fpp_init.sharpness(handle, **kw)  # aligned to the original ctx the handle kept
    direct = fpp_init.sharpness(tiny_clip, handle.prompt, names, **kw)
    assert after.cos_drop == pytest.approx(direct.cos_drop, abs=1e-5)
    assert after.align == pytest.approx(direct.align, abs=1e-5) and after.align > 0
    assert after.drop_at(1.0) < plain.drop_at(1.0)
    with pytest.raises(ConfigError, match="templates are not accepted"):
        fpp_init.sharpness(model, "a photo of a")
    with pytest.raises(ConfigError, match="reset_classnames"):
        fpp_init.sharpness(model, None, names)
    handle.remove()


def test_every_panel_is_the_loss_increase(tiny_clip: torch.nn.Module, dtd_names: list[str]) -> None:
    """Noise curve and landscape slices report one quantity, mean_c (1 - cos) to the clean features,
    computed here independently (plain CLIP forward, cosine similarity) at the slices' own points."""
    names = dtd_names[:3]
    ctx = torch.randn(4, 128, generator=torch.Generator().manual_seed(5)) * 0.3
    kw = dict(factors=[0, 1], draws=2, seed=7, landscape=True, points=3, points2d=3)
    res = fpp_init.sharpness(tiny_clip, ctx, names, **kw)
    land = res.landscape
    assert land is not None and land.norm == "noise" and land.alphas == land.alphas2d == [-1.0, 0.0, 1.0]
    p = build_class_prompts(text_model(tiny_clip), names).prompts
    used = int(p.eot_pos.max()) + 1
    g = torch.Generator().manual_seed(7)
    torch.randn(2, used, 128, generator=g)  # the noise draws come first
    dirs = torch.randn(2, 4, 128, generator=g)
    d = dirs / dirs.norm(dim=-1, keepdim=True) * C.DEFAULT_CTX_NOISE * 128**0.5  # FPP's ctx-noise size per row

    def increase(at: torch.Tensor) -> float:
        with torch.no_grad():
            clean = _direct_features(tiny_clip, p.assemble(ctx), p.eot_pos)
            moved = _direct_features(tiny_clip, p.assemble(at), p.eot_pos)
        return float((1 - torch.nn.functional.cosine_similarity(moved, clean, dim=-1)).mean())

    for i, a in enumerate(land.alphas):
        assert land.line[i] == pytest.approx(increase(ctx + a * d[0]), abs=2e-5)
        for j, b in enumerate(land.alphas2d):
            assert float(land.grid2d[i, j]) == pytest.approx(increase(ctx + a * d[0] + b * d[1]), abs=2e-5)
        assert float(land.grid2d[i, 1]) == pytest.approx(land.line[i], abs=1e-6)  # the 1-D slice is the 2-D's axis
    assert res.cos_drop[0] == 0.0 and land.line[1] == pytest.approx(0.0, abs=1e-6)


def test_figure_panels_show_one_quantity_and_agree(
    tiny_clip: torch.nn.Module, dtd_names: list[str], fpp_prompt: fpp_init.FPPPrompt
) -> None:
    pytest.importorskip("matplotlib")
    from fpp_init.plotting import SHARPNESS_LABEL, plot_sharpness

    kw = dict(draws=4, landscape=True, points=5, points2d=3)
    results = [
        fpp_init.sharpness(tiny_clip, "a photo of a", dtd_names, **kw),
        fpp_init.sharpness(tiny_clip, fpp_prompt, **kw),
    ]
    fig = plot_sharpness(results)
    noise_ax, slice_ax, *maps = fig.axes
    for r, a, b in zip(results, noise_ax.get_lines(), slice_ax.get_lines(), strict=True):
        assert list(a.get_ydata()) == r.cos_drop and list(b.get_ydata()) == r.landscape.line  # type: ignore[union-attr]
    assert noise_ax.get_ylabel() == slice_ax.get_ylabel() == maps[-1].get_ylabel() == SHARPNESS_LABEL  # + colour bar
    assert SHARPNESS_LABEL == "loss increase 1 − cos (lower is flatter)"
    assert fig._suptitle.get_text() == (
        f"Flatness of template 'a photo of a', {results[1].label}: loss increase under perturbation (lower is flatter)"
    )
    assert "the FPP ctx-noise size" in slice_ax.get_xlabel()
    # the panels agree: the FPP prompt is flatter than the template in each of them (they contradicted
    # each other with the filter-normalised slices, whose steps grow with the FPP ctx's longer rows)
    tmpl, fpp = results
    assert fpp.drop_at(1.0) < tmpl.drop_at(1.0)
    assert max(fpp.landscape.line) < max(tmpl.landscape.line)  # type: ignore[union-attr]
    assert float(fpp.landscape.grid2d.max()) < float(tmpl.landscape.grid2d.max())  # type: ignore[union-attr]
