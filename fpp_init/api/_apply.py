"""``fpp_init.apply``: install an FPP prompt into a live TPT-style model, in place, undoably.

Design-independent: everything that depends on the prompt-learner design goes through the
:class:`~fpp_init.adapters.PromptDesign` that :func:`~fpp_init.adapters.detect` returns.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from typing import Any

import torch

from .._runtime import cpu_threads, frozen
from .._validate import check_bool, check_cache, check_classnames, check_device
from ..adapters import PromptDesign, Snapshot, detect
from ..algorithm import optimize_flat_prompt
from ..artifacts import FPPPrompt
from ..artifacts.cache import PromptCache
from ..artifacts.export import PromptSource
from ..artifacts.fpp_prompt import current_ctx
from ..artifacts.identity import RunIdentity
from ..artifacts.sources import as_prompt
from ..config import FPPConfig, as_config
from ..errors import BeyondPaperWarning, ConfigError, PromptMismatchError, PromptMismatchWarning
from ..models.clip import infer_backbone
from ._pretrain import prompt_from_result

logger = logging.getLogger(__name__)

__all__ = ["apply", "FPPHandle", "ApplyRequest"]

_STATE_ATTR = "_fpp_init_state"


class _ResetHook:
    """Instance-level wrapper of the design's class-set method (``reset_classnames``, or the design's
    :attr:`~fpp_init.adapters.PromptDesign.hook`): call the original, then refresh the installation.

    A callable object (not a closure) so that ``copy.deepcopy(model)`` gives the copy its own hook.
    """

    def __init__(self, handle: FPPHandle, original: Any) -> None:
        self.handle = handle
        self.original = original

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        out = self.original(*args, **kwargs)
        if self.handle.active:
            self.handle.refresh()
        return out


@dataclass(frozen=True)
class ApplyRequest:
    """What an ``apply`` call asked for (kept so that a class-set change is served the same way)."""

    prompt: FPPPrompt | None
    config: FPPConfig
    cache: PromptCache | None
    progress: bool
    device: torch.device | None
    strict: bool


class FPPHandle:
    """An FPP installation in a live model; undo it with :meth:`remove` or a ``with`` block.

    Made by :func:`apply` (constructing one installs the prompt; nothing is modified when that fails).

    Attributes:
        design: the short name of the prompt-learner design detected (``"tpt"``, ``"tca"``,
            ``"fpp_reference"``, ``"dynaprompt"``, ``"cocoop"``, ``"maple"``, ``"zero_maple"``, ``"dart"``, or a
            registered one).
        adapter: the :class:`~fpp_init.adapters.PromptDesign` bound to the model.
        prompt: the :class:`~fpp_init.FPPPrompt` installed for the current class set.
        predefined: the original initial ctx ``[n_ctx, D]`` (what FPP stays aligned with).
        active: ``False`` once removed.
    """

    def __init__(self, adapter: PromptDesign, request: ApplyRequest) -> None:
        self.adapter = adapter
        self.design = adapter.name
        self.predefined = adapter.current_init()
        self._snapshot: Snapshot | None = None
        self._request = request
        self._memo: dict[str, FPPPrompt] = {}
        self._fingerprint: str | None = None
        self._hook: _ResetHook | None = None
        self._hook_owner: Any = None
        self.prompt: FPPPrompt | None = None
        self.active = False
        self._install(self._resolve())  # may fail: nothing has been modified yet
        self._attach()

    @staticmethod
    def installed_in(adapter: PromptDesign) -> FPPHandle | None:
        """The active handle of an earlier ``apply`` on the same model, if any."""
        existing = adapter.learner.__dict__.get(_STATE_ATTR)
        return existing if isinstance(existing, FPPHandle) and existing.active else None

    # -- public ---------------------------------------------------------------------------
    @property
    def model(self) -> Any:
        """The (unwrapped) model the prompt is installed in."""
        return self.adapter.root

    def refresh(self) -> None:
        """Install the prompt for the model's current class set (what the ``reset_classnames`` hook calls):
        a given prompt again, or one pretrained, memoised or cached for these classes."""
        self.adapter.check_layout()
        self._install(self._resolve())
        logger.info("FPP prompt re-installed for %d classes", self.adapter.num_classes)

    def reconfigure(self, request: ApplyRequest) -> None:
        """Serve a new ``apply`` call with ``request`` (the weights may have changed since); on failure the
        installation and the previous request stay as they were."""
        old = (self._request, self._fingerprint)
        self._request, self._fingerprint = request, None
        try:
            prompt = self._resolve()
        except BaseException:
            self._request, self._fingerprint = old
            raise
        self._install(prompt)

    def remove(self) -> None:
        """Restore the original ctx, what the design replaced (``ctx_init_state``, ``init_ctx``) and
        ``reset_classnames`` (or the design's class-set method)."""
        if not self.active:
            return
        adapter = self.adapter
        if self._snapshot is not None:
            adapter.restore(self._snapshot)
        owner = self._hook_owner
        if owner is not None and owner.__dict__.get(adapter.hook) is self._hook:
            del owner.__dict__[adapter.hook]
        adapter.learner.__dict__.pop(_STATE_ATTR, None)
        self._hook = self._hook_owner = None
        self.active = False
        logger.info("FPP prompt removed from %s", type(adapter.root).__name__)

    def __enter__(self) -> FPPHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def __repr__(self) -> str:
        state = "active" if self.active else "removed"
        return f"FPPHandle({self.adapter.description}, n_ctx={self.adapter.n_ctx}, {state}, prompt={self.prompt!r})"

    # -- internals ------------------------------------------------------------------------
    def _resolve(self) -> FPPPrompt:
        """The prompt for the model's current class set (given, memoised, cached or pretrained)."""
        if self._request.prompt is not None:
            self._check_prompt(self._request.prompt)
            return self._request.prompt
        return self._pretrain()

    def _tower_fingerprint(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = self.adapter.fingerprint()
        return self._fingerprint

    def _check_prompt(self, prompt: FPPPrompt) -> None:
        adapter = self.adapter
        current_ctx(prompt)  # at every installation: the tensor may have been changed since
        if prompt.n_ctx != adapter.n_ctx or prompt.width != adapter.width:
            raise PromptMismatchError(
                f"the prompt has shape [{prompt.n_ctx}, {prompt.width}] but the model's {adapter.description} "
                f"prompt is [{adapter.n_ctx}, {adapter.width}]: "
                + (
                    "another backbone?"
                    if prompt.width != adapter.width
                    else f"pretrain with a {adapter.n_ctx}-token template or change the model's ctx_init / n_ctx"
                )
            )
        if self._request.strict and prompt.fingerprint is not None and prompt.fingerprint != self._tower_fingerprint():
            raise PromptMismatchError(
                f"the prompt was pretrained for a text tower with fingerprint {prompt.fingerprint} "
                f"(backbone {prompt.backbone!r}) but this model's text tower has {self._tower_fingerprint()}: "
                f"{adapter.tower_parts}; pretrain for these weights, or pass strict=False to install it anyway"
            )
        names = adapter.classnames()
        given = None if prompt.class_agnostic or prompt.classnames is None else prompt.classnames
        if given is not None and names is not None and _spaced(given) != _spaced(names):
            warnings.warn(
                f"installing a prompt pretrained for {len(given)} other class names ({', '.join(given[:3])}...) into a "
                f"model with {len(names)} classes; a class-agnostic prompt, or apply(model) without a prompt, fits "
                "any class set",
                PromptMismatchWarning,
                stacklevel=4,
            )

    def _pretrain(self) -> FPPPrompt:
        adapter = self.adapter
        cfg = self._request.config
        layout = f"live:{adapter.name}:{adapter.ctx_start}:{adapter.prompts_digest()}"  # what the class set embeds
        labels = adapter.num_labels  # C of lambda = 1 + 15/C: classes, which may differ from the prompt rows
        names = adapter.classnames()
        identity = RunIdentity(self._tower_fingerprint(), names, labels, layout, self.predefined, None, cfg)
        key = identity.key
        if key in self._memo:
            return self._memo[key]
        if names is not None:  # the codebase's own label set: warned about, not refused
            check_classnames(names, "the model's class names", repeats="warn")
        hit = self._request.cache.lookup(identity) if self._request.cache is not None else None
        if hit is not None:
            self._memo[key] = hit
            return hit
        logger.info(
            "pretraining FPP on the live model: %d classes (%d prompts), n_ctx %d, %d steps",
            labels,
            adapter.num_classes,
            adapter.n_ctx,
            cfg.steps,
        )
        device = self._request.device or adapter.device
        run_cfg = cfg  # the algorithm counts prompt rows; the weight follows the classes when they differ
        if cfg.flat_weight is None and labels != adapter.num_classes:
            run_cfg = cfg.replace(flat_weight=cfg.resolved_flat_weight(labels))
        with frozen([adapter.text_encoder]), cpu_threads(cfg.threads, device):
            result = optimize_flat_prompt(
                adapter.tower(),
                adapter.embedded(),
                self.predefined,
                run_cfg,
                device=device,
                progress=self._request.progress,
            )
        prompt = prompt_from_result(
            result,
            cfg,
            backbone=infer_backbone(getattr(adapter.root, "image_encoder", None)),
            template=adapter.template(),
            classnames=names,
            class_agnostic=False,
            num_classes=labels,
            fingerprint=identity.fingerprint,
        )
        self._memo[key] = prompt
        if self._request.cache is not None:
            self._request.cache.store(identity, prompt)
        return prompt

    def _install(self, prompt: FPPPrompt) -> None:
        if self._snapshot is None:
            self._snapshot = self.adapter.snapshot()
        self.adapter.install(prompt.ctx)
        self.prompt = prompt

    def _attach(self) -> None:
        adapter = self.adapter
        owner = adapter.hook_owner()
        if owner is not None:
            self._hook = _ResetHook(self, getattr(owner, adapter.hook))
            self._hook_owner = owner
            object.__setattr__(owner, adapter.hook, self._hook)
        object.__setattr__(adapter.learner, _STATE_ATTR, self)
        self.active = True


def _spaced(names: list[str]) -> list[str]:
    return [n.replace("_", " ") for n in names]


def apply(
    model: Any,
    source: PromptSource | None = None,
    *,
    config: FPPConfig | None = None,
    cache: bool | str | os.PathLike[str] = False,
    progress: bool = True,
    device: str | torch.device | None = None,
    strict: bool = True,
    **config_fields: Any,
) -> FPPHandle:
    """Give a live TPT-style model an FPP initial prompt, in place (one line in the user's script).

    Call it once the model has its class set: right after ``model.reset_classnames(...)`` in
    the script's per-dataset loop (or after ``get_coop(...)`` and any ``--load`` when there is
    no such loop), before the tuning loop. The prompt-learner design is detected from the object
    (:func:`fpp_init.adapters.detect`): the TPT design (TPT, C-TPT, O-TPT, DiffTPT, RLCF, MTA,
    R-TPT), the FPP reference design (text encoder with ``aux_outputs``), DynaPrompt (the prompt goes into ``init_ctx``; the residual ``ctx``
    stays zero), TPT's CoCoOp path (the prompt becomes ``prompt_generator.ctx``, the base that
    ``gen_ctx`` adds the image-dependent meta-net bias to; FPP is pretrained without that
    bias) and MaPLe / PromptAlign (pretrained through the model's text encoder with its deep
    text prompts; call it before ``trainer.tpt()``; a warning is logged because the ctx also
    feeds the image branch, which FPP ignores), TCA (attribute prompts; ``lambda`` counts classes),
    ZERO's MaPLe path (the ctx written in place, ZERO's cached text features dropped) and DART (the
    prompt in every class row of ``text_prompts_a``; call it after ``init_text_prompts``), or a design
    added with :func:`fpp_init.adapters.register_design`. ``.module`` wrappers are unwrapped.

    The prompt is written into ``prompt_learner.ctx`` with ``copy_`` (an optimizer created
    earlier keeps working) and becomes the state ``reset()`` restores. The model's
    ``reset_classnames`` is wrapped so that each new class set gets its own prompt (pretrained,
    or taken from memory or the cache), always aligned with the *original* initial ctx; a
    given ``source`` is simply re-installed. Global RNG, ``requires_grad`` and train/eval mode
    are left as found. Applying again updates the installation and otherwise changes nothing.

    Args:
        model: the live model (``ClipTestTimeTuning`` or similar, or a wrapper with ``.module``).
        source: ``None`` to pretrain FPP on the model itself (its text encoder, token
            embeddings and current class names); or a prompt to install: an
            :class:`~fpp_init.FPPPrompt`, a ``[n_ctx, D]`` tensor, a ``.safetensors`` path or an
            ``hf://`` reference (read by :func:`fpp_init.load_fpp_prompt`).
        config: FPP hyperparameters for pretraining; keyword ``config_fields`` (FPPConfig fields as keywords) override its fields
            (``steps=200, seed=1``).
        cache: reuse prompts pretrained earlier for the same text tower, class set, original
            ctx and config: ``True`` (the default cache folder), a folder, or ``False`` (default,
            as everywhere in fpp-init: nothing is written unless asked for). With ``True``, runs
            with other TPT seeds do not pretrain again.
        progress: tqdm progress bar while pretraining.
        device: where to pretrain (default: the model's device).
        strict: refuse a prompt whose text-tower fingerprint differs from the model's.

    Returns:
        An :class:`FPPHandle`; ``handle.remove()`` (or leaving ``with apply(model):``) undoes
        everything.

    Raises:
        AdapterError: the model is not of a supported design (the message says what was found), or
            matches two (both are named).
        PromptMismatchError: the prompt's ``n_ctx``, width or fingerprint does not fit the model.
    """
    if "class_agnostic" in config_fields or "classnames" in config_fields:
        raise ConfigError(
            "apply() pretrains on the live model for its current class names (a live TPT model keeps no "
            "token-embedding table to draw class-agnostic tokens from). For a class-agnostic prompt, pretrain "
            "one on the same CLIP weights with fpp_init.pretrain_flat_prompt(..., class_agnostic=True) and "
            "pass it: apply(model, prompt)",
            param="class_agnostic",
        )
    cfg = as_config(config, config_fields)
    check_bool(progress, "progress")
    check_bool(strict, "strict")
    cache_dir = check_cache(cache)
    dev = check_device(device) if device is not None else None
    adapter = detect(model)
    prompt = None if source is None else as_prompt(source)
    request = ApplyRequest(
        prompt=prompt,
        config=cfg,
        cache=None if cache_dir is None else PromptCache(cache_dir),
        progress=progress,
        device=dev,
        strict=strict,
    )

    existing = FPPHandle.installed_in(adapter)
    if existing is not None:
        existing.reconfigure(request)
        return existing

    if adapter.beyond_paper is not None:
        warnings.warn(adapter.beyond_paper, BeyondPaperWarning, stacklevel=2)
    handle = FPPHandle(adapter, request)
    logger.info(
        "FPP prompt installed in %s (%s, n_ctx %d)", type(adapter.root).__name__, adapter.description, adapter.n_ctx
    )
    return handle
