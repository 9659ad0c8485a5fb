"""The local prompt cache: keys, hits without optimising, misses, damaged entries, concurrent writers."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import pytest
import torch
from test_hub import make_prompt

import fpp_init
import fpp_init._pretrain as pretrain_module
from fpp_init import FPPConfig
from fpp_init._cache import cache_key, default_cache_dir, entry_path, lookup, store

NAMES = ["banded", "blotchy", "braided", "bubbly"]


def _fail(*args: object, **kwargs: object) -> None:
    raise AssertionError("optimize_flat_prompt ran: this should have been a cache hit")


def _run(model: torch.nn.Module, cache: object, names: list[str] = NAMES, **kw: object) -> fpp_init.FPPPrompt:
    options = {"steps": 3, "seed": 0, **kw}
    return fpp_init.pretrain_flat_prompt(model, names, progress=False, cache=cache, **options)  # type: ignore[arg-type]


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FPP_INIT_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("FPP_INIT_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "fpp-init"


def test_cache_key_covers_every_input() -> None:
    pre = torch.ones(4, 8)
    base = dict(
        fingerprint="fp",
        classnames=["a", "b"],
        num_classes=2,
        template="a photo of a",
        predefined=pre,
        init_ctx=None,
        config=FPPConfig(),
    )
    key = cache_key(**base)  # type: ignore[arg-type]
    assert key == cache_key(**base)  # type: ignore[arg-type]
    assert len(key) == 32
    changes = [
        {"fingerprint": "fp2"},
        {"classnames": ["b", "a"]},
        {"classnames": None},
        {"num_classes": 3},
        {"template": "a picture of a"},
        {"predefined": pre * 2},
        {"init_ctx": torch.zeros(4, 8)},
        {"config": FPPConfig(steps=999)},
        {"config": FPPConfig(seed=1)},
        {"config": FPPConfig(flat_weight=2.0)},
        {"config": FPPConfig(ctx_noise=0.0)},
    ]
    keys = {cache_key(**{**base, **c}) for c in changes}  # type: ignore[arg-type]
    assert len(keys) == len(changes) and key not in keys
    # execution-only fields do not change the result, so not the key
    for cfg in (FPPConfig(chunk_classes=1), FPPConfig(share_prefix=False), FPPConfig(autocast="off")):
        assert cache_key(**{**base, "config": cfg}) == key  # type: ignore[arg-type]


def test_hit_skips_optimiser_and_changed_config_misses(
    tiny_clip: torch.nn.Module, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    first = _run(tiny_clip, cache)
    assert first.history and len(first.history["loss"]) == 3
    (entry,) = list(cache.iterdir())
    stat, data = entry.stat(), entry.read_bytes()

    monkeypatch.setattr(pretrain_module, "optimize_flat_prompt", _fail)
    hit = _run(tiny_clip, cache)
    assert torch.equal(hit.ctx, first.ctx)
    assert hit.history == {}  # nothing ran
    assert hit.final_losses == first.final_losses and hit.config == first.config
    assert hit.fingerprint == first.fingerprint and hit.classnames == NAMES
    assert entry.stat().st_mtime_ns == stat.st_mtime_ns and entry.read_bytes() == data
    assert list(cache.iterdir()) == [entry]
    # execution-only options still hit
    assert torch.equal(_run(tiny_clip, cache, chunk_classes=1).ctx, first.ctx)

    for change in ({"steps": 4}, {"seed": 1}, {"lr": 5e-3}):
        with pytest.raises(AssertionError, match="should have been a cache hit"):
            _run(tiny_clip, cache, **change)
    with pytest.raises(AssertionError, match="should have been a cache hit"):
        _run(tiny_clip, cache, names=NAMES[:3])
    with pytest.raises(AssertionError, match="should have been a cache hit"):
        fpp_init.pretrain_flat_prompt(tiny_clip, NAMES, template="a picture of a", steps=3, progress=False, cache=cache)
    # cache=False never reads the cache
    with pytest.raises(AssertionError, match="should have been a cache hit"):
        _run(tiny_clip, False)

    monkeypatch.undo()
    miss = _run(tiny_clip, cache, steps=4)
    assert miss.history and not torch.equal(miss.ctx, first.ctx)
    assert len(list(cache.iterdir())) == 2


def test_cache_true_uses_env_folder(
    tiny_clip: torch.nn.Module, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FPP_INIT_CACHE", str(tmp_path / "env-cache"))
    first = _run(tiny_clip, True, names=NAMES[:2])
    assert len(list((tmp_path / "env-cache").glob("*.safetensors"))) == 1
    monkeypatch.setattr(pretrain_module, "optimize_flat_prompt", _fail)
    assert torch.equal(_run(tiny_clip, True, names=NAMES[:2]).ctx, first.ctx)


def test_damaged_entry_is_a_miss_and_rewritten(
    tiny_clip: torch.nn.Module, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = tmp_path / "cache"
    first = _run(tiny_clip, cache, names=NAMES[:2])
    (entry,) = list(cache.iterdir())
    entry.write_bytes(entry.read_bytes()[:50])
    with caplog.at_level(logging.WARNING, logger="fpp_init._cache"):
        again = _run(tiny_clip, cache, names=NAMES[:2])
    assert "ignoring unusable FPP cache entry" in caplog.text
    assert again.history  # recomputed
    assert torch.equal(again.ctx, first.ctx)  # same seed, same result
    assert fpp_init.load_fpp_prompt(entry).n_ctx == first.n_ctx  # rewritten whole


def test_lookup_rejects_foreign_entry(tmp_path: Path) -> None:
    prompt = make_prompt()
    store(tmp_path, "k", prompt)
    assert torch.equal(lookup(tmp_path, "k", fingerprint=prompt.fingerprint, n_ctx=4, width=128).ctx, prompt.ctx)  # type: ignore[union-attr]
    assert lookup(tmp_path, "k", fingerprint="another") is None
    assert lookup(tmp_path, "k", n_ctx=5) is None
    assert lookup(tmp_path, "k", width=512) is None
    assert lookup(tmp_path, "absent") is None


def test_unwritable_cache_does_not_fail_the_run(
    tiny_clip: torch.nn.Module, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with caplog.at_level(logging.WARNING, logger="fpp_init._cache"):
        prompt = _run(tiny_clip, blocker, names=NAMES[:2])
    assert prompt.history and "could not write FPP cache entry" in caplog.text
    assert store(blocker, "k", prompt) is None


def test_concurrent_writers_and_readers(tmp_path: Path) -> None:
    prompts = [make_prompt(seed=s) for s in range(4)]
    errors: list[BaseException] = []
    seen: list[torch.Tensor] = []
    stop = threading.Event()

    def write(p: fpp_init.FPPPrompt) -> None:
        try:
            for _ in range(25):
                assert store(tmp_path, "key", p) == entry_path(tmp_path, "key")
        except BaseException as exc:  # pragma: no cover
            errors.append(exc)

    def read() -> None:
        while not stop.is_set():
            hit = lookup(tmp_path, "key")
            if hit is not None:
                seen.append(hit.ctx)

    reader = threading.Thread(target=read)
    reader.start()
    writers = [threading.Thread(target=write, args=(p,)) for p in prompts]
    for t in writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    reader.join()
    assert not errors
    assert seen, "the reader never saw an entry"
    assert all(any(torch.equal(ctx, p.ctx) for p in prompts) for ctx in seen)  # never a partial file
    assert sorted(os.listdir(tmp_path)) == ["key.safetensors"]  # no temp files left behind
    final = lookup(tmp_path, "key")
    assert final is not None and any(torch.equal(final.ctx, p.ctx) for p in prompts)


def test_cli_cache_flag(tiny_ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fpp_init.cli import main

    monkeypatch.setenv("FPP_INIT_CACHE", str(tmp_path / "cli-cache"))
    names = tmp_path / "names.txt"
    names.write_text("\n".join(NAMES[:2]))
    args = ["pretrain", "--weights", str(tiny_ckpt), "--classnames", str(names), "--steps", "2", "--quiet", "--cache"]
    assert main([*args, "--out", str(tmp_path / "a.safetensors")]) == 0
    assert len(list((tmp_path / "cli-cache").glob("*.safetensors"))) == 1
    monkeypatch.setattr(pretrain_module, "optimize_flat_prompt", _fail)
    assert main([*args, "--out", str(tmp_path / "b.safetensors"), "--device", "cpu"]) == 0
    a, b = (fpp_init.load_fpp_prompt(tmp_path / f"{n}.safetensors") for n in "ab")
    assert torch.equal(a.ctx, b.ctx)
