"""benchmarks/ as a package (issue #26, item 4): installed as ``timeclr.benchmarks`` like
``kernels/`` and ``pipelines/``, the scripts import each other and their harness by that name
(no bare-name imports that only work from the script's folder), no test or script edits
``sys.path``, and no module is over about 400 lines (a longer one does more than one job)."""
import ast
import re
import subprocess
import sys

from tests.helpers.imports import REPO

BENCHMARKS = REPO / "benchmarks"
MODULES = sorted(p for p in BENCHMARKS.rglob("*.py") if "results" not in p.parts)
MAX_LINES = 420  # as tests/test_architecture.py
SYS_PATH_EDIT = re.compile(r"sys\.path\.(insert|append|extend)\(|sys\.path\s*\+?=|sys\.path\[[^\]]*\]\s*=")


def _module(path) -> str:
    parts = path.relative_to(BENCHMARKS).with_suffix("").parts
    return ".".join(("timeclr.benchmarks", *(parts[:-1] if parts[-1] == "__init__" else parts)))


def test_no_sys_path_edits_in_benchmarks_or_tests():
    found = [f"{p.relative_to(REPO)}:{n}" for p in MODULES + sorted((REPO / "tests").rglob("*.py"))
             for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if SYS_PATH_EDIT.search(line)]
    assert not found, f"sys.path edited at {found}: import timeclr.benchmarks.X instead"


def test_benchmarks_import_each_other_by_package_name():
    siblings = {p.stem for p in MODULES} | {"runinfo", "experiments"}
    bare = []
    for path in MODULES:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            bare += [f"{path.relative_to(REPO)}: import {n}" for n in names if n.split(".")[0] in siblings]
    assert not bare, f"bare-name imports of benchmarks (use timeclr.benchmarks.X): {bare}"


def test_no_benchmark_module_is_over_about_400_lines():
    sizes = {str(p.relative_to(REPO)): len(p.read_text(encoding="utf-8").splitlines()) for p in MODULES}
    big = {m: n for m, n in sizes.items() if n > MAX_LINES}
    assert not big, f"benchmark modules over {MAX_LINES} lines: {big}"


def test_every_benchmark_module_imports_under_its_package_name():
    """In one fresh process (the imports pull in torch, DALI, PyAV): nothing broken by a move."""
    names = [_module(p) for p in MODULES]
    code = "import importlib, sys\nfor n in sys.argv[1:]:\n    importlib.import_module(n)\nprint('ok')"
    out = subprocess.run([sys.executable, "-c", code, *names], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-3000:]
