#!/usr/bin/env python
"""Benchmark fpp-init's FPP optimiser against a straightforward full-length loop, for each CLIP library.

For each case (a class-name set) and each library (``clip``: clip-anytorch, ``open_clip``:
OpenCLIP, ``transformers``: Hugging Face) this runs, one after the other and each in its own
subprocess, N steps of

* ``reference``: the spec of ``docs/fpp-algorithm.md`` written the obvious way,
  independent of the package: all ``L = 77`` positions of every prompt and
  noise copy through the library's own text forward (clip-anytorch: ``model.transformer``,
  as ``model.encode_text`` does, but on token embeddings; OpenCLIP: ``model.encode_text``;
  transformers: ``model.get_text_features``; for the last two the token-embedding layer's
  output is replaced by the embedded prompts), the ``K * C`` perturbed prompts in one
  batch under ``no_grad``, the ``C`` clean prompts with autograd, the same losses and the
  same AdamW / cosine schedule, and the same random draws in the package's
  documented order (one CPU ``torch.Generator`` seeded with ``config.seed``:
  the random start ``randn(n_ctx, D)``, then ``randn(K, N, D)`` per step, ``N`` the
  positions up to the last EOS of the class set);
* ``package``: ``fpp_init.algorithm.optimize_flat_prompt`` on the tower of
  ``fpp_init.models.text_model(model)`` and the prompts of ``build_class_prompts``
  (``share_prefix`` and ``chunk_classes`` at their defaults).

Each library's model has random weights and a text tower of the ViT-B/16 shape (width 512,
12 layers, 8 heads, 77 positions, QuickGELU) and a tiny vision part. Speed does not depend
on the weights' values.

It prints one JSON line per case and library: seconds per step of each implementation and
their ratio, peak memory of each, the largest differences of the per-step
losses and of the final ctx, and the useful throughput of the package against
a plain matmul measured in the same run.

Peak memory. On CPU each implementation runs in its own process; after the
model is built and the prompts are embedded, the kernel's high-water mark of
the resident set is reset (``/proc/self/clear_refs``, value 5) and the figure
is ``VmHWM - VmRSS`` at that point: the exact extra resident memory at the
worst moment of the steps (glibc returns large blocks to the OS, so it tracks
the live tensors). On CUDA it is ``torch.cuda.max_memory_allocated`` minus the
allocation before the steps. ``--mem-cap-gb`` caps each child's data segment
(``RLIMIT_DATA``) so that an implementation that does not fit fails with an
allocation error instead of waking the OOM killer; it is then reported as
``"failed"`` with the memory it had reached.

Examples::

    python examples/benchmark_pretrain.py --cases dtd --steps 3 --threads 1
    python examples/benchmark_pretrain.py --cases dtd --steps 3 --libraries open_clip,transformers
    python examples/benchmark_pretrain.py --cases imagenet --steps 1 --libraries clip
    python examples/benchmark_pretrain.py --cases dtd --steps 3 --libraries clip --threads auto --contend 1
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from fpp_init import FPPConfig, import_clip
from fpp_init._runtime import cpu_threads
from fpp_init.algorithm import optimize_flat_prompt
from fpp_init.models import build_class_prompts, text_model
from fpp_init.models.clip import ClipTokenizer

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "classnames"
TEMPLATE = "a photo of a"
WIDTH, LAYERS, HEADS, CONTEXT, EMBED = 512, 12, 8, 77, 512
CASES = ("dtd", "imagenet")
FALLBACK_SIZES = {"dtd": 47, "imagenet": 1000}
EOT_ID = 49407  # CLIP's <|endoftext|>


# -- shared set-up -------------------------------------------------------------------------
def class_names(case: str, limit: int | None, subset: int | None = None) -> tuple[list[str], str]:
    """The case's class names (the first ``limit``), or ``subset`` of them evenly spaced."""
    path = SHARED / f"{case}.json"
    if path.exists():
        names, source = json.loads(path.read_text()), str(path.relative_to(REPO.parent))
    else:  # generated names of 1-3 words, like real label sets
        words = ["red", "striped", "tabby", "great", "white", "shark", "wooden", "spoon", "sea", "lion"]
        n = FALLBACK_SIZES.get(case, 100)
        names = [" ".join(words[(i * 7 + j * 3) % len(words)] for j in range(1 + i % 3)) for i in range(n)]
        source = "generated"
    names = names[:limit] if limit else names
    if subset and subset < len(names):
        names = names[:: len(names) // subset][:subset]
    return names, source


def _on_embeddings(
    encode_ids: Callable[[torch.Tensor], torch.Tensor],
    embedding: torch.nn.Module,
    x: torch.Tensor,
    eot_pos: torch.Tensor,
) -> torch.Tensor:
    """A library's own text forward ``encode_ids(ids)`` on token embeddings ``x`` ``[B, 77, D]``: the
    token-embedding layer's output is replaced by ``x``; the ids only place the EOS for pooling."""
    ids = torch.zeros(x.shape[:2], dtype=torch.long, device=x.device)
    ids[torch.arange(x.shape[0], device=x.device), eot_pos] = EOT_ID
    handle = embedding.register_forward_hook(lambda module, args, out: x.to(out.dtype))
    try:
        return encode_ids(ids)
    finally:
        handle.remove()


@dataclass(frozen=True)
class Library:
    """A CLIP library: a random-weight model with ViT-B/16 text shapes, its token-embedding table,
    and its own straightforward text forward on token embeddings (all 77 positions)."""

    build: Callable[[], torch.nn.Module]
    token_table: Callable[[torch.nn.Module], torch.Tensor]
    encode: Callable[[torch.nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def _build_clip() -> torch.nn.Module:
    return import_clip().model.CLIP(
        embed_dim=EMBED,
        image_resolution=32,
        vision_layers=1,
        vision_width=64,
        vision_patch_size=16,
        context_length=CONTEXT,
        vocab_size=49408,
        transformer_width=WIDTH,
        transformer_heads=HEADS,
        transformer_layers=LAYERS,
    )


def _encode_clip(model: torch.nn.Module, x: torch.Tensor, eot_pos: torch.Tensor) -> torch.Tensor:
    """``model.encode_text`` on token embeddings ``x`` ``[B, 77, D]``: all 77 positions."""
    x = x + model.positional_embedding
    x = model.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)
    x = model.ln_final(x)
    return x[torch.arange(x.shape[0], device=x.device), eot_pos] @ model.text_projection


def _build_open_clip() -> torch.nn.Module:
    import open_clip

    text = {"context_length": CONTEXT, "vocab_size": 49408, "width": WIDTH, "heads": HEADS, "layers": LAYERS}
    vision = {"layers": 1, "width": 64, "patch_size": 16, "image_size": 32, "head_width": 64}
    return open_clip.model.CLIP(EMBED, vision, text, quick_gelu=True)


def _build_transformers() -> torch.nn.Module:
    import transformers

    text = {"vocab_size": 49408, "hidden_size": WIDTH, "intermediate_size": 4 * WIDTH, "num_hidden_layers": LAYERS}
    text.update(num_attention_heads=HEADS, max_position_embeddings=CONTEXT, hidden_act="quick_gelu", eos_token_id=2)
    vision = {"hidden_size": 64, "intermediate_size": 256, "num_hidden_layers": 1, "num_attention_heads": 1}
    vision.update(image_size=32, patch_size=16, hidden_act="quick_gelu")
    config = transformers.CLIPConfig(text_config=text, vision_config=vision, projection_dim=EMBED)
    return transformers.CLIPModel(config)


def _hf_features(out: object) -> torch.Tensor:
    """transformers 4.x ``get_text_features`` returns a tensor, 5.x an output object."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output  # type: ignore[attr-defined]


def _hf_embedding(model: torch.nn.Module) -> torch.nn.Module:
    from fpp_init.towers.hf import hf_text_transformer

    return hf_text_transformer(model).embeddings.token_embedding  # type: ignore[union-attr]


LIBRARIES = {
    "clip": Library(_build_clip, lambda m: m.token_embedding.weight, _encode_clip),
    "open_clip": Library(
        _build_open_clip,
        lambda m: m.token_embedding.weight,
        lambda m, x, eot_pos: _on_embeddings(m.encode_text, m.token_embedding, x, eot_pos),
    ),
    "transformers": Library(
        _build_transformers,
        lambda m: _hf_embedding(m).weight,
        lambda m, x, eot_pos: _on_embeddings(
            lambda ids: _hf_features(m.get_text_features(input_ids=ids)), _hf_embedding(m), x, eot_pos
        ),
    ),
}


def build_model(library: str, device: torch.device) -> torch.nn.Module:
    torch.manual_seed(0)  # this is a benchmark process: the global RNG is ours
    model = LIBRARIES[library].build()
    return model.eval().requires_grad_(False).to(device)


def embed(library: str, model: torch.nn.Module, names: list[str]) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Embedded prompts ``[C, 77, D]`` (CLIP's BPE ids: the same in all three libraries), EOS positions, n_ctx."""
    tokens = import_clip().tokenize([f"{TEMPLATE} {n.replace('_', ' ')}." for n in names])
    table = LIBRARIES[library].token_table(model)
    with torch.no_grad():
        emb = table[tokens.to(table.device)].float().cpu()
    return emb, tokens.argmax(dim=-1), len(ClipTokenizer().encode(TEMPLATE))


# -- the straightforward implementation ----------------------------------------------------
def reference_run(
    encode: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    emb: torch.Tensor,
    eot_pos: torch.Tensor,
    n_ctx: int,
    cfg: FPPConfig,
    device: torch.device,
) -> tuple[torch.Tensor, dict[str, list[float]], list[float]]:
    def norm(f: torch.Tensor) -> torch.Tensor:
        return f / f.norm(dim=-1, keepdim=True)

    c, length, width = emb.shape
    k, used = cfg.num_noise, int(eot_pos.max()) + 1
    emb, eot_pos = emb.to(device), eot_pos.to(device)
    gen = torch.Generator().manual_seed(cfg.seed)

    def prompts(ctx: torch.Tensor) -> torch.Tensor:
        return torch.cat([emb[:, :1], ctx[None].expand(c, -1, -1), emb[:, 1 + n_ctx :]], dim=1)

    with torch.no_grad():
        target = norm(encode(prompts(emb[0, 1 : 1 + n_ctx]), eot_pos))
    ctx = torch.nn.Parameter((torch.randn(n_ctx, width, generator=gen) * cfg.init_std).to(device))
    opt = torch.optim.AdamW([ctx], lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.steps, eta_min=cfg.min_lr)
    lam = 1 + 15 / c
    hist: dict[str, list[float]] = {"align": [], "flat": [], "loss": []}
    times = []
    for _ in range(cfg.steps):
        t0 = time.perf_counter()
        noise = torch.zeros(k, length, width)  # rows after the last EOS change no feature: no noise drawn
        noise[:, :used] = torch.randn(k, used, width, generator=gen)
        noise[:, 1 : 1 + n_ctx] *= cfg.ctx_noise
        noise[:, :1] *= cfg.cls_noise
        noise[:, 1 + n_ctx :] *= cfg.cls_noise
        with torch.no_grad():
            noisy = (prompts(ctx)[None] + noise.to(device)[:, None]).flatten(0, 1)
            f_noisy = norm(encode(noisy, eot_pos.repeat(k))).view(k, c, -1)
        f = norm(encode(prompts(ctx), eot_pos))
        align = f.shape[-1] * ((f - target) ** 2).mean()
        flat = -lam * (f[None] * f_noisy).sum(-1).mean()
        loss = align + flat
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        hist["align"].append(align.item())
        hist["flat"].append(flat.item())
        hist["loss"].append(loss.item())
    return ctx.detach().cpu(), hist, times


# -- memory --------------------------------------------------------------------------------
def _status(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{key} not in /proc/self/status")


class PeakMemory:
    """Extra memory at the worst moment since :meth:`start` (see the module docstring)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def start(self) -> None:
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            Path("/proc/self/clear_refs").write_text("5")
            self.base = _status("VmRSS")

    def peak(self) -> int:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated() - self.base
        return _status("VmHWM") - self.base


def matmul_gflops(device: torch.device, seconds: float = 1.0) -> float:
    a = torch.randn(2048, WIDTH, device=device)
    b = torch.randn(WIDTH, 4 * WIDTH, device=device)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        n += 1
        if device.type == "cuda":
            torch.cuda.synchronize()
    return 2 * a.shape[0] * WIDTH * 4 * WIDTH * n / (time.perf_counter() - t0) / 1e9


class StepClock:
    """A ``Checkpointing`` for ``optimize_flat_prompt`` that saves nothing and notes the time when the
    set-up (target features) is done (``load``, called once before the first step) and when each
    step is done (``save``, every step): the steps' own time, without the set-up."""

    every = 1

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.marks: list[float] = []

    def _mark(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        self.marks.append(time.perf_counter())

    def load(self) -> None:
        self._mark()

    def save(self, state: object) -> None:
        self._mark()

    def step_seconds(self) -> list[float]:
        return [b - a for a, b in zip(self.marks[:-1], self.marks[1:], strict=True)]


# -- child ---------------------------------------------------------------------------------
def child(args: argparse.Namespace) -> None:
    device = torch.device(args.device)
    if args.threads not in ("0", "auto"):
        torch.set_num_threads(int(args.threads))
    names, _ = class_names(args.cases, args.limit, args.subset)
    model = build_model(args.library, device)
    emb, eot_pos, n_ctx = embed(args.library, model, names)
    cfg = FPPConfig(steps=args.steps, seed=args.seed, autocast="off")
    mem = PeakMemory(device)
    out: dict[str, object] = {}
    try:
        if args.child == "reference":
            encode = LIBRARIES[args.library].encode
            mem.start()
            ctx, hist, times = reference_run(lambda x, e: encode(model, x, e), emb, eot_pos, n_ctx, cfg, device)
            out["sec_per_step"] = sum(times) / len(times)
            out["sec_steps"] = times
        else:
            tm = text_model(model)
            classes = build_class_prompts(tm, names, template=TEMPLATE)
            tower, prompts, predefined = tm.tower, classes.prompts, classes.predefined_ctx

            options = {}
            for item in args.option:
                key, value = item.split("=", 1)
                options[key] = {"True": True, "False": False}.get(value) if value in ("True", "False") else int(value)
            if set(options) - {"chunk_classes", "share_prefix"}:
                raise SystemExit(f"--option takes chunk_classes or share_prefix, got {sorted(options)}")
            pcfg = cfg.replace(**options)

            def run(steps: int) -> tuple[object, StepClock]:
                clock = StepClock(device)
                # --threads auto: the package's own choice, as pretrain_flat_prompt makes it
                threads = None if args.threads == "auto" else torch.get_num_threads()
                with cpu_threads(threads, device):
                    res = optimize_flat_prompt(
                        tower,
                        prompts,
                        predefined,
                        pcfg.replace(steps=steps),
                        device=device,
                        progress=False,
                        checkpoint=clock,
                    )
                    out["threads"] = torch.get_num_threads()
                return res, clock

            run(1)  # warm-up: target features and one step
            mem.start()
            res, clock = run(args.steps)
            ctx, hist = res.ctx, {k: res.history[k] for k in ("align", "flat", "loss")}  # type: ignore[attr-defined]
            out["sec_steps"] = clock.step_seconds()
            out["sec_per_step"] = sum(out["sec_steps"]) / args.steps  # type: ignore[arg-type]
            out["matmul_gflops"] = matmul_gflops(device)
        out["peak_bytes"] = mem.peak()
        out["history"] = hist
        out["ctx"] = ctx.tolist()
    except (MemoryError, RuntimeError) as err:
        out = {"failed": f"{type(err).__name__}: {str(err).splitlines()[0][:200]}", "peak_bytes": mem.peak()}
    out["eot_pos"] = eot_pos.tolist()
    out["n_ctx"] = n_ctx
    out.setdefault("threads", torch.get_num_threads())
    Path(args.out).write_text(json.dumps(out))


# -- parent --------------------------------------------------------------------------------
def useful_flops(eot_pos: list[int], n_ctx: int, k: int) -> float:
    """FLOPs one step cannot avoid: per noise copy (K) and for the clean pass, the shared
    prefix (SOS + ctx) once and each class's positions up to its own EOS; the clean
    backward counted as one more forward (no weight gradients). Linear layers
    ``24 D^2`` per position and layer, causal attention ``4 D`` per (query, key) pair,
    the projection ``2 D E`` per class."""
    p = 1 + n_ctx
    lin = 24 * WIDTH * WIDTH
    flops = p * lin + sum(4 * WIDTH * (i + 1) for i in range(p))
    for e in eot_pos:
        flops += (e + 1 - p) * lin + sum(4 * WIDTH * (i + 1) for i in range(p, e + 1))
    flops = flops * LAYERS + len(eot_pos) * 2 * WIDTH * EMBED
    return float(flops * (k + 2))


def run_child(kind: str, library: str, case: str, args: argparse.Namespace, subset: int = 0) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.json"
        cmd = [sys.executable, __file__, "--child", kind, "--library", library, "--cases", case, "--out", str(out)]
        cmd += ["--steps", str(args.steps_for[case]), "--device", args.device, "--seed", str(args.seed)]
        cmd += ["--threads", str(args.threads), "--limit", str(args.limit), "--subset", str(subset)]
        cmd += [f"--option={o}" for o in args.option]
        cap = int(args.mem_cap_gb * 2**30) if args.mem_cap_gb else None

        def limit() -> None:
            if cap:
                resource.setrlimit(resource.RLIMIT_DATA, (cap, cap))

        burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.contend)]
        try:
            if burners:
                time.sleep(2.0)  # the other work is running before ours starts
            proc = subprocess.run(cmd, preexec_fn=limit, capture_output=True, text=True)
        finally:
            for b in burners:
                b.kill()
                b.wait()
        if not out.exists():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            return {"failed": f"exit {proc.returncode}: {' | '.join(tail)[:300]}"}
        return json.loads(out.read_text())


def _diffs(ref: dict, pkg: dict) -> dict:
    losses = max(
        abs(a - b)
        for key in ("align", "flat", "loss")
        for a, b in zip(ref["history"][key], pkg["history"][key], strict=True)
    )
    ctx = float((torch.tensor(ref["ctx"]) - torch.tensor(pkg["ctx"])).abs().max())
    return {"max_abs_diff_losses": losses, "max_abs_diff_ctx": ctx}


def compare(case: str, library: str, args: argparse.Namespace) -> dict:
    """One JSON line: ``library``'s reference loop against the package, on ``case``'s class names."""
    names, source = class_names(case, args.limit)
    c, sub = len(names), args.ref_classes_for.get(case, 0)
    sub = sub if 0 < sub < c else 0
    gib = 2**30
    line: dict[str, object] = {"case": case, "library": library, "classes": c, "names": source, "device": args.device}
    line["busy_cores_beside"] = args.contend
    if args.option:
        line["package_options"] = args.option
    line["steps"] = args.steps_for[case]
    ref = run_child("reference", library, case, args, sub) if not args.skip_reference else {"failed": "skipped"}
    pkg = run_child("package", library, case, args)
    line["threads"] = pkg.get("threads")
    line["reference_threads"] = ref.get("threads")
    if "failed" in pkg:
        line["package_failed"] = pkg["failed"]
        return line
    line["package_s_per_step"] = round(pkg["sec_per_step"], 4)
    line["package_peak_mem_gib"] = round(pkg["peak_bytes"] / gib, 4)
    if "failed" in ref:
        line["reference_failed"] = ref["failed"]
    elif not sub:
        line["reference_s_per_step"] = round(ref["sec_per_step"], 4)
        line["reference_peak_mem_gib"] = round(ref["peak_bytes"] / gib, 4)
        line["speedup"] = round(ref["sec_per_step"] / pkg["sec_per_step"], 2)
        line["mem_ratio"] = round(pkg["peak_bytes"] / ref["peak_bytes"], 4)
        line.update(_diffs(ref, pkg))
    else:  # reference measured on `sub` evenly spaced classes; its time and memory grow linearly in C
        scale = c / sub
        pkg_sub = run_child("package", library, case, args, sub)
        line["reference_classes_measured"] = sub
        line["reference_s_per_step_measured"] = round(ref["sec_per_step"], 4)
        line["reference_peak_mem_gib_measured"] = round(ref["peak_bytes"] / gib, 4)
        line["reference_s_per_step_extrapolated"] = round(ref["sec_per_step"] * scale, 2)
        line["reference_peak_mem_gib_extrapolated"] = round(ref["peak_bytes"] * scale / gib, 2)
        line["speedup_extrapolated"] = round(ref["sec_per_step"] * scale / pkg["sec_per_step"], 2)
        line["mem_ratio_extrapolated"] = round(pkg["peak_bytes"] / (ref["peak_bytes"] * scale), 4)
        if "failed" not in pkg_sub:
            line["package_s_per_step_on_measured_classes"] = round(pkg_sub["sec_per_step"], 4)
            line["speedup_on_measured_classes"] = round(ref["sec_per_step"] / pkg_sub["sec_per_step"], 2)
            line.update({f"{k}_on_measured_classes": v for k, v in _diffs(ref, pkg_sub).items()})
    flops = useful_flops(pkg["eot_pos"], pkg["n_ctx"], FPPConfig().num_noise)
    line["useful_gflop_per_step"] = round(flops / 1e9, 2)
    line["useful_gflops"] = round(flops / 1e9 / pkg["sec_per_step"], 2)
    line["matmul_gflops"] = round(pkg["matmul_gflops"], 2)
    line["useful_over_matmul"] = round(flops / 1e9 / pkg["sec_per_step"] / pkg["matmul_gflops"], 3)
    return line


def _per_case(text: str, cases: list[str], default: int) -> dict[str, int]:
    """``"3"`` (every case) or ``"dtd=3,imagenet=1"`` (unnamed cases get ``default``)."""
    if "=" not in text:
        return dict.fromkeys(cases, int(text))
    given = {k.strip(): int(v) for k, v in (kv.split("=") for kv in text.split(",") if kv.strip())}
    return {c: given.get(c, default) for c in cases}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", default="dtd", help="comma-separated: dtd, imagenet (any classnames/*.json name)")
    ap.add_argument("--steps", default="3", help="steps per case: one number, or e.g. dtd=3,imagenet=1")
    ap.add_argument(
        "--libraries",
        default=",".join(LIBRARIES),
        help=f"comma-separated CLIP libraries, one row each (default: {','.join(LIBRARIES)})",
    )
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--threads",
        default="0",
        help="torch threads in each child: N, 0 (torch's default), or auto (the package's own choice, which "
        "counts the idle CPUs; the reference then keeps torch's default)",
    )
    ap.add_argument(
        "--contend",
        type=int,
        default=0,
        metavar="N",
        help="run N background processes that each keep one core busy while each implementation runs",
    )
    ap.add_argument("--limit", type=int, default=0, help="use only the first N class names")
    ap.add_argument(
        "--ref-classes",
        default="imagenet=100",
        help="run the reference on only N evenly spaced classes and extrapolate its time and memory "
        "linearly to all classes (one number or e.g. imagenet=100; 0: all classes)",
    )
    ap.add_argument("--mem-cap-gb", type=float, default=0.0, help="RLIMIT_DATA of each child (0: none)")
    ap.add_argument("--skip-reference", action="store_true", help="time the package only")
    ap.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="an FPPConfig execution field for the package, e.g. share_prefix=False or chunk_classes=32",
    )
    ap.add_argument("--subset", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--child", choices=["reference", "package"], help=argparse.SUPPRESS)
    ap.add_argument("--library", choices=list(LIBRARIES), default="clip", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        args.steps = int(args.steps)
        child(args)
        return
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    args.steps_for = _per_case(args.steps, cases, 1)
    args.ref_classes_for = _per_case(args.ref_classes, cases, 0)
    if args.device == "cpu" and args.threads == "0":
        args.threads = str(torch.get_num_threads())
    libraries = [name.strip() for name in args.libraries.split(",") if name.strip()]
    unknown = sorted(set(libraries) - set(LIBRARIES))
    if unknown:
        ap.error(f"--libraries: unknown {unknown}; choose from {list(LIBRARIES)}")
    for case in cases:
        for library in libraries:
            print(json.dumps(compare(case, library, args)), flush=True)


if __name__ == "__main__":
    os.environ.setdefault("TQDM_DISABLE", "1")
    main()
