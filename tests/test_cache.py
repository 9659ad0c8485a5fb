"""The local prompt cache: keys, hits without optimising, misses, foreign and damaged entries, a cache
that cannot be used, concurrent writers."""

from __future__ import annotations

import os
import threading
import warnings
from pathlib import Path

import pytest
import torch
from helpers import make_prompt

import fpp_init
import fpp_init.api._pretrain as pretrain_module
from fpp_init import FPPConfig
from fpp_init._io import default_cache_dir
from fpp_init.artifacts import read_prompt_file
from fpp_init.artifacts.cache import PromptCache
from fpp_init.artifacts.identity import RunIdentity

NAMES = ["banded", "blotchy", "braided", "bubbly"]


def _fail(*args: object, **kwargs: object) -> None:
    raise AssertionError("optimize_flat_prompt ran: this should have been a cache hit")


def _run(model: torch.nn.Module, cache: object, names: list[str] = NAMES, **kw: object) -> fpp_init.FPPPrompt:
    options = {"steps": 3, "seed": 0, **kw}
    return fpp_init.pretrain_flat_prompt(model, names, progress=False, cache=cache, **options)  # type: ignore[arg-type]


def _request(prompt: fpp_init.FPPPrompt, **changes: object) -> RunIdentity:
    values: dict[str, object] = dict(
        fingerprint=prompt.fingerprint,
        classnames=prompt.classnames,
        num_classes=prompt.num_classes,
        template=prompt.template,
        predefined=torch.ones(4, 128),
        init_ctx=None,
        config=FPPConfig.from_dict(prompt.config),
    )
    values.update(changes)
    return RunIdentity(**values)  # type: ignore[arg-type]


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
    key = RunIdentity(**base).key  # type: ignore[arg-type]
    assert key == RunIdentity(**base).key  # type: ignore[arg-type]
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
    keys = {RunIdentity(**{**base, **c}).key for c in changes}  # type: ignore[arg-type]
    assert len(keys) == len(changes) and key not in keys
    # execution-only fields do not change the result, so not the key
    for cfg in (
        FPPConfig(chunk_classes=1),
        FPPConfig(share_prefix=False),
        FPPConfig(autocast="off"),
        FPPConfig(threads=1),
    ):
        assert RunIdentity(**{**base, "config": cfg}).key == key  # type: ignore[arg-type]


def test_hit_skips_optimiser_and_changed_config_misses(
    tiny_clip: torch.nn.Module, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    first = _run(tiny_clip, cache)
    assert first.history and len(first.history["loss"]) == 3 and first.cache_entry is None
    (entry,) = list(cache.iterdir())
    stat, data = entry.stat(), entry.read_bytes()

    monkeypatch.setattr(pretrain_module, "optimize_flat_prompt", _fail)
    hit = _run(tiny_clip, cache)
    assert torch.equal(hit.ctx, first.ctx)
    assert hit.history == {} and hit.cache_entry == entry  # nothing ran; it says where it came from
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
    # cache=False (the default) never reads the cache
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


def test_damaged_entry_is_a_miss_and_rewritten(tiny_clip: torch.nn.Module, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = _run(tiny_clip, cache, names=NAMES[:2])
    (entry,) = list(cache.iterdir())
    entry.write_bytes(entry.read_bytes()[:50])
    with pytest.warns(fpp_init.errors.CacheWarning, match="ignoring unusable prompt cache entry"):
        again = _run(tiny_clip, cache, names=NAMES[:2])
    assert again.history  # recomputed
    assert torch.equal(again.ctx, first.ctx)  # same seed, same result
    assert fpp_init.load_fpp_prompt(entry).n_ctx == first.n_ctx  # rewritten whole


def test_entry_copied_onto_another_key_is_a_miss(tiny_clip: torch.nn.Module, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cat_dog = _run(tiny_clip, cache, names=["cat", "dog"])
    (cat_entry,) = list(cache.iterdir())
    car_bus = _run(tiny_clip, cache, names=["car", "bus"])
    car_entry = next(p for p in cache.iterdir() if p != cat_entry)
    car_entry.write_bytes(cat_entry.read_bytes())  # the cat/dog entry now sits under the car/bus key
    again = _run(tiny_clip, cache, names=["car", "bus"])
    assert again.history and again.cache_entry is None  # recomputed, not served from the foreign entry
    assert torch.equal(again.ctx, car_bus.ctx) and not torch.equal(again.ctx, cat_dog.ctx)
    assert read_prompt_file(car_entry).prompt.classnames == ["car", "bus"]  # and rewritten


def test_lookup_checks_the_entrys_own_metadata(tmp_path: Path) -> None:
    prompt = make_prompt(fingerprint="00ff00ff00ff00ff")
    cache = PromptCache(tmp_path)
    request = _request(prompt)
    cache.store(request, prompt)
    assert torch.equal(cache.lookup(request).ctx, prompt.ctx)  # type: ignore[union-attr]
    assert cache.lookup(_request(prompt, fingerprint="another")) is None
    assert cache.lookup(_request(prompt, config=FPPConfig(steps=8, seed=0))) is None
    # the same file under the key of another request is foreign
    other = _request(prompt, predefined=torch.zeros(4, 128))
    cache.path(request.key).rename(cache.path(other.key))
    assert cache.lookup(other) is None


def test_cache_folder_that_cannot_be_used_warns_once_and_the_run_goes_on(
    tiny_clip: torch.nn.Module, tmp_path: Path
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    for folder in (blocker, blocker / "sub"):  # a file where the folder should be; a folder below a file
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            prompt = _run(tiny_clip, folder, names=NAMES[:2])
        assert prompt.history and torch.isfinite(prompt.ctx).all()
        cache_warnings = [w for w in seen if issubclass(w.category, fpp_init.errors.CacheWarning)]
        assert len(cache_warnings) == 1 and "disabled" in str(cache_warnings[0].message)
    assert blocker.read_text() == "not a folder"


def test_concurrent_writers_and_readers(tmp_path: Path) -> None:
    prompts = [make_prompt(seed=s) for s in range(4)]
    cache = PromptCache(tmp_path)
    request = _request(prompts[0])
    errors: list[BaseException] = []
    seen: list[torch.Tensor] = []
    stop = threading.Event()
    path = cache.path(request.key)

    def write(p: fpp_init.FPPPrompt) -> None:
        try:
            for _ in range(25):
                assert cache.store(request, p) == path
        except BaseException as exc:  # pragma: no cover
            errors.append(exc)

    def read() -> None:
        while not stop.is_set():
            if path.exists():
                seen.append(read_prompt_file(path).prompt.ctx)

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
    assert sorted(os.listdir(tmp_path)) == [path.name]  # no temp files left behind


def test_cli_cache_flag_says_from_cache_and_writes_the_same_bytes(
    tiny_ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from fpp_init.cli import main

    monkeypatch.setenv("FPP_INIT_CACHE", str(tmp_path / "cli-cache"))
    names = tmp_path / "names.txt"
    names.write_text("\n".join(NAMES[:2]))
    args = ["pretrain", "--weights", str(tiny_ckpt), "--classnames", str(names), "--steps", "2", "--quiet", "--cache"]
    assert main([*args, "--out", str(tmp_path / "a.safetensors")]) == 0
    assert "from cache" not in capsys.readouterr().err
    (entry,) = (tmp_path / "cli-cache").glob("*.safetensors")
    monkeypatch.setattr(pretrain_module, "optimize_flat_prompt", _fail)
    assert main([*args, "--out", str(tmp_path / "b.safetensors"), "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert f"from cache (key {entry.stem}" in err
    a, b = (fpp_init.load_fpp_prompt(tmp_path / f"{n}.safetensors") for n in "ab")
    assert torch.equal(a.ctx, b.ctx)
    # same inputs, same file: users can checksum prompt files
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()
