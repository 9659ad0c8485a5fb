"""fpp_init.apply on DART (stand-in: tests/standins/dart.py, zhoujiahuan1991/AAAI2024-DART dbdfa2b).

The shared FPP ctx goes into every class row of ``text_prompts_a`` and ``text_prompts_a_init``; it is pretrained
on DART's own prompts (no final "."), through CLIP's text tower over ``model.clip``.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from helpers import CFG, FAST, assert_state, clip_tower, flags, tokenize
from standins.dart import TextEMA, get_dart

import fpp_init
from fpp_init._runtime import frozen
from fpp_init.algorithm import EmbeddedPrompts, optimize_flat_prompt
from fpp_init.errors import AdapterError
from fpp_init.towers import CausalTextTower

pytestmark = pytest.mark.slow  # the upstream stand-in models: part of the full suite; skipped by -m 'not slow'

NAMES_A = ["banded", "blotchy", "braided", "bubbly"]
NAMES_B = ["golden retriever", "tabby cat", "sea lion"]


def dart_reference(clip: torch.nn.Module, names: list[str], template: str = "a photo of a") -> torch.Tensor:
    """FPP by hand on clip-anytorch's fast tower with DART's texts (template + name, no final "."), aligned with
    the template words: what pretrain_flat_prompt does, on the prompts DART encodes."""
    tokens = tokenize([f"{template} {n}" for n in names])
    with torch.no_grad():
        emb = clip.token_embedding(tokens)
    n_ctx = len(template.split())
    prompts = EmbeddedPrompts(prefix=emb[:, :1], suffix=emb[:, 1 + n_ctx :], eot_pos=tokens.argmax(-1))
    with frozen([clip]):
        return optimize_flat_prompt(clip_tower(clip), prompts, emb[0, 1 : 1 + n_ctx], CFG, progress=False).ctx


def rows(model: torch.nn.Module, ctx: torch.Tensor) -> torch.Tensor:
    return ctx[None].expand_as(model.text_prompts_a)


def test_dart_every_class_row_gets_fpp_pretrained_on_its_own_prompts(tiny_clip: torch.nn.Module) -> None:
    model = get_dart(tiny_clip, NAMES_A)
    template_rows = model.text_prompts_a_init.clone()
    handle = fpp_init.apply(model, **FAST)
    assert handle.design == "dart" and isinstance(handle.adapter.tower(), CausalTextTower)
    torch.testing.assert_close(handle.predefined, template_rows[0])
    torch.testing.assert_close(handle.prompt.ctx, dart_reference(tiny_clip, NAMES_A), atol=1e-5, rtol=0)
    assert torch.equal(model.text_prompts_a.detach(), rows(model, handle.prompt.ctx))
    assert torch.equal(model.text_prompts_a_init, rows(model, handle.prompt.ctx))
    assert handle.prompt.fingerprint == fpp_init.fingerprint_model(tiny_clip)  # CLIP's own text tower
    assert handle.prompt.classnames == NAMES_A and handle.prompt.num_classes == len(NAMES_A)
    # pretrain_flat_prompt's prompts end with "." and DART's do not: pretraining on the live model matters
    period = fpp_init.pretrain_flat_prompt(tiny_clip, NAMES_A, template="a photo of a", steps=3, seed=1, progress=False)
    assert not torch.allclose(period.ctx, handle.prompt.ctx, atol=1e-4)
    with torch.no_grad():  # their get_text_features encodes the installed rows as the tower did
        x = torch.cat(
            [model.text_prompts_begin, model.text_prompts_a, model.text_prompts_class, model.text_prompts_end], 1
        )
        torch.testing.assert_close(
            handle.adapter.tower().encode(x, model.text_prompts_token.argmax(-1)), model.get_text_features()
        )


def test_dart_reset_tuning_and_ema_start_from_the_fpp_rows(tiny_clip: torch.nn.Module) -> None:
    model = get_dart(tiny_clip, NAMES_A)
    for name, param in model.named_parameters():  # main_worker's freeze loop ran before init_text_prompts
        param.requires_grad_(name in ("image_prompts", "text_prompts_a"))
    handle = fpp_init.apply(model, **FAST)  # the added line, right after init_text_prompts
    fpp_rows = rows(model, handle.prompt.ctx).clone()
    optimizer = torch.optim.AdamW([model.text_prompts_a, model.image_prompts], 5e-3)
    optim_state = copy.deepcopy(optimizer.state_dict())
    ema = TextEMA("text_prompts_a", model.text_prompts_a)
    assert torch.equal(ema.shadow["text_prompts_a"], fpp_rows)  # the EMA starts from the FPP rows
    images = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    for _ in range(2):  # two samples of test_time_adapt_eval
        with torch.no_grad():
            model.reset_Tclass_prompts()
        assert torch.equal(model.text_prompts_a.detach(), fpp_rows)
        model.state_dict()["text_prompts_a"].copy_(ema.apply_shadow("text_prompts_a", model.text_prompts_a, w=0.1))
        optimizer.load_state_dict(optim_state)
        probs = model(images).softmax(-1)
        (-(probs * probs.log()).sum(-1).mean()).backward()
        optimizer.step()
        optimizer.zero_grad()
        assert optimizer.param_groups[0]["params"][0] is model.text_prompts_a
        assert float((model.text_prompts_a.detach() - fpp_rows).abs().max()) > 1e-3  # their step moved it
        ema.update_one_weight("text_prompts_a", model.text_prompts_a, 0, 1.0, 5000.0)
    with torch.no_grad():
        model.reset_Tclass_prompts()
    assert torch.equal(model.text_prompts_a.detach(), fpp_rows)


def test_dart_class_set_change_twice_remove_and_caller_state(tiny_clip: torch.nn.Module) -> None:
    model = get_dart(tiny_clip, NAMES_A)
    model.clip.transformer.resblocks[0].requires_grad_(False)  # a mix, as found
    model.image_encoder.eval()
    model.train()
    template_a = model.text_prompts_a_init[0].clone()
    torch.manual_seed(11)
    rng = torch.get_rng_state()
    found = flags(model)
    handle = fpp_init.apply(model, **FAST)
    first = handle.prompt.ctx.clone()
    after = copy.deepcopy(model.state_dict())
    assert fpp_init.apply(model, **FAST) is handle
    assert_state(model, after)
    assert flags(model) == found and torch.equal(torch.get_rng_state(), rng)

    param_a = model.text_prompts_a
    model.init_text_prompts(NAMES_B)  # the next dataset: a new Parameter, hooked
    assert model.text_prompts_a is not param_a
    assert torch.equal(model.text_prompts_a.detach(), rows(model, handle.prompt.ctx))
    assert torch.equal(model.text_prompts_a_init, rows(model, handle.prompt.ctx))
    torch.testing.assert_close(handle.predefined, template_a)  # aligned with the template, not the first prompt
    torch.testing.assert_close(handle.prompt.ctx, dart_reference(tiny_clip, NAMES_B), atol=1e-5, rtol=0)
    assert handle.prompt.classnames == NAMES_B and not torch.allclose(handle.prompt.ctx, first, atol=1e-4)
    assert torch.equal(torch.get_rng_state(), rng)

    handle.remove()
    fresh = get_dart(tiny_clip, NAMES_B)  # the current class set's template rows
    assert torch.equal(model.text_prompts_a.detach(), fresh.text_prompts_a.detach())
    assert torch.equal(model.text_prompts_a_init, fresh.text_prompts_a_init)
    assert "init_text_prompts" not in vars(model) and "_fpp_init_state" not in vars(model)
    assert flags(model) == found and torch.equal(torch.get_rng_state(), rng)
    model.init_text_prompts(NAMES_A)  # no longer hooked: the template rows
    assert torch.equal(model.text_prompts_a_init[0], template_a)


def test_dart_prompt_files_install(tiny_clip: torch.nn.Module, tmp_path: Path) -> None:
    own = fpp_init.apply(get_dart(tiny_clip, NAMES_A), **FAST).prompt
    model = get_dart(tiny_clip, NAMES_A)
    handle = fpp_init.apply(model, str(own.save(tmp_path / "dart.safetensors")))
    assert torch.equal(model.text_prompts_a_init, rows(model, own.ctx))
    plain = fpp_init.pretrain_flat_prompt(tiny_clip, NAMES_A, template="a photo of a", steps=2, progress=False)
    assert fpp_init.apply(model, plain) is handle  # pretrained on the same CLIP: the fingerprint fits
    assert torch.equal(model.text_prompts_a.detach(), rows(model, plain.ctx))
    handle.remove()


def test_dart_with_upstream_ctx_init_parsing_installs_too(tiny_clip: torch.nn.Module) -> None:
    # without ctx-init-fix.diff the contexts are the embeddings of "a _ photo _" (the class token is "of"): the
    # design reads the geometry from the tensors
    model = get_dart(tiny_clip, NAMES_A, fixed_ctx_init=False)
    assert tokenize(["a_photo_of_a_banded"])[0, 1:5].tolist() == model.text_prompts_token[0, 1:5].tolist()
    handle = fpp_init.apply(model, **FAST)
    with torch.no_grad():
        model.text_prompts_a.add_(1.0)
        model.reset_Tclass_prompts()
    assert torch.equal(model.text_prompts_a.detach(), rows(model, handle.prompt.ctx))


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        (dict(CSTP=2), r"--CSTP 2 \(fpp_init serves 1"),
        (dict(learnable_text="a+cls"), r"--learnable_text 'a\+cls'"),
        (dict(share_prompts=1), r"--share_prompts 1"),
    ],
)
def test_dart_other_variants_are_refused(tiny_clip: torch.nn.Module, changes: dict, match: str) -> None:
    model = get_dart(tiny_clip, NAMES_A, **changes)
    before = model.text_prompts_a.detach().clone()
    with pytest.raises(AdapterError, match=match):
        fpp_init.apply(model, **FAST)
    assert torch.equal(model.text_prompts_a.detach(), before) and "init_text_prompts" not in vars(model)


def test_dart_before_its_class_set_and_modified_rows_are_refused(tiny_clip: torch.nn.Module) -> None:
    model = get_dart(tiny_clip, NAMES_A)
    del model.text_prompts_end
    with pytest.raises(AdapterError, match=r"after model\.init_text_prompts\(classnames\)"):
        fpp_init.apply(model, **FAST)
    model = get_dart(tiny_clip, NAMES_A)
    model.text_prompts_a_init[1] += 1.0  # not DART's initialisation: rows differ
    with pytest.raises(AdapterError, match="same context in every class row"):
        fpp_init.apply(model, **FAST)
    model = get_dart(tiny_clip, NAMES_A)
    model.get_text_features = lambda: torch.zeros(len(NAMES_A), 64)  # a modified DART
    with pytest.raises(AdapterError, match="modified DART"):
        fpp_init.apply(model, **FAST)
    assert "init_text_prompts" not in vars(model)
