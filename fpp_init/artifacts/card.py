"""The model card (``README.md``) of a Hub folder of prompt files.

The card is generated from one record per prompt file; the records also live in the card's
YAML metadata (``fpp_init.files``), so a later push can read the existing card and list the
earlier files together with the new ones (as timm merges before it writes a card).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from .. import constants as const
from .._version import __version__
from .fpp_prompt import FPPPrompt
from .hub import base_model_id

__all__ = ["file_record", "records_in_card", "merge_records", "model_card"]


def file_record(name: str, p: FPPPrompt) -> dict[str, Any]:
    """What the card says about one file (also stored in the card's metadata)."""
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


def records_in_card(text: str | None) -> list[dict[str, Any]]:
    """The file records in an existing card's metadata (none if it has no fpp-init block)."""
    if not text:
        return []
    from huggingface_hub import ModelCard

    try:
        data = ModelCard(text).data.to_dict()
    except Exception:  # a hand-written card that is not valid YAML: nothing to keep
        return []
    files = (data.get("fpp_init") or {}).get("files") if isinstance(data.get("fpp_init"), dict) else None
    return (
        [r for r in files if isinstance(r, dict) and isinstance(r.get("file"), str)] if isinstance(files, list) else []
    )


def merge_records(old: Sequence[dict[str, Any]], new: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Earlier records followed by the new ones; a new record replaces an earlier one of the same file."""
    replaced = {r["file"] for r in new}
    return [r for r in old if r["file"] not in replaced] + list(new)


def _row(r: dict[str, Any]) -> str:
    cfg = r.get("config") or {}
    losses = r.get("final_losses")
    shown = ", ".join(f"{k} {v:.4g}" for k, v in losses.items()) if losses else "not recorded"
    classes = "any (class-agnostic)" if r.get("class_agnostic") else f"{len(r.get('classnames') or [])} fixed classes"
    return (
        f"| `{r['file']}` | {r.get('backbone') or 'unknown'} | {r.get('n_ctx')} x {r.get('width')} | "
        f"{json.dumps(r.get('template'))} | {classes} | {cfg.get('seed', '-')} | {cfg.get('steps', '-')} | "
        f"{shown} | {r.get('fpp_init_version')} |"
    )


def _front_matter(records: Sequence[dict[str, Any]], license: str | None) -> str:
    from huggingface_hub import ModelCardData

    base = sorted({b for b in (base_model_id(r.get("backbone")) for r in records) if b})
    meta: dict[str, Any] = {
        "library_name": "fpp-init",
        "tags": ["fpp-init", "clip", "prompt-learning", "test-time-adaptation", "safetensors"],
        "fpp_init": {"format_version": const.FORMAT_VERSION, "files": list(records)},
    }
    if base:
        meta["base_model"] = base[0] if len(base) == 1 else base
    if license:
        meta["license"] = license
    return ModelCardData(**meta).to_yaml().strip().join(["---\n", "\n---"])


def model_card(records: Sequence[dict[str, Any]], *, repo_id: str | None = None, license: str | None = None) -> str:
    """The ``README.md`` text (YAML front matter + body) describing how the files were made."""
    ref = repo_id or "OWNER/REPO"
    first = records[0]["file"]
    backbones = sorted({r.get("backbone") or "unknown" for r in records})
    missing = [r["file"] for r in records if not r.get("config")]
    lines = [
        _front_matter(records, license),
        "",
        f"# FPP prompt{'s' if len(records) > 1 else ''} for CLIP {', '.join(backbones)}",
        "",
        "Context vectors pretrained with fpp-init, an implementation of FPP (flatness-aware prompt",
        "pretraining, Jang et al., CVPR 2026, arXiv 2604.27715): initial prompts for CLIP test-time",
        "prompt tuning (TPT, C-TPT, O-TPT, ...). The pretraining is data-free: it uses only the CLIP",
        "text tower, the hand-written template and (for class-specific files) the class names.",
        "fpp-init is not on a package index yet: install it from a clone of its repository",
        "(`python -m pip install .` in the clone).",
        "",
        "## How the files were produced",
        "",
        "| file | backbone | n_ctx x width | template | classes | seed | steps | final losses | fpp-init |",
        "|---|---|---|---|---|---|---|---|---|",
        *[_row(r) for r in records],
        "",
        "The full configuration (every `FPPConfig` field, `flat_weight` resolved), the final losses, the class",
        "names and the text-tower fingerprint of each file are in the `fpp_init` block of this card's metadata",
        "and in each file's safetensors header.",
    ]
    if missing:
        lines += [
            "",
            f"No FPP configuration is recorded for {', '.join(f'`{n}`' for n in missing)}: "
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
