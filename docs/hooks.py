"""MkDocs hooks: pages and tables generated from the one place each fact is defined.

- ``<!-- fields: MODULE.CLASS -->`` becomes the table of a config dataclass's fields (name, CLI flag,
  default, help), read from the fields' metadata, as the CLI builds its flags.
- ``<!-- layers -->`` becomes the layer diagram that ``tests/test_layers.py`` enforces.
- ``codebases/<name>.md`` is generated for every ``examples/<name>/README.md``, with the folder's
  diffs shown on the page, and listed in the navigation under the integration guide.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

from fpp_init.config import field_flag

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
INTEGRATION_PAGE = "integration.md"


# -- codebase pages ------------------------------------------------------------------------------
def _codebases() -> list[Path]:
    return sorted(p.parent for p in EXAMPLES.glob("*/README.md"))


def _title(readme: Path) -> str:
    first = readme.read_text(encoding="utf-8").splitlines()[0]
    return first.lstrip("# ").strip()


def on_config(config: Any) -> Any:
    nav = config["nav"]
    pages = [{_title(d / "README.md"): f"codebases/{d.name}.md"} for d in _codebases()]
    for section in nav:
        for entries in section.values() if isinstance(section, dict) else ():
            if not isinstance(entries, list):
                continue
            for i, entry in enumerate(entries):
                if isinstance(entry, dict) and INTEGRATION_PAGE in entry.values():
                    (title,) = entry
                    entries[i] = {title: [INTEGRATION_PAGE, *pages]}
                    return config
    raise RuntimeError(f"docs/hooks.py: {INTEGRATION_PAGE} is not in the nav of mkdocs.yml")


def _codebase_page(folder: Path) -> str:
    text = (folder / "README.md").read_text(encoding="utf-8")
    diffs = sorted(p.name for p in folder.glob("*.diff"))

    def link(match: re.Match[str]) -> str:
        label, target = match.group(1), match.group(2)
        name = target.rstrip("/")
        if name in diffs:
            return f"[{label}](#{_anchor(name)})"
        if name.startswith("../"):
            other, _, file = name[3:].partition("/")
            if (EXAMPLES / other / "README.md").is_file() and (not file or (EXAMPLES / other / file).is_file()):
                return f"[{label}]({other}.md{'#' + _anchor(file) if file else ''})"
        return match.group(0)

    text = re.sub(r"\[([^\]]+)\]\(([^)#\s]+)\)", link, text)
    parts = [text.rstrip(), ""]
    for name in diffs:
        parts += [f"## `{name}` {{#{_anchor(name)}}}", "", "```diff", (folder / name).read_text().rstrip(), "```", ""]
    return "\n".join(parts)


def _anchor(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def on_files(files: Files, config: Any) -> Files:
    for folder in _codebases():
        files.append(File.generated(config, f"codebases/{folder.name}.md", content=_codebase_page(folder)))
    return files


# -- tables from definitions ----------------------------------------------------------------------
def _fields_table(path: str) -> str:
    """The table of a config dataclass: each row from the field's one definition, the flag named as the
    CLI names it (``fpp_init.config.field_flag``)."""
    module, _, name = path.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    rows = ["| field | CLI flag | default | what it does |", "|---|---|---|---|"]
    for f in dataclasses.fields(cls):
        meta = f.metadata
        flag = field_flag(f)
        default = meta.get("default_text") or f"`{f.default!r}`"
        text = meta["help"] + (f" (the flag: {meta['negative']})" if "negative" in meta else "")
        cell = text.replace("|", "\\|")
        rows.append(f"| `{f.name}` | {f'`{flag}`' if flag else '—'} | {default} | {cell} |")
    return "\n".join(rows)


def _layers() -> str:
    """The layer diagram, from ``tests/test_layers.py``'s ``ARCHITECTURE`` (the list that test enforces)."""
    spec = importlib.util.spec_from_file_location("_test_layers", ROOT / "tests" / "test_layers.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    by_level: dict[int, list[tuple[str, str]]] = {}
    for unit, (level, what) in mod.ARCHITECTURE.items():
        by_level.setdefault(level, []).append((unit, what))
    rows = ["| layer | module | what it holds |", "|---|---|---|"]
    for level in sorted(by_level, reverse=True):
        for unit, what in by_level[level]:
            apart = " (knows nothing of the other two in its layer)" if unit in mod.SIBLINGS_APART else ""
            rows.append(f"| {level} | `{unit}` | {what}{apart} |")
    return "\n".join(rows)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    markdown = re.sub(r"<!-- fields: ([\w.]+) -->", lambda m: _fields_table(m.group(1)), markdown)
    return markdown.replace("<!-- layers -->", _layers()) if "<!-- layers -->" in markdown else markdown
