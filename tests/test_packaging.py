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
        from fpp_init._clip import import_clip, tokenizer
        clip = import_clip()
        assert clip.tokenize(["a photo of a dog."]).shape == (1, 77)
        assert len(tokenizer().encode("a photo of a")) == 4
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


def test_public_api_is_explicit_and_typed():
    assert fpp_init.__all__ == sorted(set(fpp_init.__all__), key=fpp_init.__all__.index)
    for name in fpp_init.__all__:
        assert hasattr(fpp_init, name), name
    assert (Path(fpp_init.__file__).parent / "py.typed").is_file()
    for name in ("pretrain_flat_prompt", "load_fpp_prompt", "save_fpp_prompt", "FPPPrompt", "FPPConfig", "FPPError"):
        assert name in fpp_init.__all__
