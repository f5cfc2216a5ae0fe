"""Docstrings and comments point at things that exist: every backticked dotted name of this project
(`models.dqn.policy`, `recdata.metrics.top_k`) imports or resolves, and every Markdown file cited is in
the repository. A reference that rots misleads the reader who follows it."""
import ast
import importlib
import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("reccore", "recdata", "models", "envs", "trainers", "serve_app", "bench")
SOURCES = sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))
DOTTED = re.compile(r"`((?:%s)(?:\.\w+)+)" % "|".join(PACKAGES))
MARKDOWN = re.compile(r"\b([\w./-]+\.md)\b")


def _resolves(name: str) -> bool:
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):  # the longest importable prefix, then attributes
        module = ".".join(parts[:cut])
        try:
            if importlib.util.find_spec(module) is None:
                continue
        except ModuleNotFoundError:
            continue
        obj = importlib.import_module(module) if cut < len(parts) else None
        for attr in parts[cut:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def _texts(path: Path) -> str:
    """Docstrings and comments of a module (where references live), not its code."""
    source = path.read_text()
    docs = [ast.get_docstring(n) or "" for n in ast.walk(ast.parse(source))
            if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))]
    comments = [line.split("#", 1)[1] for line in source.splitlines() if "#" in line]
    return "\n".join(docs + comments)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_references_resolve(path):
    text = _texts(path)
    broken = [n for n in DOTTED.findall(text) if not _resolves(n.rstrip("."))]
    missing = [m for m in MARKDOWN.findall(text) if not (ROOT / m).exists() and not (path.parent / m).exists()]
    assert not broken and not missing, f"dangling references: {broken + missing}"


def test_logging_policy_returns_what_it_says():
    from typing import get_type_hints

    from envs.shopping import logging_policy

    hint = get_type_hints(logging_policy)["return"]
    assert hint == tuple[np.ndarray, np.ndarray]
