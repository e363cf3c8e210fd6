"""The structure docs/architecture.md's folder map promises, read from the source
(``tests/helpers/imports.py``, so a function-local import cannot hide an arrow):

- no import cycles in the three packages, no command importing another command, and the library
  importing no command;
- the data flows one way through ``pipelines/``: ingest -> storage <- loader;
- one job per module: each says its job in its docstring's first line; one under 40 lines is a
  command (``python -m`` names it) or has a reason to stand alone (below), and one past 500 lines a reason it is still one job, else it is
  split by job (a warning from 450 lines, before it gets there).
"""
import warnings

from tests.helpers.imports import commands, cycles, graph, modules

# Modules under 40 lines that stand alone, and why (each is imported by several others, so merging
# it into one of them would make the rest import that one for a detail).
SMALL = {
    "timeclr.errors": "the leaf every layer imports its errors from; importing nothing of ours keeps it a leaf",
    "timeclr.pipelines.storage.lru": "the one memo both the GOP index and the frame archives use",
    "timeclr.pipelines.storage.index_pattern": "the test pattern the tests, the GPU decode probe and "
                                                "the content check share; no product code needs it",
}
# Modules past 500 lines that are still one job, and why: none so far.
LONG = {}
SMALL_LINES, WARN_LINES, LONG_LINES = 40, 450, 500


def test_the_cycle_finder_finds_a_planted_cycle():
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(g) == [["a", "b", "c"]], cycles(g)


def test_the_graph_sees_function_local_and_relative_imports():
    g = graph()
    assert "timeclr.training.run" in g["timeclr.train"], g["timeclr.train"]
    assert "timeclr.kernels.nt_xent_triton" in g["timeclr.loss"], "the function-local import in loss.py was missed"


def test_no_import_cycles():
    found = cycles(graph())
    assert not found, f"import cycles: {found}"


def test_no_command_imports_another_command():
    g, cmds = graph(), commands()
    assert {"timeclr.train", "timeclr.evaluate", "timeclr.finetune", "timeclr.data"} <= cmds, cmds
    bad = {c: sorted(g[c] & cmds) for c in cmds if g[c] & cmds}
    assert not bad, f"commands importing commands (move the shared code into the library): {bad}"


def _sizes() -> dict:
    return {m: len(p.read_text(encoding="utf-8").splitlines()) for m, p in modules().items()}


def test_the_library_imports_no_command():
    g, cmds = graph(), commands()
    bad = {m: sorted(g[m] & cmds) for m in g if m not in cmds and g[m] & cmds}
    assert not bad, f"library modules importing commands (a command is the top of the graph): {bad}"


def test_the_pipelines_flow_one_way():
    """ingest (a download -> a manifest) and loader (a manifest -> batches) both build on storage
    (the files on disk); storage knows neither, and neither knows the other."""
    banned = {"storage": ("ingest", "loader"), "loader": ("ingest",), "ingest": ("loader",)}
    bad = []
    for m, targets in graph().items():
        part = m.split(".")[2] if m.startswith("timeclr.pipelines.") and m.count(".") >= 3 else None
        for t in targets:
            for b in banned.get(part, ()):
                if t.startswith(f"timeclr.pipelines.{b}"):
                    bad.append(f"{m} -> {t}")
    assert not bad, f"imports against the data flow ingest -> storage <- loader: {bad}"


def test_every_module_says_its_job():
    import ast

    silent = [m for m, p in modules().items()
              if not (ast.get_docstring(ast.parse(p.read_text(encoding="utf-8"))) or "").strip()]
    assert not silent, f"modules with no docstring saying their job: {silent}"


def test_a_small_module_has_a_reason_to_stand_alone():
    sizes, cmds = _sizes(), commands()  # a command is its own module: python -m names it
    small = {m: n for m, n in sizes.items()
             if n < SMALL_LINES and not modules()[m].name == "__init__.py" and m not in SMALL and m not in cmds}
    assert not small, f"modules under {SMALL_LINES} lines: merge each into its caller or give it a reason in SMALL: {small}"
    gone = sorted(set(SMALL) - {m for m, n in sizes.items() if n < SMALL_LINES})
    assert not gone, f"SMALL lists modules that are gone or no longer small: {gone}"


def test_a_long_module_is_still_one_job():
    sizes = _sizes()
    for m, n in sorted(sizes.items()):
        if WARN_LINES < n <= LONG_LINES:
            warnings.warn(f"{m} is {n} lines: past {LONG_LINES} it needs a reason in LONG or a split by job")
    long = {m: n for m, n in sizes.items() if n > LONG_LINES and m not in LONG}
    assert not long, f"modules over {LONG_LINES} lines: split each by job, or say in LONG why it is one: {long}"
