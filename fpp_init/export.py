"""Exports of a prompt: the CoOp checkpoint layout and a Hub-ready folder with a model card.

* :func:`export_coop` writes ``{'state_dict': {'ctx': tensor}, 'epoch': int}`` (CPU
  tensors, plain containers), so TPT-family ``--load out.pth`` works unchanged and
  ``torch.load(out, weights_only=True)`` reads it.
* :func:`build_hub_folder` writes prompt files plus a ``README.md`` model card, ready
  for :func:`huggingface_hub.upload_folder` (see :func:`fpp_init.push_fpp_prompt`).
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from . import constants as C
from ._utils import atomic_write_bytes
from ._version import __version__
from .errors import ConfigError
from .prompt import FPPPrompt, prompt_bytes

__all__ = ["export_coop", "collect_prompts", "build_hub_folder", "model_card"]

PromptLike = FPPPrompt | str | os.PathLike[str]


def collect_prompts(prompts: PromptLike | Sequence[PromptLike], *, allow_pickle: bool = False) -> list[FPPPrompt]:
    """Prompts from prompt objects, local paths or ``hf://`` references (all validated)."""
    from ._load import load_fpp_prompt

    if isinstance(prompts, (FPPPrompt, str, os.PathLike)):
        prompts = [prompts]
    if not isinstance(prompts, Sequence):
        raise ConfigError(f"expected an FPPPrompt, a path or a list of them, got {type(prompts).__name__}")
    items = list(prompts)
    if not items:
        raise ConfigError("no prompts given; pass at least one FPPPrompt or prompt file")
    out = []
    for i, item in enumerate(items):
        if isinstance(item, FPPPrompt):
            out.append(item)
        elif isinstance(item, (str, os.PathLike)):
            out.append(load_fpp_prompt(item, allow_pickle=allow_pickle))
        else:
            raise ConfigError(f"prompts[{i}] is {type(item).__name__}; expected an FPPPrompt or a prompt file path")
    return out


def export_coop(prompt: PromptLike, out: str | os.PathLike[str], *, epoch: int | None = None) -> Path:
    """Write ``prompt`` as a CoOp-style checkpoint ``{'state_dict': {'ctx': ctx}, 'epoch': epoch}``.

    The tensor is a fresh fp32 CPU tensor, so ``torch.load(out)`` needs no ``map_location``
    and works with ``weights_only=True``. ``epoch`` defaults to the FPP step count
    (informational; TPT's ``--load`` reads only ``ctx``). Written atomically.
    """
    (p,) = collect_prompts(prompt)
    if epoch is None:
        steps = p.config.get("steps")
        epoch = steps if isinstance(steps, int) and not isinstance(steps, bool) else 0
    if isinstance(epoch, bool) or not isinstance(epoch, int):
        raise ConfigError(f"epoch must be an int, got {epoch!r}")
    ctx = p.ctx.detach().to(device="cpu", dtype=torch.float32).contiguous().clone()
    buf = io.BytesIO()
    torch.save({"state_dict": {C.CTX_KEY: ctx}, "epoch": int(epoch)}, buf)
    return atomic_write_bytes(out, buf.getvalue())


def _file_record(name: str, p: FPPPrompt) -> dict[str, Any]:
    return {
        "file": name,
        "backbone": p.backbone,
        "n_ctx": p.n_ctx,
        "width": p.width,
        "template": p.template,
        "class_agnostic": p.class_agnostic,
        "num_classes": p.num_classes,
        "classnames": p.classnames,
        "fingerprint": p.fingerprint,
        "fpp_init_version": p.version,
        "config": p.config or None,
        "final_losses": {k: round(float(v), 6) for k, v in p.final_losses.items()} or None,
    }


def model_card(
    prompts: Sequence[FPPPrompt],
    filenames: Sequence[str],
    *,
    repo_id: str | None = None,
    license: str | None = None,
) -> str:
    """The ``README.md`` text (YAML front matter + body) describing how the files were made."""
    from huggingface_hub import ModelCardData

    from .hub import base_model_id

    if len(filenames) != len(prompts) or not prompts:
        raise ConfigError(f"model_card needs one file name per prompt, got {len(filenames)} for {len(prompts)}")
    records = [_file_record(n, p) for n, p in zip(filenames, prompts, strict=True)]
    backbones = sorted({p.backbone or "unknown" for p in prompts})
    base = sorted({b for b in (base_model_id(p.backbone) for p in prompts) if b})
    meta: dict[str, Any] = {
        "library_name": "fpp-init",
        "tags": ["fpp-init", "clip", "prompt-learning", "test-time-adaptation", "safetensors"],
        "fpp_init": {"format_version": C.FORMAT_VERSION, "files": records},
    }
    if base:
        meta["base_model"] = base[0] if len(base) == 1 else base
    if license:
        meta["license"] = license
    yaml = ModelCardData(**meta).to_yaml()

    ref = repo_id or "OWNER/REPO"
    first = filenames[0]
    rows = []
    for r in records:
        cfg = r["config"] or {}
        losses = r["final_losses"]
        shown = ", ".join(f"{k} {v:.4g}" for k, v in losses.items()) if losses else "not recorded"
        classes = "any (class-agnostic)" if r["class_agnostic"] else f"{len(r['classnames'] or [])} fixed classes"
        rows.append(
            f"| `{r['file']}` | {r['backbone'] or 'unknown'} | {r['n_ctx']} x {r['width']} | "
            f"{json.dumps(r['template'])} | {classes} | {cfg.get('seed', '-')} | {cfg.get('steps', '-')} | "
            f"{shown} | {r['fpp_init_version']} |"
        )
    provenance_missing = [r["file"] for r in records if not r["config"]]
    lines = [
        yaml.strip().join(["---\n", "\n---"]),
        "",
        f"# FPP prompt{'s' if len(records) > 1 else ''} for CLIP {', '.join(backbones)}",
        "",
        "Context vectors pretrained with [fpp-init](https://pypi.org/project/fpp-init/), an implementation of",
        "FPP (flatness-aware prompt pretraining, Jang et al., CVPR 2026, arXiv 2604.27715): initial prompts for",
        "CLIP test-time prompt tuning (TPT, C-TPT, O-TPT, ...). The pretraining is data-free: it uses only the",
        "CLIP text tower, the hand-written template and (for class-specific files) the class names.",
        "",
        "## How the files were produced",
        "",
        "| file | backbone | n_ctx x width | template | classes | seed | steps | final losses | fpp-init |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        "The full configuration (every `FPPConfig` field, `flat_weight` resolved), the final losses, the class",
        "names and the text-tower fingerprint of each file are in the `fpp_init` block of this card's metadata",
        "and in each file's safetensors header.",
    ]
    if provenance_missing:
        lines += [
            "",
            f"No FPP configuration is recorded for {', '.join(f'`{n}`' for n in provenance_missing)}: "
            "converted from a tensor or a CoOp checkpoint, not produced by `fpp-init pretrain`.",
        ]
    lines += [
        "",
        "## Usage",
        "",
        "```python",
        "import fpp_init",
        "",
        f'prompt = fpp_init.load_fpp_prompt("hf://{ref}/{first}")',
        "prompt.ctx  # [n_ctx, D] float32",
        "# check it against your CLIP model (text-tower fingerprint):",
        f'# fpp_init.load_fpp_prompt("hf://{ref}/{first}", model=clip_model)',
        "```",
        "",
        "Zero-code path for TPT-family repositories (`--load` expects a CoOp checkpoint):",
        "",
        "```bash",
        f"fpp-init export hf://{ref}/{first} --coop fpp_coop.pth",
        "python tpt_classification.py ... --load fpp_coop.pth",
        "```",
        "",
        "Each file also loads with plain `safetensors.torch.load_file(path)['ctx']`.",
        "",
        "## Limitations",
        "",
        "- No accuracy or calibration figures are claimed for these files: they were not evaluated when this",
        "  card was written. Evaluate them on your own data.",
        "- A prompt fits only the text tower it was pretrained for (same backbone and weights; see the",
        "  fingerprint). A class-specific prompt was pretrained for the listed class names only.",
        "",
        f"Card generated by fpp-init {__version__}.",
        "",
    ]
    return "\n".join(lines)


def build_hub_folder(
    prompts: PromptLike | Sequence[PromptLike],
    folder: str | os.PathLike[str],
    *,
    filenames: Sequence[str] | None = None,
    repo_id: str | None = None,
    license: str | None = None,
    overwrite: bool = False,
) -> list[Path]:
    """Write the prompt files and a ``README.md`` model card into ``folder``; the written paths.

    ``folder`` must be absent or empty unless ``overwrite=True``. File names default to
    :func:`fpp_init.hub.default_filename`; duplicates are refused. Everything is validated
    and serialised before the first file is written.
    """
    from .hub import default_filename

    items = collect_prompts(prompts)
    if filenames is None:
        names = [default_filename(p) for p in items]
    else:
        names = list(filenames)
        if len(names) != len(items):
            raise ConfigError(f"{len(names)} file names for {len(items)} prompts; give one name per prompt")
    for name in names:
        if not isinstance(name, str) or not name.endswith(".safetensors") or "/" in name or "\\" in name:
            raise ConfigError(f"file name {name!r} must be a plain name ending in .safetensors")
        if name.lower() == "readme.md":
            raise ConfigError("README.md is reserved for the model card")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"two prompts would be written as {dupes}; pass filenames= (CLI: --name) to tell them apart")
    root = Path(folder)
    if root.exists() and not root.is_dir():
        raise ConfigError(f"{str(root)!r} exists and is not a folder")
    if root.is_dir() and any(root.iterdir()) and not overwrite:
        raise ConfigError(
            f"folder {str(root)!r} is not empty; choose a new folder or pass overwrite=True (CLI: --force)"
        )
    card = model_card(items, names, repo_id=repo_id, license=license).encode("utf-8")
    blobs = [prompt_bytes(p) for p in items]
    written = [atomic_write_bytes(root / n, b) for n, b in zip(names, blobs, strict=True)]
    written.append(atomic_write_bytes(root / "README.md", card))
    return written
