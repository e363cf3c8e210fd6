"""benchmarks/results/ as a reader finds it (issue #26, item 4): every committed CSV is a plain
CSV, the header on its first line and no '#' lines, that ``csv.DictReader`` and ``pandas.read_csv``
read as is, with the run's metadata in a JSON sidecar of the same name; and a ``--quick`` run
writes where git does not look."""
import csv
import json
import subprocess
from pathlib import Path

import pytest

from timeclr.benchmarks import harness

RESULTS = harness.RESULTS
CSVS = sorted(RESULTS.glob("*.csv"))


def test_there_are_results():
    assert len(CSVS) > 10, CSVS


@pytest.mark.parametrize("path", CSVS, ids=lambda p: p.name)
def test_a_results_csv_is_plain_and_has_its_metadata_beside_it(path):
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    assert not [n for n, line in enumerate(lines, 1) if line.startswith("#")], f"{path.name} has '#' lines"
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    header = reader.fieldnames
    assert header and len(set(header)) == len(header), f"{path.name}: header {header}"
    assert rows, f"{path.name} has no rows"
    assert all(None not in r and None not in r.values() for r in rows), f"{path.name}: a row of another width"
    pandas = pytest.importorskip("pandas")
    frame = pandas.read_csv(path)
    assert list(frame.columns) == header and len(frame) == len(rows)
    sidecar = path.with_suffix(".json")
    assert sidecar.exists(), f"{path.name} has no {sidecar.name}"
    meta = json.loads(sidecar.read_text(encoding="utf-8"))["meta"]
    assert isinstance(meta, dict) and "command" in meta, f"{sidecar.name}: meta {meta}"


def test_write_results_writes_a_plain_csv_and_its_sidecar(tmp_path):
    meta = {"device": "test CPU", "git": "abc1234", "command": "python benchmarks/x.py --quick"}
    rows = [{"name": "a", "ms": 1.23456789, "n": 3}, {"name": "b, quoted", "ms": None}]
    csv_path, json_path = harness.write_results(tmp_path / "x", meta, ["name", "ms", "n"], rows,
                                                sidecar={"summary": {"best": "a"}})
    assert csv_path.read_text().splitlines()[0] == "name,ms,n"
    got_meta, got_rows = harness.read_results(tmp_path / "x")
    assert got_meta == meta
    assert got_rows == [{"name": "a", "ms": "1.23457", "n": "3"}, {"name": "b, quoted", "ms": "", "n": ""}]
    assert json.loads(json_path.read_text()) == {"meta": meta, "summary": {"best": "a"}}


def _ignored(path: Path) -> bool:
    return subprocess.run(["git", "check-ignore", "-q", str(path)], cwd=harness.REPO).returncode == 0


def test_quick_runs_write_where_git_does_not_look():
    if subprocess.run(["git", "rev-parse"], cwd=harness.REPO, capture_output=True).returncode != 0:
        pytest.skip("not a git checkout")
    quick, full = harness.results_dir(quick=True), harness.results_dir()
    assert quick == harness.RESULTS / "quick" and full == harness.RESULTS
    for name in ("loss_kernel_cpu_quick.csv", "loss_kernel_cpu_quick.json", "data_pipeline_cpu_quick.png"):
        assert _ignored(quick / name), f"{quick / name} is not git-ignored: a smoke run would dirty the checkout"
    assert not _ignored(full / "loss_kernel_cpu.csv"), "full runs' results must stay tracked"
    tracked = subprocess.run(["git", "ls-files", "benchmarks/results"], cwd=harness.REPO, capture_output=True,
                             text=True).stdout.split()
    assert not [p for p in tracked if "quick" in Path(p).name or "/quick/" in p], tracked


def test_an_explicit_out_folder_wins(tmp_path):
    assert harness.results_dir(tmp_path / "o", quick=True) == tmp_path / "o" and (tmp_path / "o").is_dir()
