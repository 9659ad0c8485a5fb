"""The design registry: coverage by stand-ins, detection without order effects, ambiguity, and a design
registered from outside the package (one class + register_design, no other file touched)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import torch
from helpers import FAST, n_words, tokenize
from standins import covered_designs, get_coop, get_tpt
from standins.tpt import TextEncoder
from torch import nn

import fpp_init
from fpp_init.adapters import PromptDesign, detect, register_design, registered_designs
from fpp_init.adapters import _registry as registry
from fpp_init.adapters.tpt import TPTDesign
from fpp_init.errors import AdapterError

NAMES = ["banded", "blotchy", "braided", "bubbly"]


@pytest.fixture
def restore_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Designs registered by a test are gone after it."""
    monkeypatch.setattr(registry, "_DESIGNS", list(registry._DESIGNS))
    yield


def test_every_registered_design_has_a_stand_in(tiny_clip: torch.nn.Module) -> None:
    covers = covered_designs()
    designs = {d.name: d for d in registered_designs()}
    assert sorted(covers) == sorted(designs)  # no design without a stand-in, no stand-in of nothing
    for name, design in designs.items():
        model = covers[name](tiny_clip, NAMES)
        if design.refusal is not None:
            with pytest.raises(AdapterError, match=re.escape(design.refusal)):
                detect(model)
        else:
            assert type(detect(model)) is design, name


def test_detection_does_not_depend_on_the_registry_order(
    tiny_clip: torch.nn.Module, restore_registry: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    covers = covered_designs()
    models = {name: build(tiny_clip, NAMES) for name, build in covers.items()}

    def outcome(model: nn.Module) -> str:
        try:
            return detect(model).name
        except AdapterError as exc:
            return str(exc)

    forward = {name: outcome(m) for name, m in models.items()}
    monkeypatch.setattr(registry, "_DESIGNS", list(reversed(registry._DESIGNS)))
    assert {name: outcome(m) for name, m in models.items()} == forward
    assert forward["tpt"] == "tpt" and forward["dynaprompt"] == "dynaprompt"  # the refinement wins either way


def test_tps_is_refused_before_the_tpt_design_it_resembles(tiny_clip: torch.nn.Module) -> None:
    model = covered_designs()["tps"](tiny_clip, NAMES)
    assert TPTDesign.matches(model)  # ctx + ctx_init_state + two-argument encoder: looks like TPT
    ctx = model.prompt_learner.ctx.detach().clone()
    with pytest.raises(AdapterError, match="TPS's ProtoTextPromptLearner"):
        fpp_init.apply(model, **FAST)
    assert torch.equal(model.prompt_learner.ctx.detach(), ctx) and "_fpp_init_state" not in vars(model.prompt_learner)


class TwinDesign(PromptDesign):
    """Another reading of the TPT layout (ctx + ctx_init_state, two-argument encoder), not a refinement."""

    name = "twin"
    description = "a second reading of the TPT layout"


def test_a_model_matching_two_designs_is_ambiguous(tiny_clip: torch.nn.Module, restore_registry: None) -> None:
    register_design(TwinDesign)
    model = get_tpt(tiny_clip, NAMES)
    ctx = model.prompt_learner.ctx.detach().clone()
    state = model.prompt_learner.ctx_init_state
    with pytest.raises(AdapterError, match=r"several prompt-learner designs, 'tpt' .* and 'twin' .*TwinDesign"):
        fpp_init.apply(model, **FAST)
    assert torch.equal(model.prompt_learner.ctx.detach(), ctx) and model.prompt_learner.ctx_init_state is state
    assert "reset_classnames" not in vars(model.prompt_learner)


def test_register_design_refuses_what_it_cannot_register(restore_registry: None) -> None:
    with pytest.raises(AdapterError, match="PromptDesign subclass"):
        register_design(int)  # type: ignore[arg-type]
    with pytest.raises(AdapterError, match="no short name"):
        register_design(type("Nameless", (PromptDesign,), {}))
    with pytest.raises(AdapterError, match=r"'tpt' is already registered \(TPTDesign\)"):
        register_design(type("Again", (PromptDesign,), {"name": "tpt"}))
    before = registered_designs()
    assert register_design(TPTDesign) is TPTDesign and registered_designs() == before  # twice: harmless


# -- a design from outside the package ----------------------------------------------------------------
class SavedPromptLearner(nn.Module):
    """A made-up codebase: the initial prompt is a buffer ``saved_ctx`` that ``reset()`` copies into ``ctx``;
    the template ends the prompt (``ctx`` after the class name would be refused, so it comes first)."""

    def __init__(self, clip_model: nn.Module, classnames: list[str], template: str = "a photo of a") -> None:
        super().__init__()
        self.n_ctx = n_words(template)
        tokens = tokenize([f"{template} {n.replace('_', ' ')}." for n in classnames])
        with torch.no_grad():
            emb = clip_model.token_embedding(tokens)
        self.ctx = nn.Parameter(emb[0, 1 : 1 + self.n_ctx].clone())
        self.register_buffer("saved_ctx", self.ctx.detach().clone())
        self.register_buffer("token_prefix", emb[:, :1])
        self.register_buffer("token_suffix", emb[:, 1 + self.n_ctx :])
        self.tokenized_prompts = tokens
        self.classnames = [n.replace("_", " ") for n in classnames]

    def reset(self) -> None:
        self.ctx.copy_(self.saved_ctx)

    def forward(self) -> torch.Tensor:
        ctx = self.ctx[None].expand(len(self.classnames), -1, -1)
        return torch.cat([self.token_prefix, ctx, self.token_suffix], 1)


class SavedPromptModel(nn.Module):
    def __init__(self, clip_model: nn.Module, classnames: list[str]) -> None:
        super().__init__()
        self.text_encoder = TextEncoder(clip_model)
        self.prompt_learner = SavedPromptLearner(clip_model, classnames)


class SavedPromptDesign(PromptDesign):
    """The whole adapter of the made-up codebase."""

    name = "saved_prompt"
    description = "saved-prompt design (ctx + saved_ctx buffer)"
    required = (("saved_ctx", "the buffer its reset() restores"),)
    replaced = ("saved_ctx",)

    def current_init(self) -> torch.Tensor:
        return self.learner.saved_ctx.detach().float().cpu().clone()

    def install(self, prompt_ctx: torch.Tensor) -> None:
        self.learner.saved_ctx = self.write_ctx(prompt_ctx).clone()


def test_a_design_registered_from_outside_is_served_by_apply(
    tiny_clip: torch.nn.Module, restore_registry: None
) -> None:
    model = SavedPromptModel(tiny_clip, NAMES)
    with pytest.raises(AdapterError, match=r"no supported prompt-learner design matches \(tpt: TPT design"):
        fpp_init.apply(model, **FAST)  # not yet known
    assert register_design(SavedPromptDesign) is SavedPromptDesign
    assert registered_designs()[-1] is SavedPromptDesign
    lrn = model.prompt_learner
    saved = lrn.saved_ctx
    before = lrn.ctx.detach().clone()
    handle = fpp_init.apply(model, **FAST)
    assert handle.design == "saved_prompt" and isinstance(handle.adapter, SavedPromptDesign)
    reference = fpp_init.pretrain_flat_prompt(
        tiny_clip, NAMES, template="a photo of a", steps=3, seed=1, progress=False
    )
    torch.testing.assert_close(handle.prompt.ctx, reference.ctx, atol=1e-5, rtol=0)  # the fast tower, its fingerprint
    assert handle.prompt.fingerprint == reference.fingerprint
    with torch.no_grad():
        lrn.ctx.add_(1.0)  # a tuning step
        model.prompt_learner.reset()
    torch.testing.assert_close(lrn.ctx.detach(), handle.prompt.ctx)  # the codebase's own reset restores FPP
    assert fpp_init.apply(model, **FAST) is handle
    handle.remove()
    assert lrn.saved_ctx is saved and torch.equal(lrn.ctx.detach(), before)


def test_other_refusals_still_name_what_was_found(tiny_clip: torch.nn.Module) -> None:
    model = get_coop(tiny_clip, NAMES)
    del model.prompt_learner.ctx_init_state  # no state a reset could restore
    with pytest.raises(AdapterError, match=r"PromptLearner with attributes \['ctx', 'token_prefix'.*no supported"):
        fpp_init.apply(model, **FAST)
    model = get_coop(tiny_clip, NAMES)
    del model.prompt_learner.ctx
    model.prompt_learner.ctx = torch.zeros(4, 128)  # a plain tensor, not a Parameter
    with pytest.raises(AdapterError, match=r"without an nn\.Parameter 'ctx'"):
        fpp_init.apply(model, **FAST)
