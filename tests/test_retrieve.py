"""python -m timeclr.retrieve: nearest videos per encoder, their class agreement and contact
sheets. References: a float64 brute-force ranking, agreement counted by hand on a planted set."""
import json
import shutil

import numpy as np
import pandas as pd
import pytest

from timeclr.embed import main as embed_main
from timeclr.retrieve import agreement, main as retrieve_main, neighbours
from tests.helpers.runs import moving_bars_manifest

SMALL = ["model.backbone=small", "model.proj_hidden=32", "model.proj_dim=16", "data.short_side=40",
         "data.views.0.crop_size=32", "data.views.1.crop_size=32"]


@pytest.mark.parametrize("block_rows", [None, 7])  # one block; queries in blocks of 7 (30 = 4 x 7 + 2)
def test_neighbours_are_the_cosine_ranking_without_the_query(block_rows):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 7)).astype(np.float32)
    idx, sim = neighbours(x, 4, block_rows)
    z = x.astype(np.float64) / np.linalg.norm(x.astype(np.float64), axis=1, keepdims=True)
    for q in range(30):
        others = [(float(z[q] @ z[j]), j) for j in range(30) if j != q]
        want = sorted(others, reverse=True)[:4]
        assert list(idx[q]) == [j for _, j in want], (q, idx[q], want)
        np.testing.assert_allclose(sim[q], [s for s, _ in want], rtol=1e-5)


def test_agreement_counts_same_class_neighbours_and_chance_follows_the_class_sizes():
    classes = ["a", "a", "a", "b"]
    idx = np.array([[1, 3], [0, 2], [3, 0], [0, 1]])
    same, chance = agreement(classes, idx)
    assert same == pytest.approx((1 + 2 + 1 + 0) / 8)
    assert chance == pytest.approx((3 * (2 / 3) + 0) / 4)  # a: 2 of the 3 others; b: none


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    root = tmp_path_factory.mktemp("ret")
    manifest = moving_bars_manifest(root / "bars")
    for name, seed in (("one", 0), ("two", 1)):
        assert embed_main(["pipelines/debug.yaml", "checkpoint=random", f"train.seed={seed}", *SMALL, manifest,
                           "-o", str(root / name)]) == 0
    return root


def test_two_encoders_side_by_side_write_csv_json_and_sheets(tmp_path, embedded):
    out = tmp_path / "ret"
    assert retrieve_main([str(embedded / "one"), str(embedded / "two"), "-k", "3", "--queries", "2", "-o", str(out)]) == 0
    table = pd.read_csv(out / "neighbours.csv")
    assert len(table) == 2 * 8 * 3 and set(table["rank"]) == {1, 2, 3}, table
    assert (table["query"] != table["neighbour"]).all()
    for name, rows in table.groupby("encoder"):
        assert name in ("random init (one)", "random init (two)"), name
        feats = np.load(embedded / name[len("random init ("):-1] / "features.npy")
        idx, _ = neighbours(feats, 3)
        paths = list(pd.read_csv(embedded / "one" / "videos.csv").path)
        got = rows.sort_values(["query", "rank"]).groupby("query").neighbour.apply(list).to_dict()
        assert got == {paths[q]: [paths[j] for j in idx[q]] for q in range(8)}, name
        classes = list(pd.read_csv(embedded / "one" / "videos.csv").class_name)
        same = (rows.same_class == 1).mean()
        assert same == pytest.approx(agreement(classes, idx)[0]), name
    summary = json.loads((out / "retrieval.json").read_text())
    assert summary["k"] == 3 and len(summary["encoders"]) == 2, summary
    assert all(0 <= e["agreement_at_k"] <= 1 and e["chance"] == pytest.approx(3 / 7) for e in summary["encoders"].values())
    sheets = sorted(p.name for p in out.glob("query_*.png"))
    assert sheets == ["query_000.png", "query_001.png"], sheets
    assert all((out / s).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for s in sheets)


def test_bad_input_is_one_line(tmp_path, embedded):
    other = tmp_path / "other"
    shutil.copytree(embedded / "two", other)
    videos = pd.read_csv(other / "videos.csv")
    videos.iloc[::-1].to_csv(other / "videos.csv", index=False)
    cases = [([str(embedded / "one"), str(other)], "embeds other videos than"),
             ([str(embedded / "one"), "-k", "8"], "-k 8: the embedding has 8 videos, so at most 7"),
             ([str(tmp_path)], "not an output of python -m timeclr.embed (no features.npy, videos.csv, embed.json)")]
    for args, message in cases:
        with pytest.raises(SystemExit) as e:
            retrieve_main([*args, "-o", str(tmp_path / "out")])
        assert message in str(e.value.code) and str(e.value.code).startswith("timeclr.retrieve: "), (args, e.value.code)
