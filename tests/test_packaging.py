"""Installation-level behaviour: clip-anytorch imports without pkg_resources; the public surface."""

from __future__ import annotations

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
        from fpp_init.backbones.clip import ClipTokenizer, import_clip
        clip = import_clip()
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


def test_public_api_resolves_and_is_typed():
    """Every public name loads (the lazy imports work) and every public function is fully annotated."""
    import inspect

    assert (Path(fpp_init.__file__).parent / "py.typed").is_file()
    for name in fpp_init.__all__:
        obj = getattr(fpp_init, name)  # imports the defining module
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
