"""OpenCLIP and transformers CLIP models on the fast exact path: features and FPP gradients equal to each
library's own forward, one fingerprint and one FPP result for the same weights in all three libraries,
references by name and folder, and one clear line for everything refused.

Every model is tiny, random and built here from a config (no download); the transformers tokenizer is
built from the BPE file that clip-anytorch bundles, laid out as the ``openai/clip-vit-*`` repos have it.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from helpers import build_tiny_clip, classnames
from torch import nn

import fpp_init
from fpp_init.cli import main
from fpp_init.errors import MissingDependencyError, ModelLoadError, PromptMismatchError
from fpp_init.models import build_class_prompts, text_model
from fpp_init.models.clip import import_clip
from fpp_init.towers.hf import hf_text_transformer

# each library's tests skip alone when its extra is missing (the others still run)
try:
    import open_clip
except ImportError:  # the [open_clip] extra
    open_clip = None
try:
    import transformers
except ImportError:  # the [transformers] extra
    transformers = None
needs_open_clip = pytest.mark.skipif(
    open_clip is None, reason="needs the open_clip extra: pip install -e '.[open_clip]'"
)
needs_transformers = pytest.mark.skipif(
    transformers is None, reason="needs the transformers extra: pip install -e '.[transformers]'"
)

TOL = 1e-5
TEXTS = ["a photo of a dog.", "a photo of a great white shark.", "a bad photo of the Eiffel Tower, at night!", "X"]
NAMES = ["banded", "blotchy", "chequered_flag", "great white shark", "a long class name of many words"]
VISION = {"layers": 1, "width": 64, "patch_size": 16, "image_size": 32, "head_width": 32}


# -- models ------------------------------------------------------------------------------------
@torch.no_grad()
def _perturb(model: nn.Module, seed: int = 0, scale: float = 0.05) -> nn.Module:
    """Move every float parameter off its init (LayerNorm weights != 1, biases != 0, LayerScale != init)."""
    gen = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        if p.is_floating_point():
            p.add_(scale * torch.randn(p.shape, generator=gen).to(p.dtype))
    return model.eval()


def _oc_model(custom_text: bool = False, quick_gelu: bool = False, cast_dtype: torch.dtype | None = None, **text):
    cfg = {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 2, **text}
    cls = open_clip.model.CustomTextCLIP if custom_text else open_clip.model.CLIP
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = cls(32, VISION, cfg, quick_gelu=quick_gelu, cast_dtype=cast_dtype)
    return _perturb(model)


def _hf_text_cfg(**kw) -> dict:
    return {
        "vocab_size": 49408,
        "hidden_size": 64,
        "intermediate_size": 256,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "max_position_embeddings": 77,
        "projection_dim": 32,
        "eos_token_id": 49407,
        **kw,
    }


def _hf_model(kind: str = "CLIPModel", **kw) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        if kind == "CLIPModel":
            vision = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2}
            cfg = transformers.CLIPConfig(
                text_config=_hf_text_cfg(**kw),
                vision_config={**vision, "image_size": 32, "patch_size": 16},
                projection_dim=32,
            )
            model = transformers.CLIPModel(cfg)
        else:
            model = getattr(transformers, kind)(transformers.CLIPTextConfig(**_hf_text_cfg(**kw)))
    return _perturb(model)


def _hf_out(out: object) -> torch.Tensor:
    """transformers 4.x ``get_text_features`` gives a tensor, 5.x an output object."""
    if isinstance(out, torch.Tensor):
        return out
    return out.text_embeds if getattr(out, "text_embeds", None) is not None else out.pooler_output  # type: ignore[attr-defined]


def _hf_encode(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    if isinstance(model, transformers.CLIPModel):
        return lambda ids: _hf_out(model.get_text_features(input_ids=ids))
    return lambda ids: _hf_out(model(input_ids=ids))


def _hf_token_embedding(model: nn.Module) -> nn.Embedding:
    return hf_text_transformer(model).embeddings.token_embedding  # type: ignore[union-attr]


def _oc_token_embedding(model: nn.Module) -> nn.Embedding:
    return model.text.token_embedding if hasattr(model, "text") else model.token_embedding  # type: ignore[return-value]


def _on_embeddings(encode, embedding: nn.Embedding, x: torch.Tensor, eot_pos: torch.Tensor) -> torch.Tensor:
    """The library's own forward (``encode(ids)``) on token embeddings ``x`` ``[B, 77, D]``: the
    embedding layer's output is replaced by ``x``; the ids only place the end-of-text token for pooling."""
    ids = torch.zeros(x.shape[:2], dtype=torch.long)
    ids[torch.arange(x.shape[0]), eot_pos] = 49407
    handle = embedding.register_forward_hook(lambda module, args, out: x.to(out.dtype))
    try:
        return encode(ids)
    finally:
        handle.remove()


# -- a real transformers CLIPTokenizer from the BPE file clip-anytorch bundles ---------------------
def write_hf_clip_tokenizer(folder: Path) -> None:
    """``vocab.json`` / ``merges.txt`` / ``tokenizer_config.json`` as in the ``openai/clip-vit-*`` repos
    (the vocabulary exactly as OpenAI's tokenizer builds it; pads with ``<|endoftext|>``)."""
    import_clip()
    from clip.simple_tokenizer import bytes_to_unicode, default_bpe

    with gzip.open(default_bpe()) as fh:
        merges = fh.read().decode("utf-8").split("\n")[1 : 49152 - 256 - 2 + 1]
    symbols = list(bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    special = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}
    config = {**special, "pad_token": "<|endoftext|>", "model_max_length": 77, "tokenizer_class": "CLIPTokenizer"}
    (folder / "tokenizer_config.json").write_text(json.dumps(config))


@pytest.fixture(scope="module")
def hf_tokenizer(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("clip-tokenizer")
    write_hf_clip_tokenizer(folder)
    return transformers.CLIPTokenizer.from_pretrained(str(folder))


@needs_transformers
def test_hf_tokenizer_gives_clip_ids(hf_tokenizer):
    clip = import_clip()
    ref = clip.tokenize(TEXTS)
    got = hf_tokenizer(TEXTS, padding="max_length", max_length=77, return_tensors="pt").input_ids
    after = torch.arange(77)[None] > ref.argmax(-1)[:, None]
    assert (got[after] == 49407).all()  # the openai repos pad with <|endoftext|>
    assert torch.equal(got.masked_fill(after, 0), ref)


# -- features equal each library's own -------------------------------------------------------------
OC_CASES = {
    "argmax_gelu": {},
    "argmax_quickgelu": {"quick_gelu": True},
    "eos_pool": {"pool_type": "eos", "eos_id": 49407},
    "layerscale": {"ls_init_value": 0.1},
    "gelu_tanh_eps": {"act_kwargs": {"approximate": "tanh"}, "norm_kwargs": {"eps": 1e-6}},
    "custom_text": {"custom_text": True, "ls_init_value": 0.5},
    "custom_block_no_extras": {"block_type": "custom"},
    "layernorm_fp32": {"cast_dtype": torch.bfloat16},  # LayerNormFp32; the weights stay fp32
    "no_projection": {"proj_type": "none"},
}


@needs_open_clip
@pytest.mark.parametrize("case", list(OC_CASES))
@torch.no_grad()
def test_open_clip_features_equal_encode_text(case):
    model = _oc_model(**OC_CASES[case])
    tm = text_model(model)
    assert tm.library == "open_clip" and tm.backbone is None
    ids = open_clip.get_tokenizer("ViT-B-16")(TEXTS)
    eot_pos = tm.read_positions(ids)
    assert torch.equal(eot_pos, ids.argmax(-1))
    ours = tm.tower.encode(tm.token_embedding[ids], eot_pos)
    torch.testing.assert_close(ours, model.encode_text(ids), atol=TOL, rtol=0)
    if case == "layerscale":
        assert tm.tower.spec.blocks[0].ls_1 is not None  # type: ignore[attr-defined]


@needs_open_clip
@torch.no_grad()
def test_open_clip_sequence_first_blocks():
    """open_clip < 2.26 ran its text transformer sequence-first; the weights, and so the tower, are the same."""
    model = _oc_model(ls_init_value=0.1)
    ids = open_clip.tokenize(TEXTS)
    before = model.encode_text(ids)
    model.transformer.batch_first = False
    for blk in model.transformer.resblocks:
        blk.attn.batch_first = False
    torch.testing.assert_close(model.encode_text(ids), before, atol=TOL, rtol=0)
    tm = text_model(model)
    torch.testing.assert_close(tm.tower.encode(tm.token_embedding[ids], ids.argmax(-1)), before, atol=TOL, rtol=0)


HF_CASES = {
    "clipmodel_legacy_eos": ("CLIPModel", {"eos_token_id": 2}),
    "clipmodel_eos": ("CLIPModel", {}),
    "clipmodel_gelu_eager": ("CLIPModel", {"hidden_act": "gelu", "_attn": "eager"}),
    "with_projection_gelu_new_eps": ("CLIPTextModelWithProjection", {"hidden_act": "gelu_new", "layer_norm_eps": 1e-6}),
    "text_model_no_projection": ("CLIPTextModel", {"eos_token_id": 2}),
}


@needs_transformers
@pytest.mark.parametrize("case", list(HF_CASES))
@torch.no_grad()
def test_hf_features_equal_get_text_features(case, hf_tokenizer):
    kind, kw = HF_CASES[case]
    kw = dict(kw)
    attn = kw.pop("_attn", None)
    model = _hf_model(kind, **kw)
    if attn:
        model.config._attn_implementation = attn
        for sub in model.modules():
            if hasattr(sub, "config"):
                sub.config._attn_implementation = attn
    ids = hf_tokenizer(TEXTS, padding="max_length", max_length=77, return_tensors="pt").input_ids  # pads with 49407
    ref = _hf_encode(model)(ids)
    for tm in (text_model(model), fpp_init.models.hf.text_model_from_hf(model, hf_tokenizer)):
        assert tm.library == "transformers"
        eot_pos = tm.read_positions(ids)
        assert torch.equal(eot_pos, (ids == 49407).int().argmax(-1))
        torch.testing.assert_close(tm.tower.encode(tm.token_embedding[ids], eot_pos), ref, atol=TOL, rtol=0)
    assert (tm.tower.spec.projection is None) == (kind == "CLIPTextModel")  # type: ignore[attr-defined]


@needs_open_clip
@needs_transformers
def test_every_tokenizer_form_gives_the_same_prompts(hf_tokenizer, tmp_path):
    """OpenCLIP's SimpleTokenizer, its module-level ``tokenize`` (what get_tokenizer returns before 2.2x), its
    HFTokenizer around a CLIP tokenizer (hf-hub models before 3.0), transformers' CLIPTokenizer and the
    bundled BPE: one set of prompt tokens."""
    write_hf_clip_tokenizer(tmp_path)
    oc_model = _oc_model()
    models = [
        text_model(oc_model),
        fpp_init.models.open_clip.text_model_from_open_clip(oc_model, open_clip.tokenize),
        fpp_init.models.open_clip.text_model_from_open_clip(oc_model, open_clip.tokenizer.HFTokenizer(str(tmp_path))),
        fpp_init.models.hf.text_model_from_hf(_hf_model(), hf_tokenizer),
        text_model(_hf_model()),
    ]
    # (not for HTML entities, ligatures, full-width letters or mojibake: transformers' fast tokenizer, the only
    # one in 5.x, skips the ftfy / html.unescape cleaning that OpenAI's and OpenCLIP's tokenizers do)
    texts = [f"a photo of a {n}." for n in NAMES] + TEXTS + ["Crème brûlée, naïve café"]
    ids = [[[tm.tokenizer.sot_id, *tm.tokenizer.encode(t), tm.tokenizer.eot_id] for t in texts] for tm in models]
    assert all(i == ids[0] for i in ids)
    for tm in models:
        torch.testing.assert_close(
            build_class_prompts(tm, NAMES).prompts.eot_pos, build_class_prompts(models[0], NAMES).prompts.eot_pos
        )


@needs_transformers
def test_hf_added_tokens_with_legacy_eos_are_refused(tmp_path):
    """With eos_token_id 2 (configs from before transformers 4.31) the feature is read at the largest id: a
    token added after <|endoftext|> would be read instead of the EOS, so such a class name is refused."""
    write_hf_clip_tokenizer(tmp_path)
    tokenizer = transformers.CLIPTokenizer.from_pretrained(str(tmp_path))
    tokenizer.add_tokens(["<fpp-new>"])
    legacy = fpp_init.models.hf.text_model_from_hf(_hf_model(vocab_size=49409, eos_token_id=2), tokenizer)
    with pytest.raises(fpp_init.errors.ClassNameError, match=r"added after <\|endoftext\|>"):
        build_class_prompts(legacy, ["<fpp-new>"])
    model = _hf_model(vocab_size=49409)  # eos_token_id 49407: read at the first EOS
    tm = fpp_init.models.hf.text_model_from_hf(model, tokenizer)
    ids = tokenizer(["a photo of a <fpp-new>."], padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        ours = tm.tower.encode(tm.token_embedding[ids], tm.read_positions(ids))
        torch.testing.assert_close(ours, _hf_encode(model)(ids), atol=TOL, rtol=0)


@needs_transformers
@torch.no_grad()
def test_hf_damaged_position_ids_are_gathered():
    """Some converted checkpoints carry a position_ids buffer that is not arange; transformers gathers with it."""
    model = _hf_model()
    embeddings = hf_text_transformer(model).embeddings  # type: ignore[union-attr]
    embeddings.position_ids.copy_(torch.arange(77).flip(0).expand_as(embeddings.position_ids))
    ids = import_clip().tokenize(TEXTS)
    tm = text_model(model)
    ours = tm.tower.encode(tm.token_embedding[ids], tm.read_positions(ids))
    torch.testing.assert_close(ours, _hf_encode(model)(ids), atol=TOL, rtol=0)


# -- FPP gradients equal each library's own ------------------------------------------------------
def _fpp_loss_gradients(tm, encode_full: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> list[torch.Tensor]:
    """d(L_align + L_flat)/d ctx through the library's full-length forward, the truncated tower and the
    shared-prefix tower (noisy features fixed, as in FPP's step)."""
    classes = build_class_prompts(tm, NAMES)
    prefix, suffix, eot_pos = classes.prompts.prefix, classes.prompts.suffix, classes.prompts.eot_pos
    gen = torch.Generator().manual_seed(0)
    ctx0 = classes.predefined_ctx + 0.05 * torch.randn(classes.predefined_ctx.shape, generator=gen)
    c, width = len(NAMES), tm.width
    with torch.no_grad():
        target = F.normalize(
            tm.tower.encode(torch.cat([prefix, classes.predefined_ctx.expand(c, -1, -1), suffix], 1), eot_pos), dim=-1
        )
        noisy_in = torch.cat([prefix, ctx0.expand(c, -1, -1), suffix], 1) + 0.1 * torch.randn(
            c, suffix.shape[1] + 5, width, generator=gen
        )
        noisy = F.normalize(tm.tower.encode(noisy_in, eot_pos), dim=-1)

    def loss(features: torch.Tensor) -> torch.Tensor:
        f = F.normalize(features, dim=-1)
        return f.shape[-1] * ((f - target) ** 2).mean() - 1.5 * (f * noisy).sum(-1).mean()

    grads = []
    for path in ("library", "truncated", "shared_prefix"):
        ctx = ctx0.clone().requires_grad_()
        full = torch.cat([prefix, ctx.expand(c, -1, -1), suffix], 1)
        if path == "library":
            padded = torch.cat([full, full.new_zeros(c, tm.context_length - full.shape[1], width)], 1)
            features = encode_full(padded, eot_pos)
        elif path == "truncated":
            features = tm.tower.encode(full, eot_pos)
        else:
            head = torch.cat([prefix[:1], ctx[None]], 1)  # SOS + ctx, shared by all classes
            features = tm.tower.encode_shared_prefix(head, suffix[None], eot_pos)[0]
        grads.append(torch.autograd.grad(loss(features), ctx)[0])
    return grads


@pytest.mark.parametrize(
    "library",
    [pytest.param("open_clip", marks=needs_open_clip), pytest.param("transformers", marks=needs_transformers)],
)
def test_fpp_gradients_equal_library_forward(library):
    if library == "open_clip":
        model = _oc_model(ls_init_value=0.1)
        encode = lambda x, eot_pos: _on_embeddings(model.encode_text, _oc_token_embedding(model), x, eot_pos)  # noqa: E731
    else:
        model = _hf_model(eos_token_id=2)
        encode = lambda x, eot_pos: _on_embeddings(_hf_encode(model), _hf_token_embedding(model), x, eot_pos)  # noqa: E731
    model.requires_grad_(False)
    library_grad, truncated, shared = _fpp_loss_gradients(text_model(model), encode)
    assert library_grad.abs().max() > 1e-3  # a real gradient
    torch.testing.assert_close(truncated, library_grad, atol=TOL, rtol=1e-4)
    torch.testing.assert_close(shared, library_grad, atol=TOL, rtol=1e-4)


# -- the same weights in all three libraries ------------------------------------------------------
def _openai_to_hf_text(state: dict[str, torch.Tensor]) -> tuple[object, dict[str, torch.Tensor]]:
    """A ``CLIPTextConfig`` and ``CLIPTextModelWithProjection`` state dict for an OpenAI CLIP state dict: the
    mapping of transformers' ``convert_clip_original_pytorch_to_hf.py`` (q/k/v = ``in_proj.chunk(3)``,
    ``ln_1/2`` -> ``layer_norm1/2``, ``c_fc/c_proj`` -> ``fc1/fc2``, projection transposed)."""
    width = state["ln_final.weight"].shape[0]
    layers = len({k.split(".")[2] for k in state if k.startswith("transformer.resblocks.")})
    config = transformers.CLIPTextConfig(
        vocab_size=state["token_embedding.weight"].shape[0],
        hidden_size=width,
        intermediate_size=state["transformer.resblocks.0.mlp.c_fc.weight"].shape[0],
        num_hidden_layers=layers,
        num_attention_heads=width // 64,
        max_position_embeddings=state["positional_embedding"].shape[0],
        hidden_act="quick_gelu",
        projection_dim=state["text_projection"].shape[1],
        eos_token_id=2,  # what the openai/clip-vit-* configs carry
    )
    out = {
        "text_model.embeddings.token_embedding.weight": state["token_embedding.weight"],
        "text_model.embeddings.position_embedding.weight": state["positional_embedding"],
        "text_model.final_layer_norm.weight": state["ln_final.weight"],
        "text_model.final_layer_norm.bias": state["ln_final.bias"],
        "text_projection.weight": state["text_projection"].t().contiguous(),
    }
    pairs = {"self_attn.out_proj": "attn.out_proj", "layer_norm1": "ln_1", "layer_norm2": "ln_2"}
    pairs.update({"mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj"})
    for i in range(layers):
        hf, oa = f"text_model.encoder.layers.{i}.", f"transformer.resblocks.{i}."
        for name, w, b in zip(
            ("q_proj", "k_proj", "v_proj"),
            state[oa + "attn.in_proj_weight"].chunk(3),
            state[oa + "attn.in_proj_bias"].chunk(3),
            strict=True,
        ):
            out[f"{hf}self_attn.{name}.weight"], out[f"{hf}self_attn.{name}.bias"] = w, b
        for h, o in pairs.items():
            for s in ("weight", "bias"):
                out[f"{hf}{h}.{s}"] = state[f"{oa}{o}.{s}"]
    return config, out


@pytest.fixture(scope="module")
def three_libraries(tmp_path_factory: pytest.TempPathFactory) -> dict[str, nn.Module]:
    """One tiny OpenAI CLIP (weights stored in fp16, as OpenAI's are) through clip-anytorch's loader,
    OpenCLIP's OpenAI-weight loader and transformers (by the conversion mapping)."""
    clip = import_clip()
    path = tmp_path_factory.mktemp("openai") / "tiny_openai.pt"
    model = build_tiny_clip(128)
    clip.model.convert_weights(model)
    torch.save(model.state_dict(), path)
    loaded, _ = clip.load(str(path), device="cpu", jit=False)
    oc = open_clip.load_openai_model(str(path), precision="fp32", device="cpu").eval()
    config, state = _openai_to_hf_text({k: v.float() for k, v in loaded.state_dict().items()})
    with torch.random.fork_rng(devices=[]):
        hf = transformers.CLIPTextModelWithProjection(config).eval()
    missing, unexpected = hf.load_state_dict(state, strict=False)
    assert not unexpected and all(k.endswith("position_ids") for k in missing), (missing, unexpected)
    return {"clip": loaded.eval(), "open_clip": oc, "transformers": hf}


@needs_open_clip
@needs_transformers
@torch.no_grad()
def test_same_weights_same_features_and_fingerprint(three_libraries):
    ids = import_clip().tokenize(TEXTS)
    ref = three_libraries["clip"].encode_text(ids)
    torch.testing.assert_close(three_libraries["open_clip"].encode_text(ids), ref, atol=TOL, rtol=0)
    torch.testing.assert_close(_hf_encode(three_libraries["transformers"])(ids), ref, atol=TOL, rtol=0)
    prints = {name: fpp_init.fingerprint_model(m) for name, m in three_libraries.items()}
    assert len(set(prints.values())) == 1, prints
    assert fpp_init.fingerprint_model(_oc_model(width=128, heads=2)) not in prints.values()


@needs_open_clip
@needs_transformers
def test_fpp_gives_the_same_prompt_in_every_library(three_libraries, tmp_path):
    names = classnames("dtd", 8)
    prompts = {
        name: fpp_init.pretrain_flat_prompt(model, names, steps=20, seed=3, progress=False)
        for name, model in three_libraries.items()
    }
    ref = prompts["clip"]
    for name, prompt in prompts.items():
        assert prompt.fingerprint == ref.fingerprint, name
        torch.testing.assert_close(prompt.ctx, ref.ctx, atol=TOL, rtol=0, msg=name)
        assert abs(prompt.final_losses["loss"] - ref.final_losses["loss"]) < TOL
    # a prompt pretrained with one library loads for the same weights held by another
    order = list(three_libraries)
    for i, name in enumerate(order):
        path = prompts[name].save(tmp_path / f"{name}.safetensors")
        other = three_libraries[order[(i + 1) % len(order)]]
        assert torch.equal(fpp_init.load_fpp_prompt(path, model=other).ctx, prompts[name].ctx)
    with pytest.raises(PromptMismatchError, match="was pretrained for text tower"):
        fpp_init.load_fpp_prompt(tmp_path / "clip.safetensors", model=_oc_model(width=128, heads=2))


# -- by reference ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``save_pretrained`` of a tiny CLIPModel next to its tokenizer files, as a Hub snapshot has them."""
    folder = tmp_path_factory.mktemp("hf") / "tiny-clip"
    _hf_model().save_pretrained(str(folder))
    write_hf_clip_tokenizer(folder)
    return folder


@needs_transformers
def test_hf_folder_by_reference_and_cli(hf_folder, tmp_path, capsys):
    rng = torch.get_rng_state()
    tm = text_model(str(hf_folder), device="cpu")
    assert torch.equal(torch.get_rng_state(), rng)  # loading left the caller's RNG alone
    assert tm.backbone == "hf:tiny-clip" and tm.library == "transformers"
    assert type(tm.model).__name__ == "CLIPModel" and tm.tokenizer.pad_id == 49407
    assert tm.fingerprint() == text_model(_hf_model()).fingerprint()

    names = tmp_path / "names.txt"
    names.write_text("\n".join(NAMES[:3]))
    out = tmp_path / "cli.safetensors"
    cli = ["pretrain", "--weights", str(hf_folder), "--classnames", str(names), "--steps", "2", "--device", "cpu"]
    assert main([*cli, "--out", str(out), "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["backbone"] == "hf:tiny-clip"
    from_cli = fpp_init.load_fpp_prompt(out, model=_hf_model())
    from_api = fpp_init.pretrain_flat_prompt(_hf_model(), NAMES[:3], steps=2, progress=False)
    assert from_cli.backbone == "hf:tiny-clip" and from_api.backbone is None  # built from a config: no name
    torch.testing.assert_close(from_cli.ctx, from_api.ctx, atol=TOL, rtol=0)  # the repo's tokenizer == CLIP's BPE


@needs_open_clip
def test_open_clip_by_reference(tmp_path):
    config = {"embed_dim": 32, "quick_gelu": True, "vision_cfg": VISION}
    config["text_cfg"] = {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 2}
    (tmp_path / "fpp-tiny-test.json").write_text(json.dumps(config))
    open_clip.add_model_config(tmp_path)
    model = _perturb(open_clip.create_model("fpp-tiny-test", pretrained=None))
    torch.save(model.state_dict(), tmp_path / "tiny.pt")
    rng = torch.get_rng_state()
    tm = text_model(f"open_clip:fpp-tiny-test/{tmp_path / 'tiny.pt'}", device="cpu")
    assert torch.equal(torch.get_rng_state(), rng)
    assert tm.backbone == "open_clip:fpp-tiny-test/tiny.pt" and tm.library == "open_clip"
    assert tm.fingerprint() == text_model(model).fingerprint()
    assert {b.activation for b in tm.tower.spec.blocks} == {"quick_gelu"}  # type: ignore[attr-defined]
    prompt = fpp_init.pretrain_flat_prompt(
        f"open_clip:fpp-tiny-test/{tmp_path / 'tiny.pt'}", NAMES[:2], steps=1, device="cpu", progress=False
    )
    assert prompt.backbone == "open_clip:fpp-tiny-test/tiny.pt"


# -- clean errors ------------------------------------------------------------------------------
def _one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message, message
    return message


@pytest.mark.parametrize(
    ("module", "ref", "extra"),
    [
        ("open_clip", "open_clip:ViT-B-16/openai", "[open_clip]"),
        ("transformers", "hf:openai/clip-vit-base-patch16", "[transformers]"),
    ],
)
def test_missing_extra_names_it(monkeypatch, module, ref, extra):
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(MissingDependencyError) as exc:
        text_model(ref, device="cpu")
    message = _one_line(exc)
    assert extra in message and "pip install" in message


@needs_open_clip
@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("open_clip:NoSuchArch/none", "unknown OpenCLIP architecture 'NoSuchArch'"),
        (
            "open_clip:ViT-B-16/no_such_tag",
            "unknown pretrained weights 'no_such_tag' for OpenCLIP 'ViT-B-16'; use one of",
        ),
        ("open_clip:ViT-B-16", "does not name the weights"),
        ("open_clip:hf-hub:just-a-name", "is not hf-hub:ORG/REPO"),
    ],
)
def test_bad_open_clip_reference(ref, message):
    with pytest.raises(ModelLoadError) as exc:
        text_model(ref, device="cpu")
    assert message in _one_line(exc)


@needs_transformers
def test_hf_folder_of_another_model(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ModelLoadError) as exc:
        text_model(str(tmp_path), device="cpu")
    assert "is a transformers 'bert' model, not CLIP" in _one_line(exc)


REFUSED = {
    "pool_last": ({"pool_type": "last"}, "pool_type 'last'"),
    "pool_first": ({"pool_type": "first"}, "pool_type 'first'"),
    "pool_none": ({"pool_type": "none"}, "pool_type 'none'"),
    "no_causal_mask": ({"no_causal_mask": True}, "no causal mask"),
    "custom_text_no_causal_mask": ({"custom_text": True, "no_causal_mask": True}, "no causal mask"),
    "embed_cls": ({"custom_text": True, "embed_cls": True}, "embed_cls"),
    "projection_bias": ({"proj_bias": True}, "projection has a bias"),
    "qk_norm": ({"qk_norm": True}, "qk_norm"),
    "scale_fc": ({"scale_fc": True}, "scale_fc"),
    "scaled_cosine": ({"scaled_cosine_attn": True}, "scaled cosine attention"),
    "eos_pool_other_token": ({"pool_type": "eos", "eos_id": 2}, "token id 2"),
}


@needs_open_clip
@pytest.mark.parametrize("case", list(REFUSED))
def test_refused_open_clip_towers_say_why(case):
    kwargs, reason = REFUSED[case]
    with pytest.raises(ModelLoadError) as exc:
        text_model(_oc_model(**kwargs))
    message = _one_line(exc)
    assert reason in message and message.startswith("OpenCLIP ")
    assert "FPP" in message  # says why FPP cannot use it


@needs_open_clip
@needs_transformers
def test_refused_hf_text_encoder_tower():
    config = transformers.RobertaConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
    )
    model = _oc_model(custom_text=True)
    model.text = open_clip.hf_model.HFTextEncoder("roberta-base", output_dim=32, config=config, proj_type="linear")
    with pytest.raises(ModelLoadError) as exc:
        text_model(model)
    assert "Hugging Face text encoder (HFTextEncoder" in _one_line(exc)


@needs_transformers
def test_refused_hf_activation():
    with pytest.raises(ModelLoadError) as exc:
        text_model(_hf_model(hidden_act="relu"))
    assert "hidden_act 'relu'" in _one_line(exc)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        pytest.param(
            lambda: _hf_model(vocab_size=1000, bos_token_id=0, eos_token_id=1),
            "has a 1000-token vocabulary, not CLIP's 49408, so CLIP's own tokenizer may not fit it; load it by reference",
            id="hf_vocab",
            marks=needs_transformers,
        ),
        pytest.param(
            lambda: _oc_model(vocab_size=1000),
            "has a 1000-token vocabulary, not CLIP's 49408; load it by reference",
            id="open_clip_vocab",
            marks=needs_open_clip,
        ),
        pytest.param(
            lambda: _hf_model(eos_token_id=5),
            "reads its text feature at token id 5 (eos_token_id) but its tokenizer ends prompts with 49407",
            id="hf_eos",
            marks=needs_transformers,
        ),
    ],
)
def test_model_objects_that_clips_tokenizer_does_not_fit_are_refused(make, message):
    with pytest.raises(ModelLoadError) as exc:
        text_model(make())
    assert message in _one_line(exc)


@needs_transformers
def test_hf_several_eos_ids_and_a_non_clip_tokenizer_are_refused():
    model = _hf_model()
    hf_text_transformer(model).eos_token_id = [49407, 2]  # type: ignore[union-attr]
    with pytest.raises(ModelLoadError) as exc:
        text_model(model)
    assert "has several eos_token_id [49407, 2]; FPP needs the one token" in _one_line(exc)
    with pytest.raises(ModelLoadError) as exc:
        fpp_init.models.hf.text_model_from_hf(_hf_model(), tokenizer=object())
    assert "the tokenizer is object, not CLIP's BPE tokenizer" in _one_line(exc)


def _cli_without_network(tmp_path: Path, cache: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``fpp-init`` in a fresh process whose Hub endpoint refuses connections (nothing listens on port 9)
    and whose Hugging Face cache is ``cache``: a machine without network, HF_HUB_OFFLINE not set."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HOME")}
    env.update(HF_HUB_CACHE=str(cache), HF_ENDPOINT="http://127.0.0.1:9")
    names = tmp_path / "names.txt"
    names.write_text("\n".join(NAMES[:3]))
    command = [sys.executable, "-m", "fpp_init", "pretrain", "--classnames", str(names), "--steps", "2", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


@needs_open_clip
@needs_transformers
def test_hub_model_without_network_loads_from_the_cache_at_once(hf_folder, tmp_path):
    """No network: a cached hf: model loads from the cache; an uncached one (hf: or open_clip:) ends in one
    line that says the Hub cannot be reached and only the cache was used (no retry messages)."""
    from helpers import make_hf_cache

    files = {p.name: p.read_bytes() for p in hf_folder.iterdir() if p.is_file()}
    cache = make_hf_cache(tmp_path / "cache", "fpp-test/tiny-clip", files)
    out = tmp_path / "p.safetensors"
    done = _cli_without_network(tmp_path, cache, "--arch", "hf:fpp-test/tiny-clip", "--out", str(out), "--quiet")
    assert done.returncode == 0, done.stderr
    assert fpp_init.load_fpp_prompt(out).backbone == "hf:fpp-test/tiny-clip"
    for ref in ("hf:fpp-test/not-cached", "open_clip:hf-hub:fpp-test/not-cached"):
        done = _cli_without_network(tmp_path, cache, "--arch", ref, "--out", str(out))
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1, done.stderr
        assert "http://127.0.0.1:9) cannot be reached" in lines[0] and "only the local" in lines[0], lines[0]
