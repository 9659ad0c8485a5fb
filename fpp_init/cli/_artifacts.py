"""``fpp-init export``, ``push`` and ``inspect``: prompt files as artifacts."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from .._hubenv import check_repo_id
from .._io import check_writable_dir, check_writable_file
from .._validate import check_int
from ..errors import ConfigError
from ._common import check_sources


def _add_source_options(p: argparse.ArgumentParser, *, revision: bool = True) -> None:
    p.add_argument(
        "--allow-pickle",
        action="store_true",
        help="read trusted .pt/.pth (CoOp) files with torch.load(weights_only=True) instead of refusing them",
    )
    if revision:
        p.add_argument(
            "--revision", default=None, help="branch, tag or commit for hf:// sources (or write hf://O/R@REV/F)"
        )
    p.add_argument("--cache-dir", default=None, help="Hugging Face cache folder (default: HF_HUB_CACHE / HF_HOME)")
    p.add_argument("--offline", action="store_true", help="use only the local Hugging Face cache (as HF_HUB_OFFLINE=1)")


def register(sub: Any) -> None:
    src_help = "prompt file: a local .safetensors path or hf://OWNER/REPO[@REVISION]/FILE.safetensors"

    e = sub.add_parser(
        "export",
        help="convert prompt files: CoOp checkpoint, Hub folder with model card, or .safetensors",
        description=(
            "Export prompt files. --coop writes {'state_dict': {'ctx': t}, 'epoch': n} for TPT-family --load; "
            "--hub writes the files plus a README.md model card into a folder ready to upload; --out converts "
            "one file (e.g. a trusted CoOp .pth with --allow-pickle) into an fpp-init .safetensors prompt."
        ),
    )
    e.add_argument("sources", nargs="+", metavar="SOURCE", help=src_help)
    dest = e.add_mutually_exclusive_group(required=True)
    dest.add_argument("--coop", metavar="OUT.pth", help="write a CoOp-format checkpoint (one SOURCE)")
    dest.add_argument("--hub", metavar="DIR", help="write a Hub upload folder: prompt files + README.md model card")
    dest.add_argument("--out", metavar="OUT.safetensors", help="write an fpp-init prompt file (one SOURCE)")
    e.add_argument("--epoch", type=int, default=None, help="'epoch' stored with --coop (default: the FPP step count)")
    e.add_argument(
        "--name",
        action="append",
        default=None,
        metavar="FILE.safetensors",
        help="file name in the --hub folder, once per SOURCE (default: fpp_<backbone>_<classes>_seed<k>.safetensors)",
    )
    e.add_argument("--repo-id", default=None, help="OWNER/NAME shown in the model card's usage snippet")
    e.add_argument("--license", default=None, help="license id for the model card metadata (e.g. mit)")
    e.add_argument("--force", action="store_true", help="write into a non-empty --hub folder")
    _add_source_options(e)
    e.set_defaults(func=run_export)

    p = sub.add_parser(
        "push",
        help="upload prompt files plus a generated model card to a Hugging Face Hub model repo",
        description=(
            "Upload prompt files and a README.md model card with huggingface_hub (create_repo + upload_folder). "
            "Log in first (HF_TOKEN or `hf auth login`)."
        ),
    )
    p.add_argument("sources", nargs="+", metavar="SOURCE", help=src_help + ", or one folder (fpp-init zoo output)")
    p.add_argument("--repo-id", required=True, metavar="OWNER/NAME", help="target model repository (created if absent)")
    p.add_argument("--name", action="append", default=None, metavar="FILE.safetensors", help="file name per SOURCE")
    p.add_argument("--private", action="store_true", help="create the repository as private")
    p.add_argument("--revision", default=None, help="branch to commit to (default: the main branch)")
    p.add_argument("--message", default=None, help="commit message")
    p.add_argument("--license", default=None, help="license id for the model card metadata")
    _add_source_options(p, revision=False)
    p.set_defaults(func=run_push)

    i = sub.add_parser(
        "inspect",
        help="show a prompt file's metadata and tensor summary",
        description="Print the metadata and a tensor summary (shape, dtype, norm, fingerprint) of a prompt file.",
    )
    i.add_argument("source", metavar="SOURCE", help=src_help)
    i.add_argument("--json", action="store_true", help="print one JSON object (for scripts)")
    _add_source_options(i)
    i.set_defaults(func=run_inspect)


def _read(args: argparse.Namespace, source: str) -> Any:
    """A SOURCE read as the source options say (a ``PromptFile``)."""
    from ..artifacts.sources import HubAccess, read_source

    access = HubAccess(getattr(args, "revision", None), args.cache_dir, None, args.offline)
    return read_source(source, access=access, allow_pickle=args.allow_pickle)


def _one_source(args: argparse.Namespace, what: str) -> str:
    if len(args.sources) != 1:
        raise ConfigError(f"{what} takes exactly one SOURCE, got {len(args.sources)}")
    return str(args.sources[0])


def run_export(args: argparse.Namespace) -> int:
    # every flag and path first, before torch is imported: a mistake is answered at once
    if args.coop or args.out:
        _one_source(args, "--coop" if args.coop else "--out")
        check_writable_file(args.coop or args.out, "--coop" if args.coop else "--out")
    else:
        check_writable_dir(args.hub, "--hub")
    if args.epoch is not None:
        check_int(args.epoch, "epoch", min=0)
    if args.repo_id is not None:
        check_repo_id(args.repo_id, "--repo-id")
    check_sources(args.sources)
    from ..artifacts import build_hub_folder, export_coop

    if args.coop:
        prompt = _read(args, _one_source(args, "--coop")).prompt
        path = export_coop(prompt, args.coop, epoch=args.epoch)
        print(json.dumps({"coop": str(path), "n_ctx": prompt.n_ctx, "width": prompt.width}))
    elif args.out:
        prompt = _read(args, _one_source(args, "--out")).prompt
        path = prompt.save(args.out)
        print(json.dumps({"out": str(path), "n_ctx": prompt.n_ctx, "width": prompt.width}))
    else:
        prompts = [_read(args, s).prompt for s in args.sources]
        written = build_hub_folder(
            prompts, args.hub, filenames=args.name, repo_id=args.repo_id, license=args.license, overwrite=args.force
        )
        print(json.dumps({"hub": str(args.hub), "files": [p.name for p in written]}))
    return 0


def run_push(args: argparse.Namespace) -> int:
    check_repo_id(args.repo_id, "--repo-id")  # every flag and path first, before torch is imported
    folder = len(args.sources) == 1 and os.path.isdir(args.sources[0])
    if not folder:
        check_sources(args.sources)
    from ..api import push_fpp_prompt

    prompts = args.sources[0] if folder else [_read(args, s).prompt for s in args.sources]
    url = push_fpp_prompt(
        prompts,
        args.repo_id,
        filenames=args.name,
        private=True if args.private else None,
        revision=args.revision,
        commit_message=args.message,
        license=args.license,
    )
    print(json.dumps({"repo_id": args.repo_id, "commit": url}))
    return 0


def summarize(source: str, found: Any) -> dict[str, Any]:
    """The facts ``inspect`` prints about a ``PromptFile``, as a JSON-ready dict."""
    prompt = found.prompt
    ctx = prompt.ctx.float()
    row = ctx.norm(dim=-1)
    return {
        "source": source,
        "path": str(found.path),
        "bytes": found.size,
        "shape": list(ctx.shape),
        "dtype": found.stored_dtype if found.stored_dtype != "pickle" else "pickle (read as float32)",
        "norm": float(ctx.norm()),
        "row_norm_mean": float(row.mean()),
        "mean": float(ctx.mean()),
        "std": float(ctx.std()) if ctx.numel() > 1 else 0.0,
        "fingerprint": prompt.fingerprint,
        "backbone": prompt.backbone,
        "template": prompt.template,
        "class_agnostic": prompt.class_agnostic,
        "num_classes": prompt.num_classes,
        "classnames": prompt.classnames,
        "config": prompt.config,
        "final_losses": prompt.final_losses,
        "fpp_init_version": prompt.version,
    }


def run_inspect(args: argparse.Namespace) -> int:
    check_sources([args.source])  # before torch is imported: a missing file is answered at once
    info = summarize(args.source, _read(args, args.source))
    if args.json:
        print(json.dumps(info, sort_keys=True))
        return 0
    names = info["classnames"]
    if info["class_agnostic"]:
        classes = f"class-agnostic ({info['num_classes']} simulated)"
    elif names:
        shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
        classes = f"{len(names)}: {shown}"
    else:
        classes = "not recorded"
    losses = ", ".join(f"{k} {v:.6g}" for k, v in sorted(info["final_losses"].items())) or "not recorded"
    rows = [
        ("source", info["source"]),
        ("file", f"{info['path']} ({info['bytes']} bytes)"),
        ("ctx", f"{info['shape'][0]} x {info['shape'][1]}, {info['dtype']}"),
        (
            "norm",
            f"{info['norm']:.6g} (row mean {info['row_norm_mean']:.6g}; mean {info['mean']:.4g}, std {info['std']:.4g})",
        ),
        ("fingerprint", info["fingerprint"] or "not recorded"),
        ("backbone", info["backbone"] or "unknown"),
        ("template", json.dumps(info["template"])),
        ("classes", classes),
        ("final losses", losses),
        ("config", json.dumps(info["config"], sort_keys=True) if info["config"] else "not recorded"),
        ("fpp-init", info["fpp_init_version"]),
    ]
    for key, value in rows:
        print(f"{key:<13}{value}", file=sys.stdout)
    return 0
