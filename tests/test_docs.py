"""The README and docs/ as a newcomer meets them (issue #26): a README short enough to read, links
that lead somewhere, and commands that the code accepts as shown.

Every command shown in a code span or code block as ``python -m timeclr.X ...`` (or ``torchrun ...
-m timeclr.X ...``) or ``python benchmarks/Y.py ...`` must name a module or script that exists,
and each ``--flag`` / ``-f`` it is shown with must appear in that command's ``--help``. The
``--help`` texts come from one subprocess that runs each distinct command (``timeclr.data SUB``
per subcommand) in turn (``tests/helpers/help_texts.py``), so torch is imported once. ``key=value`` arguments are config overrides, not flags. A benchmark without
argparse ignores ``--help`` and would run, so it is never started: shown with flags it fails,
shown without it is skipped with that reason."""
import os
import re
import subprocess
import sys
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCS = [REPO / "README.md"] + sorted((REPO / "docs").glob("*.md"))
README_MAX_LINES = 300
HELP_TIMEOUT_S = 120

FENCE = re.compile(r"^```[^\n]*\n(.*?)^```[ \t]*$", re.M | re.S)
SPAN = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
COMMAND = re.compile(r"(?:\bpython3? -m |\btorchrun\b[^\n]*?\s-m )(timeclr\.\w+)|\bpython3? (benchmarks/[\w/]+\.py)")
FLAG = re.compile(r"(?<![\w\\-])(--[A-Za-z][\w-]*|-[A-Za-z])(?![\w-])")


def _rel(path: Path) -> str:
    return str(path.relative_to(REPO))


def _split_code(text: str):
    """(prose with code blocks and spans blanked, [code block texts], [code span texts])."""
    blocks = FENCE.findall(text)
    prose = FENCE.sub("", text)
    spans = SPAN.findall(prose)
    return SPAN.sub("", prose), blocks, spans


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`|\*\*|\*|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(path: Path) -> set:
    seen, out = {}, set()
    prose = FENCE.sub("", path.read_text(encoding="utf-8"))
    for heading in re.findall(r"^#{1,6} +(.+?) *#*$", prose, re.M):
        slug = _slug(heading)
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def test_readme_is_short():
    lines = (REPO / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move detail into docs/ (limit {README_MAX_LINES})"


def test_docs_exist():
    assert len(DOCS) > 1, "docs/*.md is missing"


@pytest.mark.parametrize("doc", DOCS, ids=_rel)
def test_relative_links_resolve(doc):
    prose, _, _ = _split_code(doc.read_text(encoding="utf-8"))
    broken = []
    for target in LINK.findall(prose):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        dest = (doc.parent / file_part).resolve() if file_part else doc
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{target}: no heading with anchor #{anchor} in {_rel(dest)}")
    assert not broken, f"{_rel(doc)}: broken links:\n  " + "\n  ".join(broken)


def _code_lines(text: str):
    """Each shell line of the code blocks (continuations joined, comments dropped) and each code span."""
    _, blocks, spans = _split_code(text)
    for block in blocks:
        for line in block.replace("\\\n", " ").split("\n"):
            yield re.sub(r"(^|\s)#.*", "", line)
    yield from spans


def shown_commands() -> dict:
    """{(module or script, subcommand or ''): {"flags": {flag: docs}, "where": docs}} over README and docs."""
    commands = {}
    for doc in DOCS:
        for line in _code_lines(doc.read_text(encoding="utf-8")):
            for m in COMMAND.finditer(line):
                rest = re.split(r" && | ; |; | \| |\|\| ", line[m.end():])[0]
                target = m.group(1) or m.group(2)
                if re.fullmatch(r"(timeclr\.|benchmarks/)[A-Z]+(\.py)?", target):  # a placeholder: timeclr.X
                    continue
                sub = ""
                if target == "timeclr.data":
                    words = rest.split()
                    sub = words[0] if words and not words[0].startswith("-") else ""
                entry = commands.setdefault((target, sub), {"flags": {}, "where": set()})
                for flag in FLAG.findall(rest):
                    entry["flags"].setdefault(flag, set()).add(_rel(doc))
                entry["where"].add(_rel(doc))
    return commands


COMMANDS = shown_commands()


def _argv(key) -> list:
    target, sub = key
    if target.startswith("timeclr."):
        return [sys.executable, "-m", target] + ([sub] if sub else []) + ["--help"]
    return [sys.executable, target, "--help"]


def _uses_argparse(key) -> bool:
    target, _ = key
    path = REPO / target if not target.startswith("timeclr.") else None
    return path is None or "argparse" in path.read_text(encoding="utf-8")


def _exists(key) -> bool:
    target, _ = key
    if target.startswith("timeclr."):
        name = target.split(".", 1)[1]
        return (REPO / "timeclr" / f"{name}.py").is_file() or (REPO / "timeclr" / name / "__init__.py").is_file()
    return (REPO / target).is_file()


@pytest.fixture(scope="module")
def helps():
    """{command: (exit code, --help text)} of every shown command that exists and parses its arguments."""
    keys = [k for k in COMMANDS if _exists(k) and _uses_argparse(k)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    script = REPO / "tests" / "helpers" / "help_texts.py"
    argvs = json.dumps([_argv(k)[1:] for k in keys])
    try:
        r = subprocess.run([sys.executable, str(script), argvs], cwd=REPO, env=env, capture_output=True,
                           text=True, timeout=HELP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the --help runs did not finish within {HELP_TIMEOUT_S} s")
    assert r.returncode == 0, f"tests/helpers/help_texts.py failed:\n{r.stderr[-3000:]}"
    return dict(zip(keys, map(tuple, json.loads(r.stdout))))


def test_some_commands_are_shown():
    assert ("timeclr.train", "") in COMMANDS and any(t.startswith("benchmarks/") for t, _ in COMMANDS)


@pytest.mark.parametrize("key", sorted(COMMANDS), ids=lambda k: " ".join(filter(None, k)))
def test_shown_command_accepts_its_flags(key, helps):
    target, sub = key
    shown = COMMANDS[key]
    where = ", ".join(sorted(shown["where"]))
    assert _exists(key), f"{where} shows {target}, which does not exist"
    if not _uses_argparse(key):
        assert not shown["flags"], (f"{where} shows {target} with {sorted(shown['flags'])}, but it does not use "
                                    "argparse: it ignores its arguments")
        pytest.skip(f"{target} takes no flags (no argparse; --help would run it), and none are shown")
    rc, text = helps[key]
    assert rc == 0, f"{' '.join(_argv(key)[1:])} failed (rc {rc}):\n{text[-2000:]}"
    unknown = [f"{f} (in {', '.join(sorted(docs))})" for f, docs in sorted(shown["flags"].items())
               if not re.search(rf"(?<![\w-]){re.escape(f)}(?![\w-])", text)]
    assert not unknown, f"{' '.join(filter(None, key))} is shown with flags its --help does not list: {unknown}"
