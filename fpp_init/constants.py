"""Constants of FPP, of the file format, of the cache and of the Hub, in one place (no imports)."""

from __future__ import annotations

#: The hand-written prompt of the paper; ``n_ctx`` follows from its tokens.
DEFAULT_TEMPLATE = "a photo of a"
#: Context length of the TPT-family default prompt ("a photo of a").
TPT_N_CTX = 4
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
#: Steps between two checkpoints of a run that keeps one.
DEFAULT_CHECKPOINT_EVERY = 50
#: Steps between two checks for NaN / Inf losses during optimisation (one device sync each).
FINITE_CHECK_EVERY = 25

#: Runs asked for more steps than this get a warning with their estimated time (10x the paper's).
LONG_RUN_STEPS = 10 * DEFAULT_STEPS

# Limits of accepted values (far beyond any real use; they keep bad input from reaching torch).
MAX_STEPS = 10**9
MAX_SEED = 2**63 - 1
MAX_NUM_NOISE = 10**6
MAX_NUM_CLASSES = 10**7
MAX_BINS = 10**6
#: Largest magnitude of a float option: the computation runs in fp32, where a larger value is Inf.
MAX_FLOAT = 3.4028234663852886e38

# Sharpness diagnostics.
#: Noise scales, as multiples of FPP's ``ctx_noise`` / ``cls_noise``.
DEFAULT_SHARPNESS_FACTORS = (0.0, 0.5, 1.0, 2.0, 4.0)
DEFAULT_SHARPNESS_DRAWS = 8

# Text-tower fingerprint.
#: Values sampled (evenly strided) from each weight tensor.
FINGERPRINT_SAMPLES = 4096
#: Positional-embedding rows hashed: every usable text tower has at least these, and a
#: prompt's result does not depend on how many positions the tower has beyond its prompts.
FINGERPRINT_POSITIONS = 16

# File format.
FORMAT_NAME = "fpp-init"
FORMAT_VERSION = 1
CTX_KEY = "ctx"
SUFFIX = ".safetensors"
#: No prompt file is larger (a [64, 4096] fp32 ctx is 1 MiB); reads stop here.
MAX_PROMPT_FILE_BYTES = 64 * 2**20
#: Largest safetensors header accepted (metadata with 1,000,000 class names fits).
MAX_HEADER_BYTES = 32 * 2**20
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl", ".pickle", ".tar")

# Cache.
CACHE_ENV = "FPP_INIT_CACHE"
#: Metadata key with which a cache entry records its own key.
CACHE_KEY_FIELD = "fpp_cache_key"

# Hugging Face Hub.
HUB_SCHEME = "hf://"
#: Seconds the connectivity probe waits before a Hub download is treated as offline.
HUB_PROBE_TIMEOUT = 3.0

# Distributed runs.
#: Seconds the ranks wait for each other to join (the rendezvous); FPPConfig.dist_timeout.
DEFAULT_DIST_TIMEOUT = 300.0
#: Seconds a rank whose collective failed waits to see which peer process has ended.
DIST_LOST_GRACE = 2.0
#: Largest dist_timeout accepted (a week).
MAX_DIST_TIMEOUT = 7 * 24 * 3600.0

# Model references (see fpp_init.models).
OPEN_CLIP_PREFIX = "open_clip:"
HF_PREFIX = "hf:"
#: clip-anytorch's model names (``clip.available_models()``: OpenAI's released checkpoints).
CLIP_MODEL_NAMES = (
    "RN50", "RN101", "RN50x4", "RN50x16", "RN50x64", "ViT-B/32", "ViT-B/16", "ViT-L/14", "ViT-L/14@336px",
)  # fmt: skip
#: Suffixes of model checkpoint files (a reference ending so is a path, not a name).
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".safetensors")
#: Device types ``torch.device`` parses (c10's DeviceType names).
DEVICE_TYPES = (
    "cpu", "cuda", "mps", "xpu", "hip", "meta", "hpu", "mtia", "maia", "xla", "lazy", "ipu", "ve", "fpga",
    "vulkan", "mkldnn", "opengl", "opencl", "ideep", "privateuseone",
)  # fmt: skip

#: Hub ids of OpenAI CLIP checkpoints by clip-anytorch name (model cards' ``base_model``).
OPENAI_HUB_IDS = {
    "ViT-B/32": "openai/clip-vit-base-patch32",
    "ViT-B/16": "openai/clip-vit-base-patch16",
    "ViT-L/14": "openai/clip-vit-large-patch14",
    "ViT-L/14@336px": "openai/clip-vit-large-patch14-336",
}
