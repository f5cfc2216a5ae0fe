"""The layering of DESIGN.md, checked: the import-linter contract (.importlinter), tests that do not
lean on benchmarks, package __init__ files without side effects, and files small enough to read."""
import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("reccore", "recdata", "models", "envs", "trainers", "serve_app", "bench")
MAX_LINES = 400  # per file, in the layers a newcomer reads first
SIZED = ("recdata", "models", "serve_app", "trainers")


def _lint_imports() -> Path:
    exe = Path(sys.executable).with_name("lint-imports")
    if not exe.exists():
        pytest.fail("import-linter is not installed: pip install -e '.[test]'")
    return exe


def test_layers_contract_is_kept():
    out = subprocess.run([str(_lint_imports()), "--config", str(ROOT / ".importlinter")], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def _imported_modules(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def test_tests_do_not_import_benchmarks():
    offenders = [f"{p.relative_to(ROOT)} imports {m}" for p in sorted((ROOT / "tests").rglob("*.py"))
                 for m in _imported_modules(p) if m == "bench" or m.startswith("bench.")]
    assert not offenders, "move what the test needs out of bench/ (benchmarks sit on top of every layer): " + \
        "; ".join(offenders)


def test_simulator_tests_need_no_shared_data():
    """The env and DQN tests run on the embedded synthetic generator: a skip on missing ../shared data
    would silently hide them wherever that data is absent."""
    paths = [*sorted((ROOT / "tests" / "envs").glob("test_*.py")), ROOT / "tests" / "trainers" / "test_train_dqn.py"]
    skipping = [str(p.relative_to(ROOT)) for p in paths
                if re.search(r"skipif|pytest\.skip\(|shared_data\(|\"shared\"", p.read_text())]
    assert not skipping, f"feed these from recdata.synthetic instead of skipping without ../shared: {skipping}"


def _side_effects(path: Path, root: Path = ROOT) -> list[str]:
    """Top-level statements of an __init__ other than a docstring, imports, __all__ and definitions."""
    out = []
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef)):
            continue
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            continue
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and [getattr(t, "id", None) for t in (
                node.targets if isinstance(node, ast.Assign) else [node.target])] == ["__all__"]:
            continue
        out.append(f"{path.relative_to(root)}:{node.lineno} {ast.unparse(node)[:60]}")
    return out


def test_package_inits_have_no_side_effects():
    inits = [p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("__init__.py"))]
    assert inits
    found = [s for p in inits for s in _side_effects(p)]
    assert not found, "an __init__ must only define and import (call registrations explicitly): " + "; ".join(found)


def test_side_effect_check_sees_a_call(tmp_path):
    init = tmp_path / "__init__.py"
    init.write_text('"""doc"""\nfrom x import register\n__all__ = ["register"]\nregister()\n')
    assert [s.split(" ", 1)[1] for s in _side_effects(init, tmp_path)] == ["register()"]


def test_no_file_over_the_size_limit():
    big = [f"{p.relative_to(ROOT)} ({n} lines)" for pkg in SIZED for p in sorted((ROOT / pkg).rglob("*.py"))
           if (n := len(p.read_text().splitlines())) > MAX_LINES]
    assert not big, f"split these along their own seams (at most {MAX_LINES} lines): " + ", ".join(big)
