"""Write a CLIP checkpoint with RANDOM weights, to try fpp-init offline (a pipeline check, nothing more).

The weights are random: prompts pretrained on this model mean nothing for real images. Use it to see
every command run end to end on a machine without CLIP weights or network, in a minute::

    python examples/random_clip.py --out random_clip.pt                 # tiny (width 128, 2 layers): seconds
    python examples/random_clip.py --shape vit-b-16 --out vitb16_random.pt   # ViT-B/16 text-tower shapes
    fpp-init pretrain --weights random_clip.pt --class-agnostic --num-classes 8 --steps 200 --out try.safetensors

The checkpoint is a plain ``state_dict`` saved with ``torch.save``, which ``clip.load(path)`` (and so
``fpp-init ... --weights PATH``) reads like a real one. The test suite builds its models with
:func:`build_random_clip` too.
"""

from __future__ import annotations

import argparse
import sys

import torch

#: text-tower shapes (width, layers) and the vision tower kept minimal (it is never used by FPP)
SHAPES = {
    "tiny": {"width": 128, "layers": 2},
    "vit-b-16": {"width": 512, "layers": 12},
    "vit-l-14": {"width": 768, "layers": 12},
}


def build_random_clip(width: int = 128, layers: int = 2, seed: int = 0, context_length: int = 77) -> torch.nn.Module:
    """A clip-anytorch ``CLIP`` with random weights: the real 49408-token vocabulary, ``width // 64`` heads."""
    import fpp_init

    clip = fpp_init.import_clip()  # `import clip` fails where setuptools >= 82 has no pkg_resources
    with torch.random.fork_rng(devices=[]):  # leave the caller's global RNG alone
        torch.manual_seed(seed)
        model = clip.model.CLIP(
            embed_dim=64,
            image_resolution=32,
            vision_layers=1,
            vision_width=64,
            vision_patch_size=16,
            context_length=context_length,
            vocab_size=49408,  # the real tokenizer's vocabulary
            transformer_width=width,
            transformer_heads=max(1, width // 64),
            transformer_layers=layers,
        )
        with torch.no_grad():  # CLIP's init leaves the positional embedding tiny: give it realistic spread
            model.positional_embedding.normal_(0, 0.02)
    return model.eval()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shape", choices=sorted(SHAPES), default="tiny", help="text-tower shape (default tiny)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights (default 0)")
    p.add_argument("--out", required=True, help="checkpoint to write (a state_dict, .pt)")
    args = p.parse_args(argv)
    model = build_random_clip(**SHAPES[args.shape], seed=args.seed)
    torch.save(model.state_dict(), args.out)
    n = sum(t.numel() for t in model.state_dict().values())
    print(f"wrote {args.out}: random CLIP, {args.shape} text tower, {n / 1e6:.1f} M values (NOT a trained model)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
