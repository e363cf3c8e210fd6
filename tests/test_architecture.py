"""The structure docs/architecture.md's folder map promises: no import cycles in the three packages, no
command importing another command, no module over about 400 lines. Read from the source
(``tests/helpers/imports.py``), so a function-local import cannot hide a cycle."""
from tests.helpers.imports import commands, cycles, graph, modules

MAX_LINES = 420  # "about 400": a module past this is doing more than one job


def test_the_cycle_finder_finds_a_planted_cycle():
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(g) == [["a", "b", "c"]], cycles(g)


def test_the_graph_sees_function_local_and_relative_imports():
    g = graph()
    assert "timeclr.run" in g["timeclr.train"], g["timeclr.train"]
    assert "timeclr.kernels.nt_xent_triton" in g["timeclr.loss"], "the function-local import in loss.py was missed"


def test_no_import_cycles():
    found = cycles(graph())
    assert not found, f"import cycles: {found}"


def test_no_command_imports_another_command():
    g, cmds = graph(), commands()
    assert {"timeclr.train", "timeclr.evaluate", "timeclr.finetune", "timeclr.data"} <= cmds, cmds
    bad = {c: sorted(g[c] & cmds) for c in cmds if g[c] & cmds}
    assert not bad, f"commands importing commands (move the shared code into the library): {bad}"


def test_no_module_is_over_about_400_lines():
    sizes = {m: len(p.read_text(encoding="utf-8").splitlines()) for m, p in modules().items()}
    big = {m: n for m, n in sizes.items() if n > MAX_LINES}
    assert not big, f"modules over {MAX_LINES} lines: {big}"
