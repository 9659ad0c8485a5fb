"""fpp_init.apply on TCA (stand-in: tests/standins/tca.py, rhebbalaguppe/TCA_PromptWithoutPanic b9645fd).

FPP is pretrained on the C x A attribute prompts TCA encodes, with lambda = 1 + 15/C counting classes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import FAST, assert_state, state_of
from standins.tca import get_tca, make_attributes

import fpp_init
from fpp_init.errors import AdapterError

pytestmark = pytest.mark.slow  # the upstream stand-in models: part of the full suite; skipped by -m 'not slow'

NAMES_A = ["banded", "blotchy", "braided", "bubbly"]
NAMES_B = ["golden retriever", "tabby cat", "sea lion"]
ATTRIBUTES = make_attributes(NAMES_A + NAMES_B)


def attribute_names(names: list[str], per_class: int = 2) -> list[str]:
    """The "class names" whose prompts "a photo of a <name>." are the ones TCA encodes."""
    return [f"{a} {n}" for n in names for a in ATTRIBUTES[n][:per_class]]


def reference(clip: torch.nn.Module, names: list[str], **kw: object) -> fpp_init.FPPPrompt:
    return fpp_init.pretrain_flat_prompt(
        clip, attribute_names(names), template="a photo of a", steps=3, seed=1, progress=False, **kw
    )


def test_tca_is_pretrained_on_its_attribute_prompts_with_lambda_by_classes(tiny_clip: torch.nn.Module) -> None:
    model = get_tca(tiny_clip, NAMES_A, attributes=ATTRIBUTES)
    pl = model.prompt_learner
    assert pl.tokenized_prompts.shape[0] == 2 * len(NAMES_A) and pl.n_cls == len(NAMES_A)
    handle = fpp_init.apply(model, **FAST)
    assert handle.design == "tca"
    by_classes = reference(tiny_clip, NAMES_A, flat_weight=1 + 15 / 4)
    torch.testing.assert_close(handle.prompt.ctx, by_classes.ctx, atol=1e-5, rtol=0)
    assert handle.prompt.config["flat_weight"] == pytest.approx(1 + 15 / 4)
    assert handle.prompt.num_classes == 4 and handle.prompt.classnames == NAMES_A
    assert handle.prompt.fingerprint == by_classes.fingerprint
    by_rows = reference(tiny_clip, NAMES_A)  # lambda = 1 + 15/8: what counting the prompt rows would give
    assert by_rows.config["flat_weight"] == pytest.approx(1 + 15 / 8)
    assert not torch.allclose(by_rows.ctx, handle.prompt.ctx, atol=1e-6)
    torch.testing.assert_close(pl.ctx_init_state, handle.prompt.ctx)

    explicit = fpp_init.apply(get_tca(tiny_clip, NAMES_A, attributes=ATTRIBUTES), **dict(FAST, flat_weight=2.0))
    torch.testing.assert_close(
        explicit.prompt.ctx, reference(tiny_clip, NAMES_A, flat_weight=2.0).ctx, atol=1e-5, rtol=0
    )


def test_tca_reset_tuning_class_sets_and_remove(tiny_clip: torch.nn.Module) -> None:
    model = get_tca(tiny_clip, NAMES_A, attributes=ATTRIBUTES)
    pl = model.prompt_learner
    for name, param in model.named_parameters():  # tpt_classification.py: only the prompt learner is tuned
        param.requires_grad_("prompt_learner" in name)
    before = state_of(model)
    init_state = pl.ctx_init_state
    optimizer = torch.optim.AdamW(pl.parameters(), 5e-3)
    torch.manual_seed(2)
    rng = torch.get_rng_state()
    handle = fpp_init.apply(model, **FAST)
    assert torch.equal(torch.get_rng_state(), rng)
    image = torch.nn.functional.normalize(torch.randn(3, 64, generator=torch.Generator().manual_seed(0)), dim=-1)
    for _ in range(2):  # test_time_tuning with --run_type tpt_tca --alpha 10 --beta 35
        with torch.no_grad():
            model.reset()
        assert torch.equal(pl.ctx.detach(), handle.prompt.ctx)
        probs = model.inference(image)
        entropy = -(probs * probs.log()).sum(-1).mean()
        (entropy - 10 * model.l2_norm_mean_training + 35 * model.l2_norm_attribute_mean_training.mean()).backward()
        optimizer.step()
        optimizer.zero_grad()
        assert optimizer.param_groups[0]["params"][0] is pl.ctx
        assert float((pl.ctx.detach() - handle.prompt.ctx).abs().max()) > 1e-3

    model.reset_classnames(NAMES_B, "ViT-B/16")  # 3 classes x 2 attributes
    torch.testing.assert_close(
        handle.prompt.ctx, reference(tiny_clip, NAMES_B, flat_weight=1 + 15 / 3).ctx, atol=1e-5, rtol=0
    )
    assert handle.prompt.classnames == NAMES_B and torch.equal(pl.ctx_init_state, handle.prompt.ctx)
    model.reset_classnames(NAMES_A, "ViT-B/16")
    handle.remove()
    assert pl.ctx_init_state is init_state and "reset_classnames" not in vars(pl)
    assert_state(model, before)


def test_tca_cache_and_prompt_files(tiny_clip: torch.nn.Module, tmp_path: Path) -> None:
    opts = dict(FAST, cache=tmp_path / "cache")
    first = fpp_init.apply(get_tca(tiny_clip, NAMES_A, attributes=ATTRIBUTES), **opts)
    again = fpp_init.apply(get_tca(tiny_clip, NAMES_A, attributes=ATTRIBUTES), **opts)
    assert first.prompt.history and not again.prompt.history  # the cached prompt, made with lambda by classes
    torch.testing.assert_close(again.prompt.ctx, first.prompt.ctx)
    model = get_tca(tiny_clip, NAMES_A, attributes=ATTRIBUTES)
    handle = fpp_init.apply(model, str(first.prompt.save(tmp_path / "tca.safetensors")))
    assert torch.equal(model.prompt_learner.ctx_init_state, first.prompt.ctx)
    handle.remove()


def test_tca_multi_gpu_encoders_are_unwrapped(tiny_clip: torch.nn.Module) -> None:
    # TCA's scripts pass --multi_gpu: with several GPUs both encoders are nn.DataParallel wrappers
    model = get_tca(tiny_clip, NAMES_A, attributes=ATTRIBUTES, multi_gpu=True)
    assert isinstance(model.text_encoder, torch.nn.DataParallel)
    handle = fpp_init.apply(model, **FAST)
    assert handle.design == "tca" and handle.adapter.text_encoder is model.text_encoder.module
    torch.testing.assert_close(
        handle.prompt.ctx, reference(tiny_clip, NAMES_A, flat_weight=1 + 15 / 4).ctx, atol=1e-5, rtol=0
    )


def test_tca_without_attributes_is_tpt_and_inconsistent_rows_are_refused(tiny_clip: torch.nn.Module) -> None:
    plain = fpp_init.apply(get_tca(tiny_clip, NAMES_A, num_attributes=0, attributes=ATTRIBUTES), **FAST)
    assert plain.design == "tpt" and plain.prompt.num_classes == 4
    uneven = dict(ATTRIBUTES, banded=["red"])  # one attribute for a class: 7 rows for 4 classes x 2
    model = get_tca(tiny_clip, NAMES_A, attributes=uneven)
    assert model.prompt_learner.tokenized_prompts.shape[0] == 7
    ctx = model.prompt_learner.ctx.detach().clone()
    with pytest.raises(AdapterError, match=r"4 class names x num_attributes 2 != 7 prompt rows"):
        fpp_init.apply(model, **FAST)
    assert torch.equal(model.prompt_learner.ctx.detach(), ctx) and "reset_classnames" not in vars(model.prompt_learner)
