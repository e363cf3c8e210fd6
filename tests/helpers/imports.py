"""The import graph of the three packages (timeclr/, kernels/, pipelines/), read from the source
with ``ast``, every import counted, function-local ones too (they hide cycles, not remove them).

    python tests/helpers/imports.py      # prints each module's imports, its size, and any cycle
"""
import ast
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = {"timeclr": "timeclr", "kernels": "timeclr.kernels", "pipelines": "timeclr.pipelines"}


def modules() -> dict:
    """{module name: path} of every .py file of the three packages."""
    out = {}
    for folder, package in PACKAGES.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            parts = path.relative_to(REPO / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join((package, *parts))] = path
    return out


def _resolve(name: str, known) -> str | None:
    """The known module that ``name`` is or lies in (``timeclr.training.run.train_step`` -> ``timeclr.training.run``)."""
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str, path: Path, known) -> set:
    """The known modules that ``module`` imports anywhere in its file."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # from .x import y / from . import y
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for name in names:
            target = _resolve(name, known)
            if target and target != module:
                found.add(target)
    return found


def graph() -> dict:
    """{module: set of the package modules it imports}."""
    known = modules()
    return {m: imports_of(m, p, known) for m, p in known.items()}


def cycles(g: dict) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan): each is a cycle."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(g.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            scc = []
            while True:
                w = stack.pop()
                on.discard(w)
                scc.append(w)
                if w == v:
                    break
            if len(scc) > 1:
                out.append(sorted(scc))

    sys.setrecursionlimit(10_000)
    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def commands() -> set:
    """Modules a user runs with ``python -m``: those with an ``if __name__ == "__main__"`` block."""
    return {m for m, p in modules().items() if '__name__ == "__main__"' in p.read_text(encoding="utf-8")}


def main():
    g, known = graph(), modules()
    for m in sorted(g):
        lines = len(known[m].read_text(encoding="utf-8").splitlines())
        print(f"{m:<34} {lines:>4} lines  -> {', '.join(sorted(g[m])) or '-'}")
    found = cycles(g)
    print("cycles:", found or "none")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
