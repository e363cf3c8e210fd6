"""eval.per_view: each view's clip scored alone and all of them side by side, from one pass of the
pipeline. Reference: the evaluation of each view on its own (``eval.view=i``, its own pass), and
the concatenation of those features, scored by the same protocols."""
import json

import pytest
import torch

from timeclr.config import load_config
from timeclr.evaluate import main as evaluate_main
from timeclr.evaluation.features import eval_data_config, extract_features
from timeclr.evaluation.metrics import evaluate_features
from timeclr.training.run import random_model
from tests.helpers.runs import moving_bars_manifest

SMALL = ["model.backbone=small", "model.proj_hidden=32", "model.proj_dim=16", "data.short_side=40",
         "data.views.0.crop_size=32", "data.views.1.crop_size=32", "eval.batch_size=3", "eval.knn_k=3",
         "checkpoint=random"]


@pytest.fixture(scope="module")
def bars(tmp_path_factory):
    return moving_bars_manifest(tmp_path_factory.mktemp("bars"))


def _evaluate(bars, out, *extra):
    args = [f"data.manifest={bars}", f"eval.test_manifest={bars}", f"out_dir={out}", *SMALL, *extra]
    assert evaluate_main(["pipelines/debug.yaml", *args]) == 0
    return json.loads((out / "eval.json").read_text())


def test_each_clip_kind_and_both_are_scored_as_their_own_evaluations(tmp_path, bars):
    got = _evaluate(bars, tmp_path / "per_view", "eval.per_view=true")
    plain = _evaluate(bars, tmp_path / "plain")
    assert {k: v for k, v in got.items() if k != "by_clip"} == plain, "the main numbers must stay eval.view's"
    assert "by_clip" not in plain
    assert list(got["by_clip"]) == ["segment", "interval", "segment+interval"], got["by_clip"].keys()

    cfg = load_config("pipelines/debug.yaml", [f"data.manifest={bars}", *SMALL])
    model, feats = random_model(cfg, torch.device("cpu")), []
    for v in range(2):
        cfg.eval.view = v
        x, y = extract_features(model, eval_data_config(cfg), bars, torch.device("cpu"))
        feats.append(x)
        want = evaluate_features(x, y, x, y, k=3)
        assert got["by_clip"][["segment", "interval"][v]] == pytest.approx(want, abs=1e-9), v
    assert not torch.allclose(feats[0], feats[1]), "the two clip kinds should give different features"
    both = torch.cat(feats, 1)
    assert got["by_clip"]["segment+interval"] == pytest.approx(evaluate_features(both, y, both, y, k=3), abs=1e-9)
