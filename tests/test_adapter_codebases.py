"""fpp_init.apply on the layouts of A-TPT, TTA-VLM, mariodoebler/test-time-adaptation (TPT on OpenCLIP) and TAPT
(stand-ins in tests/standins/: atpt, ttavlm, mariodoebler, tapt), each through the codebase's own steps."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import torch
from helpers import FAST, assert_state, callable_tower, flags, reference, state_of
from standins.atpt import get_atpt, tuning_step
from standins.tapt import Trainer, get_tapt_v, get_tapt_vli, get_tapt_vlj
from standins.ttavlm import DynaPromptTrainer, InstanceTrainer, get_coop, get_coop_dynamic

import fpp_init
from fpp_init._runtime import frozen
from fpp_init.adapters import registered_designs
from fpp_init.algorithm import optimize_flat_prompt
from fpp_init.config import FPPConfig
from fpp_init.errors import AdapterError

pytestmark = pytest.mark.slow  # the upstream stand-in models: part of the full suite; skipped by -m 'not slow'

NAMES_A = ["banded", "blotchy", "braided", "bubbly"]
NAMES_B = ["golden retriever", "tabby cat", "sea lion"]


def features(n: int = 6, dim: int = 64) -> torch.Tensor:
    x = torch.randn(n, dim, generator=torch.Generator().manual_seed(0))
    return x / x.norm(dim=-1, keepdim=True)


# -- A-TPT ----------------------------------------------------------------------------------------
def test_atpt_installs_fpp_and_its_angular_tuning_moves_it(tiny_clip: torch.nn.Module) -> None:
    model = get_atpt(tiny_clip, NAMES_A)
    for name, param in model.named_parameters():
        param.requires_grad_("prompt_learner" in name)
    optimizer = torch.optim.AdamW(model.prompt_learner.parameters(), 5e-3)
    optim_state = copy.deepcopy(optimizer.state_dict())
    model.reset_classnames(NAMES_A, "ViT-B/16")  # the line goes after it
    found, rng = flags(model), torch.get_rng_state()
    handle = fpp_init.apply(model, **FAST)
    assert handle.design == "tpt" and flags(model) == found and torch.equal(torch.get_rng_state(), rng)
    torch.testing.assert_close(handle.prompt.ctx, reference(tiny_clip, NAMES_A).ctx, atol=1e-5, rtol=0)
    pl = model.prompt_learner
    model.ang_norm_cal = True  # atpt_classification.py sets it before the loop
    for _ in range(2):
        with torch.no_grad():
            model.reset()
        optimizer.load_state_dict(optim_state)
        assert torch.equal(pl.ctx.detach(), handle.prompt.ctx)
        tuning_step(model, features(), optimizer)
        assert float((pl.ctx.detach() - handle.prompt.ctx).abs().max()) > 1e-3
        assert isinstance(model.min_ang_norm_mean, float)
    model.reset_classnames(NAMES_B, "ViT-B/16")
    torch.testing.assert_close(handle.prompt.ctx, reference(tiny_clip, NAMES_B).ctx, atol=1e-5, rtol=0)
    handle.remove()
    assert "reset_classnames" not in vars(pl) and pl.ctx_init_state is not handle.prompt.ctx


# -- TTA-VLM --------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["tpt", "ctpt", "rtpt", "rlcf"])
def test_ttavlm_instance_methods_on_the_30_position_model(tiny_clip: torch.nn.Module, method: str) -> None:
    model = get_coop(tiny_clip, NAMES_A)  # CLIP weights keep requires_grad (the script never freezes them)
    assert (
        model.prompt_learner.tokenized_prompts.shape[1] == 30 and model.text_encoder.positional_embedding.shape[0] == 30
    )
    found = flags(model)
    handle = fpp_init.apply(model, **FAST)  # instance_tta.py, after model.cuda(), before the trainer
    assert handle.design == "tpt" and flags(model) == found
    ref = reference(tiny_clip, NAMES_A)  # the 77-position CLIP: the same prompt
    torch.testing.assert_close(handle.prompt.ctx, ref.ctx, atol=1e-5, rtol=0)
    assert handle.prompt.fingerprint == ref.fingerprint
    trainer = InstanceTrainer(model, method)
    trainer.prepare_model_and_optimization()
    pl = model.prompt_learner
    for _ in range(2):
        trainer.pre_adaptation()
        assert torch.equal(pl.ctx.detach(), handle.prompt.ctx)
        trainer.adaptation_process(features())
        assert float((pl.ctx.detach() - handle.prompt.ctx).abs().max()) > 1e-3
    assert trainer.optimizer.param_groups[0]["params"][0] is pl.ctx
    handle.remove()


def test_ttavlm_a_77_position_prompt_file_installs_into_the_30_position_model(
    tiny_clip: torch.nn.Module, tmp_path: Path
) -> None:
    path = reference(tiny_clip, NAMES_A).save(tmp_path / "fpp.safetensors")  # fpp-init pretrain --weights ...
    model = get_coop(tiny_clip, NAMES_A)
    handle = fpp_init.apply(model, str(path))  # strict: the fingerprint fits
    assert torch.equal(model.prompt_learner.ctx_init_state, handle.prompt.ctx)


def test_ttavlm_online_dynaprompt_and_its_reinitialisation(tiny_clip: torch.nn.Module) -> None:
    model = get_coop_dynamic(tiny_clip, NAMES_A, num_p=10)
    pl = model.prompt_learner
    assert pl.ctx.shape == (10, 4, 128) and not pl.ctx.detach().any()
    template = pl.init_ctx.clone()
    handle = fpp_init.apply(model, **FAST)  # online_tta.py, --algorithm dynaprompt
    assert handle.design == "dynaprompt"
    torch.testing.assert_close(handle.prompt.ctx, reference(tiny_clip, NAMES_A).ctx, atol=1e-5, rtol=0)
    torch.testing.assert_close(pl.init_ctx, handle.prompt.ctx)
    assert not pl.ctx.detach().any()  # the residuals stay zero
    trainer = DynaPromptTrainer(model)
    for i in (0, 1):  # online: never reset between samples
        trainer.adaptation_process(features(), i)
    moved = (pl.ctx.detach() + pl.init_ctx).sub(handle.prompt.ctx).abs().amax(dim=(1, 2))
    assert float(moved[0]) > 1e-4 and float(moved[1]) > 1e-4 and float(moved[2:].max()) == 0
    pl.ctx_use = [1] * 10  # every prompt used: the least recently used one is re-initialised
    pl.ctx_order = [0, *[j for j in pl.ctx_order if j != 0]]  # a stream where the tuned prompt 0 is the oldest
    assert trainer.reinitialise_oldest() == 0
    torch.testing.assert_close(pl.ctx[0].detach() + pl.init_ctx, handle.prompt.ctx)  # ctx * 0 + init_ctx = FPP
    with torch.no_grad():
        model.reset()
    assert torch.equal(pl.ctx.detach() + pl.init_ctx, handle.prompt.ctx.expand(10, -1, -1))
    handle.remove()
    assert torch.equal(pl.init_ctx, template)


# -- mariodoebler: TPT on OpenCLIP -----------------------------------------------------------------
def test_mariodoebler_tpt_on_open_clip(tmp_path: Path) -> None:
    pytest.importorskip("open_clip")
    from standins.mariodoebler import TPTMethod, get_model, tiny_open_clip

    oc = tiny_open_clip()
    names = ["airplane", "automobile", "bird", "cat"]
    model = get_model(names, oc)
    pl = model.prompt_learner
    found, rng = flags(model), torch.get_rng_state()
    handle = fpp_init.apply(model, **FAST)  # get_model, tpt branch, after the MODEL.CKPT_PATH block
    assert handle.design == "tpt" and flags(model) == found and torch.equal(torch.get_rng_state(), rng)
    ref = reference(oc, names)  # pretrain_flat_prompt on the same OpenCLIP model object
    torch.testing.assert_close(handle.prompt.ctx, ref.ctx, atol=1e-5, rtol=0)
    assert handle.prompt.fingerprint == ref.fingerprint and handle.prompt.classnames == names
    method = TPTMethod(model)  # deep-copies the model state: the FPP ctx is in it
    views = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        method(views)  # their evaluation loop runs under no_grad; forward resets per sample, then tunes
    assert float((pl.ctx.detach() - handle.prompt.ctx).abs().max()) > 1e-3
    method.reset()  # TTAMethod.reset(): load_state_dict of the copy
    assert torch.equal(pl.ctx.detach(), handle.prompt.ctx) and torch.equal(pl.ctx_init_state, handle.prompt.ctx)
    with torch.no_grad():
        pl.ctx.add_(1.0)
        model.reset()
    assert torch.equal(pl.ctx.detach(), handle.prompt.ctx)
    path = handle.prompt.save(tmp_path / "oc.safetensors")
    handle.remove()
    other = get_model(names, oc)
    fpp_init.apply(other, str(path))
    assert torch.equal(other.prompt_learner.ctx.detach(), handle.prompt.ctx)


# -- TAPT ------------------------------------------------------------------------------------------
def test_tapt_vlj_on_the_maple_design(clip3: torch.nn.Module) -> None:
    trainer = Trainer(get_tapt_vlj(clip3, NAMES_A))  # PROMPT_DEPTH 9: 8 deep prompts for 3 text blocks
    trainer.load_model()  # --model-dir: trained prompts into ctx etc.; ctx_init_state stays the words
    model = trainer.model
    pl = model.prompt_learner
    loaded = pl.ctx.detach().clone()
    assert len(pl.compound_prompts_text) == 8 and not torch.equal(pl.ctx_init_state, loaded)
    with pytest.warns(fpp_init.errors.BeyondPaperWarning, match="image branch"):
        handle = fpp_init.apply(model, **FAST)  # train.py, after load_model, before tapt()
    assert handle.design == "maple"
    torch.testing.assert_close(handle.predefined, loaded)
    deep = [p.detach().clone() for p in pl.compound_prompts_text]
    enc = model.text_encoder
    tower = callable_tower(lambda x, t: enc(x, t, deep), 128)
    with frozen([enc]):
        direct = optimize_flat_prompt(
            tower, handle.adapter.embedded(), loaded, FPPConfig(steps=3, seed=1), progress=False
        )
    torch.testing.assert_close(handle.prompt.ctx, direct.ctx, atol=1e-5, rtol=0)
    starts = trainer.tapt(torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0)))
    assert all(torch.equal(s, handle.prompt.ctx) for s in starts)  # set_prompt_inits() snapshot, then reset()
    assert float((pl.ctx.detach() - handle.prompt.ctx).abs().max()) > 1e-5  # their step moved it

    again = Trainer(get_tapt_vlj(clip3, NAMES_A))
    again.load_model()
    before = state_of(again.model)
    state = again.model.prompt_learner.ctx_init_state
    with pytest.warns(fpp_init.errors.BeyondPaperWarning):
        h = fpp_init.apply(again.model, handle.prompt)
    h.remove()
    assert again.model.prompt_learner.ctx_init_state is state
    assert_state(again.model, before)


@pytest.mark.parametrize(("build", "name"), [(get_tapt_vli, "tapt_vli"), (get_tapt_v, "tapt_v")])
def test_tapt_other_trainers_are_refused_in_one_line(clip3: torch.nn.Module, build: object, name: str) -> None:
    refusal = {d.name: d.refusal for d in registered_designs()}[name]
    model = build(clip3, NAMES_A)  # type: ignore[operator]
    with pytest.raises(AdapterError, match=re.escape(refusal)) as err:
        fpp_init.apply(model, **FAST)
    assert "\n" not in str(err.value) and "TAPTVLJ trainer is supported" in str(err.value)
    if name == "tapt_vli":
        assert not hasattr(model.prompt_learner, "ctx_init_state") and "reset_classnames" not in vars(model)
