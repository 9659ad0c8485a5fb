"""Constants of FPP and of the file format, in one place."""

from __future__ import annotations

#: The hand-written prompt of the paper; ``n_ctx`` follows from its tokens.
DEFAULT_TEMPLATE = "a photo of a"
#: CLIP backbone used when none is given (the paper's).
DEFAULT_ARCH = "ViT-B/16"

# Hyperparameters of the paper / reference implementation (YonseiML/fpp bb9917f).
DEFAULT_STEPS = 1000
DEFAULT_LR = 1e-2
DEFAULT_MIN_LR = 1e-4
DEFAULT_WEIGHT_DECAY = 0.01  # torch.optim.AdamW default, as in the reference
DEFAULT_NUM_NOISE = 4
DEFAULT_CTX_NOISE = 0.0707105  # 0.1 / sqrt(2)
DEFAULT_CLS_NOISE = 0.141421  # sqrt(0.02)
DEFAULT_INIT_STD = 0.141421
#: lambda = FLAT_WEIGHT_BASE + FLAT_WEIGHT_SCALE / C when not given.
FLAT_WEIGHT_BASE = 1.0
FLAT_WEIGHT_SCALE = 15.0
#: Classes simulated by the class-agnostic variant when not given.
DEFAULT_AGNOSTIC_CLASSES = 100
#: Placeholder class name of the class-agnostic variant (a single BPE token).
AGNOSTIC_PLACEHOLDER = "XX"
#: Classes per chunk of the class-chunked step (bounds peak memory).
DEFAULT_CHUNK_CLASSES = 128

# File format.
FORMAT_NAME = "fpp-init"
FORMAT_VERSION = 1
CTX_KEY = "ctx"

# Cache.
CACHE_ENV = "FPP_INIT_CACHE"
