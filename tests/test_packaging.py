"""Installation-level behaviour: clip-anytorch imports without pkg_resources; the public surface."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import fpp_init

BLOCK_PKG_RESOURCES = textwrap.dedent(
    """
    import importlib.abc, sys

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "pkg_resources" or name.startswith("pkg_resources."):
                raise ModuleNotFoundError("No module named 'pkg_resources'", name=name)
            return None

    sys.modules.pop("pkg_resources", None)
    sys.meta_path.insert(0, Block())
    """
)


@pytest.mark.parametrize(
    "setup",
    [BLOCK_PKG_RESOURCES, "import sys; sys.modules['pkg_resources'] = None"],
    ids=["setuptools-absent", "pkg_resources-masked"],
)
def test_clip_imports_without_pkg_resources(setup):
    code = setup + textwrap.dedent(
        """
        try:
            import pkg_resources
            raise SystemExit("precondition failed: pkg_resources importable")
        except ImportError:
            pass
        import fpp_init
        from fpp_init.models.clip import ClipTokenizer
        clip = fpp_init.import_clip()  # the public, documented way
        assert clip.tokenize(["a photo of a dog."]).shape == (1, 77)
        assert len(ClipTokenizer().encode("a photo of a")) == 4
        # the stand-in is gone again: nobody else sees a fake pkg_resources
        assert getattr(sys.modules.get("pkg_resources"), "__fpp_init_shim__", False) is False
        print("OK")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("OK")


def test_import_does_not_import_clip():
    code = "import sys, fpp_init; print('clip' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


#: the public modules: their ``__all__`` is the public surface, each name on the API reference pages
PUBLIC_MODULES = (
    "fpp_init",
    "fpp_init.errors",
    "fpp_init.metrics",
    "fpp_init.artifacts",
    "fpp_init.adapters",
    "fpp_init.models",
    "fpp_init.towers",
)
REFERENCE = Path(__file__).resolve().parents[1] / "docs" / "reference"


def _documented() -> set[str]:
    """Every ``::: dotted.name`` of the API reference pages (what mkdocstrings renders)."""
    names = set()
    for page in REFERENCE.glob("*.md"):
        names.update(m.group(1) for m in re.finditer(r"^::: ([\w.]+)\s*$", page.read_text(), re.M))
    return names


def test_public_equals_documented_equals_exported() -> None:
    documented = _documented()
    for module in PUBLIC_MODULES:
        mod = importlib.import_module(module)
        exported = set(mod.__all__)
        if module == "fpp_init":  # the version, and the public modules with pages of their own
            exported -= {"__version__", "errors", "metrics"}
        here = {d.rsplit(".", 1)[1] for d in documented if d.rsplit(".", 1)[0] == module}
        assert here == exported, (module, "documented only:", here - exported, "exported only:", exported - here)
        assert len(mod.__all__) == len(set(mod.__all__)), module
    assert {d.rsplit(".", 1)[0] for d in documented} <= set(PUBLIC_MODULES)
    import fpp_init.api

    assert set(fpp_init.api.__all__) <= set(fpp_init.__all__)  # the front doors are reached from the top
    errors_at_top = [n for n in fpp_init.__all__ if n.endswith(("Error", "Warning"))]
    assert errors_at_top == ["FPPError", "FPPWarning"]  # the subclasses live in fpp_init.errors


def test_public_api_resolves_and_is_typed():
    import inspect

    assert (Path(fpp_init.__file__).parent / "py.typed").is_file()
    for module in PUBLIC_MODULES:
        mod = importlib.import_module(module)
        for name in mod.__all__:
            obj = getattr(mod, name)  # imports the defining module
            if inspect.isfunction(obj):
                sig = inspect.signature(obj)
                missing = [p for p, v in sig.parameters.items() if v.annotation is inspect.Parameter.empty]
                assert not missing and sig.return_annotation is not inspect.Signature.empty, (name, missing)
    assert set(dir(fpp_init)) >= set(fpp_init.__all__)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        fpp_init.nope  # noqa: B018


def test_cli_help_does_not_import_torch():
    code = "import sys; from fpp_init.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_public_clip_helpers_where_import_clip_fails(tmp_path: Path) -> None:
    """A fresh environment (setuptools >= 82): ``import clip`` fails; ``fpp_init.import_clip()`` and
    ``fpp_init.load_clip()`` work, and ``import clip`` works after them."""
    import torch
    from helpers import build_tiny_clip

    weights = tmp_path / "tiny.pt"
    torch.save(build_tiny_clip(64, layers=1).state_dict(), weights)
    code = BLOCK_PKG_RESOURCES + textwrap.dedent(
        f"""
        try:
            import clip
            raise SystemExit("precondition failed: import clip worked without pkg_resources")
        except ModuleNotFoundError as exc:
            assert exc.name == "pkg_resources", exc
        for name in [m for m in sys.modules if m == "clip" or m.startswith("clip.")]:
            del sys.modules[name]  # the half-imported package
        import torch, fpp_init
        clip = fpp_init.import_clip()
        import clip as again
        assert again is clip and again.tokenize(["a dog."]).shape == (1, 77)
        rng = torch.get_rng_state()
        model, preprocess = fpp_init.load_clip({str(weights)!r}, device="cpu")
        assert torch.equal(torch.get_rng_state(), rng) and not model.training
        assert isinstance(model, clip.model.CLIP) and callable(preprocess)
        reference, _ = clip.load({str(weights)!r}, device="cpu", jit=False)
        tokens = clip.tokenize(["a photo of a dog."])
        with torch.no_grad():
            assert torch.equal(model.encode_text(tokens), reference.encode_text(tokens))
        try:
            fpp_init.load_clip({str(tmp_path / "absent.pt")!r})
        except fpp_init.errors.ModelLoadError as exc:
            assert "CLIP checkpoint not found" in str(exc)
        else:
            raise SystemExit("a missing checkpoint was not refused")
        print("OK")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("OK")


def test_examples_fix_the_vendored_pkg_resources_import(tmp_path: Path) -> None:
    """Each examples/<repo>/README.md gives a one-line sed for its vendored clip/clip.py; applied to the
    statements those files hold, the module imports without pkg_resources and its version check runs."""
    import shutil

    root = Path(__file__).resolve().parents[1] / "examples"
    readmes = sorted(root.glob("*/README.md"))
    assert len(readmes) >= 10
    fixed = []
    for readme in readmes:
        text = readme.read_text()
        assert "python -m pip install /path/to/fpp-init -c keep.txt" in text, readme  # keeps the env's torch
        found = re.findall(
            r"^sed -i '(s/\^from pkg_resources import packaging\$/import packaging\.version/)' (\S+)$", text, re.M
        )
        if readme.parent.name in {"promptalign", "tapt", "mariodoebler"}:  # no vendored pkg_resources import
            assert not found and "needs no change" in text, readme
            continue
        [(script, target)] = found
        repo = tmp_path / readme.parent.name
        (repo / target).parent.mkdir(parents=True)
        (repo / target).write_text(
            "import torch\nfrom pkg_resources import packaging\n\n"
            'if packaging.version.parse(torch.__version__) < packaging.version.parse("1.7.1"):\n'
            '    raise SystemExit("old torch")\nOK = True\n'
        )
        assert shutil.which("sed") is not None
        subprocess.run(["sed", "-i", script, target], cwd=repo, check=True)
        fixed.append(str(repo / target))
    code = BLOCK_PKG_RESOURCES + f"import runpy\nfor f in {fixed!r}:\n    assert runpy.run_path(f)['OK']\nprint('OK')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "OK", out.stderr


def test_quick_subset_is_registered_and_documented() -> None:
    """`-m "not slow"` is a documented quick run (for contributors); the README's (and CI's) test command
    stays the full suite."""
    root = Path(__file__).resolve().parents[1]
    pyproject = (root / "pyproject.toml").read_text()
    assert re.search(r'markers = \[\s*"slow: ', pyproject)
    for doc in ("CONTRIBUTING.md", "docs/getting-started.md"):
        assert 'python -m pytest -m "not slow"' in (root / doc).read_text(), doc
    assert 'python -m pip install -e ".[test]" && python -m pytest\n' in (root / "README.md").read_text()
    assert 'python -m pip install -e ".[test]" && python -m pytest\n' in (root / ".ci" / "run").read_text()
    for name in ("test_distributed.py", "test_adapters.py", "test_adapters_more.py", "test_docs.py"):
        assert "pytestmark = pytest.mark.slow" in (root / "tests" / name).read_text(), name
