"""Hub references, resolved through the real ``huggingface_hub`` cache code with the network off."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from helpers import COMMIT, make_hf_cache, make_prompt
from huggingface_hub import constants as hf_constants

import fpp_init
from fpp_init import FPPPrompt, build_zoo
from fpp_init.artifacts.hub import HubRef, default_filename, parse_hub_ref
from fpp_init.errors import ConfigError, HubError, PickleFileError

COMMIT2 = "fedcba9876543210fedcba9876543210fedcba98"


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Network off: the env var (read by fpp-init at call time) and huggingface_hub's import-time constant."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)


@pytest.fixture
def hub_cache(tmp_path: Path) -> tuple[Path, FPPPrompt, bytes]:
    prompt = make_prompt()
    path = prompt.save(tmp_path / "src.safetensors")
    data = path.read_bytes()
    root = make_hf_cache(
        tmp_path / "hf",
        "someone/fpp-prompts",
        {"fpp_vit-b-16_agnostic_seed0.safetensors": data, "sub/dir/p.safetensors": data},
        refs=("main", "v1"),
    )
    return root, prompt, data


# -- references -------------------------------------------------------------------------


def test_parse_hub_ref_forms() -> None:
    assert parse_hub_ref("hf://o/r/f.safetensors") == HubRef("o/r", "f.safetensors", None)
    assert parse_hub_ref("hf://o/r@v1/a/b.safetensors") == HubRef("o/r", "a/b.safetensors", "v1")
    assert parse_hub_ref("hf://o/r/f.safetensors", revision="main").revision == "main"
    assert parse_hub_ref("hf://o/r@v1/f.safetensors", revision="v1").revision == "v1"
    assert str(HubRef("o/r", "a/b.safetensors", "v1")) == "hf://o/r@v1/a/b.safetensors"
    assert str(parse_hub_ref("hf://o/r/f.safetensors")) == "hf://o/r/f.safetensors"


@pytest.mark.parametrize(
    ("ref", "match"),
    [
        ("hf://o/r", "no file path"),
        ("hf://o//f.safetensors", "no file path"),
        ("hf://o/r@/f.safetensors", "empty revision"),
        ("hf://o/r/f.safetensors@v1", "right after the repository"),
        ("hf://o w/r/f.safetensors", "OWNER/NAME"),
        ("o/r/f.safetensors", "not a Hub reference"),
    ],
)
def test_parse_hub_ref_errors(ref: str, match: str) -> None:
    with pytest.raises(HubError, match=match):
        parse_hub_ref(ref)


def test_parse_hub_ref_conflicting_revisions() -> None:
    with pytest.raises(HubError, match=r"'v1'.*'v2'"):
        parse_hub_ref("hf://o/r@v1/f.safetensors", revision="v2")


def test_default_filename() -> None:
    assert default_filename(make_prompt()) == "fpp_vit-b-16_agnostic_seed0.safetensors"
    assert (
        default_filename(make_prompt(seed=3, backbone="ViT-L/14@336px"))
        == "fpp_vit-l-14-336px_agnostic_seed3.safetensors"
    )
    names = ["banded", "blotchy", "braided"]
    specific = make_prompt(classnames=names, class_agnostic=False, num_classes=3)
    name = default_filename(specific)
    assert name.startswith("fpp_vit-b-16_3cls-") and name.endswith("_seed0.safetensors")
    assert name != default_filename(make_prompt(classnames=names[::-1], class_agnostic=False, num_classes=3))
    assert default_filename(specific, tag="DTD") == "fpp_vit-b-16_dtd_seed0.safetensors"
    bare = FPPPrompt(ctx=torch.zeros(2, 8), template=None)
    assert default_filename(bare) == "fpp_unknown_ctx.safetensors"
    with pytest.raises(ConfigError):
        default_filename("not a prompt")  # type: ignore[arg-type]


# -- download through the real huggingface_hub cache -----------------------------------


def test_load_from_hf_cache_offline(offline: None, hub_cache: tuple[Path, FPPPrompt, bytes]) -> None:
    root, prompt, _ = hub_cache
    got = fpp_init.load_fpp_prompt("hf://someone/fpp-prompts/fpp_vit-b-16_agnostic_seed0.safetensors", cache_dir=root)
    assert torch.equal(got.ctx, prompt.ctx)
    assert got.fingerprint == prompt.fingerprint and got.config == prompt.config
    nested = fpp_init.load_fpp_prompt("hf://someone/fpp-prompts/sub/dir/p.safetensors", cache_dir=root)
    assert torch.equal(nested.ctx, prompt.ctx)
    # OWNER/REPO + filename, pinned revisions (tag via refs/, commit hash directly, '@' syntax)
    for kwargs in ({}, {"revision": "v1"}, {"revision": COMMIT}):
        same = fpp_init.load_fpp_prompt(
            "someone/fpp-prompts", "fpp_vit-b-16_agnostic_seed0.safetensors", cache_dir=root, **kwargs
        )
        assert torch.equal(same.ctx, prompt.ctx)
    pinned = fpp_init.load_fpp_prompt(f"hf://someone/fpp-prompts@{COMMIT}/sub/dir/p.safetensors", cache_dir=root)
    assert torch.equal(pinned.ctx, prompt.ctx)
    moved = fpp_init.load_fpp_prompt(
        "hf://someone/fpp-prompts@v1/sub/dir/p.safetensors", cache_dir=root, dtype=torch.float16, n_ctx=4, width=128
    )
    assert moved.ctx.dtype == torch.float16


def test_load_from_hf_cache_env(
    offline: None, hub_cache: tuple[Path, FPPPrompt, bytes], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    root, prompt, _ = hub_cache
    ref = "hf://someone/fpp-prompts/fpp_vit-b-16_agnostic_seed0.safetensors"
    monkeypatch.setenv("HF_HUB_CACHE", str(root))
    assert torch.equal(fpp_init.load_fpp_prompt(ref).ctx, prompt.ctx)
    # HF_HOME/hub is the cache when HF_HUB_CACHE is unset
    monkeypatch.delenv("HF_HUB_CACHE")
    home = tmp_path / "home"
    make_hf_cache(home / "hub", "someone/fpp-prompts", {"fpp_vit-b-16_agnostic_seed0.safetensors": hub_cache[2]})
    monkeypatch.setenv("HF_HOME", str(home))
    assert torch.equal(fpp_init.load_fpp_prompt(ref).ctx, prompt.ctx)


def test_offline_not_cached_is_hub_error(offline: None, hub_cache: tuple[Path, FPPPrompt, bytes]) -> None:
    root = hub_cache[0]
    with pytest.raises(HubError, match=r"not in the local Hugging Face cache.*HF_HUB_OFFLINE.*hf download") as info:
        fpp_init.load_fpp_prompt("hf://nobody/absent/x.safetensors", cache_dir=root)
    assert "hf://nobody/absent/x.safetensors" in str(info.value)
    with pytest.raises(HubError, match="offline mode is on"):  # repo cached, file not
        fpp_init.load_fpp_prompt("hf://someone/fpp-prompts/other.safetensors", cache_dir=root)
    with pytest.raises(HubError):  # revision not cached
        fpp_init.load_fpp_prompt("hf://someone/fpp-prompts@v9/sub/dir/p.safetensors", cache_dir=root)
    with pytest.raises(HubError):  # commit not cached
        fpp_init.load_fpp_prompt(f"hf://someone/fpp-prompts@{COMMIT2}/sub/dir/p.safetensors", cache_dir=root)


def test_local_files_only_without_offline_env(
    hub_cache: tuple[Path, FPPPrompt, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    root, prompt, _ = hub_cache
    got = fpp_init.load_fpp_prompt(
        "hf://someone/fpp-prompts/sub/dir/p.safetensors", cache_dir=root, local_files_only=True
    )
    assert torch.equal(got.ctx, prompt.ctx)
    with pytest.raises(HubError, match="not in the local Hugging Face cache"):
        fpp_init.load_fpp_prompt("hf://nobody/absent/x.safetensors", cache_dir=root, local_files_only=True)


def test_hub_pickle_refused_before_download(offline: None, tmp_path: Path) -> None:
    with pytest.raises(PickleFileError, match="allow_pickle=True"):
        fpp_init.load_fpp_prompt("hf://someone/coop/ctx.pth", cache_dir=tmp_path)


def test_hub_pickle_allowed(offline: None, tmp_path: Path) -> None:
    import io

    ctx = torch.arange(8.0).reshape(2, 4)
    buf = io.BytesIO()
    torch.save({"state_dict": {"ctx": ctx}, "epoch": 50}, buf)
    root = make_hf_cache(tmp_path / "hf", "someone/coop", {"ctx.pth": buf.getvalue()})
    got = fpp_init.load_fpp_prompt("hf://someone/coop/ctx.pth", cache_dir=root, allow_pickle=True)
    assert torch.equal(got.ctx, ctx) and got.template is None


def test_hub_argument_errors(tmp_path: Path) -> None:
    with pytest.raises(HubError, match="OWNER/NAME"):
        fpp_init.load_fpp_prompt("hf://o/r/x.safetensors", "y.safetensors")
    with pytest.raises(HubError, match="only to Hub sources"):
        fpp_init.load_fpp_prompt(tmp_path / "x.safetensors", revision="v1")


# -- push: validation only (no network in tests) ----------------------------------------


def test_push_validates_before_any_network(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no prompts"):
        fpp_init.push_fpp_prompt([], "someone/repo")
    with pytest.raises(ConfigError, match="sources\\[1\\] must be an FPPPrompt"):
        fpp_init.push_fpp_prompt([make_prompt(), 3], "someone/repo")  # type: ignore[list-item]
    with pytest.raises(ConfigError):
        fpp_init.push_fpp_prompt(42, "someone/repo")  # type: ignore[arg-type]
    with pytest.raises(HubError, match="OWNER/NAME"):
        fpp_init.push_fpp_prompt(make_prompt(), "no-owner")
    with pytest.raises(ConfigError, match="two prompts would be written"):
        fpp_init.push_fpp_prompt([make_prompt(), make_prompt()], "someone/repo")
    with pytest.raises(ConfigError, match="one name per prompt"):
        fpp_init.push_fpp_prompt([make_prompt()], "someone/repo", filenames=["a.safetensors", "b.safetensors"])
    with pytest.raises(fpp_init.errors.PromptFileError):
        fpp_init.push_fpp_prompt(tmp_path / "missing.safetensors", "someone/repo")


def test_push_offline_fails_cleanly_after_validating(offline: None) -> None:
    """Every argument is validated, then offline mode stops the push at once with one HubError."""
    with pytest.raises(HubError, match=r"cannot push to 'someone/repo': offline mode is on \(HF_HUB_OFFLINE=1\)"):
        fpp_init.push_fpp_prompt(make_prompt(), "someone/repo", private=True)


# -- repository ids: one validator, wherever an id is taken, before any work ------------------------
BAD_REPO_IDS = {
    "-bad/name": "is not a valid repository id",
    "own er/na me": "is not a valid repository id",
    "a/b/c": "must be OWNER/NAME",
    "no-owner": "must be OWNER/NAME",
    "someone/" + "x" * 100: "is not a valid repository id",
    "someone/na..me": "is not a valid repository id",
}


def _zoo_spec(tmp_path: Path) -> Path:
    from helpers import build_tiny_clip

    torch.save(build_tiny_clip(64, layers=1).state_dict(), tmp_path / "tiny.pt")
    spec = tmp_path / "zoo.toml"
    spec.write_text('backbones = ["tiny.pt"]\nclasses = ["agnostic"]\n[config]\nsteps = 1\n')
    return spec


REPO_ID_USES = {
    "push_fpp_prompt": lambda d, bad: fpp_init.push_fpp_prompt(make_prompt(), bad),
    "build_hub_folder": lambda d, bad: fpp_init.artifacts.build_hub_folder(make_prompt(), d / "hub", repo_id=bad),
    "build_zoo": lambda d, bad: build_zoo(_zoo_spec(d), d / "zoo", repo_id=bad, progress=False),
    "load_fpp_prompt": lambda d, bad: fpp_init.load_fpp_prompt(bad, "p.safetensors"),
}


@pytest.mark.parametrize("bad", list(BAD_REPO_IDS))
@pytest.mark.parametrize("use", list(REPO_ID_USES))
def test_bad_repository_ids_in_the_api(tmp_path: Path, use: str, bad: str) -> None:
    with pytest.raises(HubError, match=BAD_REPO_IDS[bad]) as info:
        REPO_ID_USES[use](tmp_path, bad)
    assert "\n" not in str(info.value) and bad in str(info.value)
    assert not (tmp_path / "hub").exists() and not (tmp_path / "zoo").exists()


@pytest.mark.parametrize("bad", list(BAD_REPO_IDS))
@pytest.mark.parametrize("command", ["push", "export", "zoo"])
def test_bad_repository_ids_in_the_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], command: str, bad: str
) -> None:
    from fpp_init.cli import main

    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing may be fetched or pushed
    src = make_prompt().save(tmp_path / "p.safetensors")
    args = {
        "push": ["push", str(src)],
        "export": ["export", str(src), "--hub", str(tmp_path / "hub")],
        "zoo": ["zoo", str(_zoo_spec(tmp_path)), "--out", str(tmp_path / "zoo")],
    }[command]
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main([*args, "--repo-id", bad]) == 2  # a leading '-' included: not read as an option
    err = capsys.readouterr().err
    assert err.startswith(f"fpp-init {command}: error: --repo-id {bad!r} ") and err.count("\n") == 1, err
    assert re.search(BAD_REPO_IDS[bad], err)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_a_value_starting_with_a_dash_reaches_its_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Only free-text values are glued; a missing value (an option right after) stays argparse's error."""
    from fpp_init.cli import main

    src = make_prompt().save(tmp_path / "p.safetensors")
    with pytest.raises(SystemExit):
        main(["push", str(src), "--repo-id", "--private"])
    assert "argument --repo-id: expected one argument" in capsys.readouterr().err
    assert main(["export", str(src), "--hub", str(tmp_path / "h"), "--name", "-x.safetensors"]) == 0
    assert (tmp_path / "h" / "-x.safetensors").is_file()
