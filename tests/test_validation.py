"""The validation split, the online kNN during pretraining and per-group scores (issue #17)."""
import json
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F

from timeclr.config import load_config
from timeclr.evaluation.features import eval_data_config, extract_features, validation_split
from timeclr.models import build_model
from timeclr.pipelines.loader.clip_source import read_videos
from timeclr.train import main as train_main
from tests.helpers.runs import losses, moving_bars_manifest
from tests.test_train import overrides as train_overrides


@dataclass
class V:
    path: str
    label: int


@pytest.mark.parametrize("fraction", [0.1, 0.2, 0.5])
def test_the_validation_split_takes_the_fraction_of_every_class_and_ignores_the_run_seed(fraction):
    videos = [V(f"{c}/{i}", c) for c in range(4) for i in range(10 + 5 * c)]  # 10, 15, 20, 25 per class
    fit, val = validation_split(videos, fraction, seed=0)
    assert sorted(v.path for v in fit + val) == sorted(v.path for v in videos), "every video in exactly one"
    assert not {v.path for v in fit} & {v.path for v in val}
    for c in range(4):
        n = 10 + 5 * c
        got = sum(v.label == c for v in val)
        assert got == min(max(1, round(fraction * n)), n - 1), (c, got)
    assert validation_split(videos, fraction, seed=0) == (fit, val), "deterministic"
    assert validation_split(videos, fraction, seed=1)[1] != val, "val_seed draws another split"
    assert [v.path for v in fit] == [v.path for v in videos if v in fit], "manifest order kept"


def test_a_class_of_one_video_stays_in_fit():
    videos = [V("a", 0), V("b", 1), V("c", 1)]
    fit, val = validation_split(videos, 0.5)
    assert [v.path for v in fit] == ["a", sorted({"b", "c"} - {val[0].path})[0]] and len(val) == 1


def reference_knn(train_x, train_y, test_x, test_y, k, temperature=0.07) -> float:
    """DINO's weighted kNN in float64, one query at a time."""
    tr, te = F.normalize(train_x.double(), dim=1), F.normalize(test_x.double(), dim=1)
    hits = 0
    for q, y in zip(te, test_y):
        sims = tr @ q
        top = sims.topk(min(k, len(tr)))
        votes = torch.zeros(int(train_y.max()) + 1, dtype=torch.float64)
        for s, i in zip(top.values, top.indices):
            votes[train_y[i]] += torch.exp((s - top.values[0]) / temperature)
        hits += int(votes.argmax()) == int(y)
    return 100.0 * hits / len(test_y)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return moving_bars_manifest(tmp_path_factory.mktemp("bars"))


def overrides(manifest, out_dir, *extra):
    return train_overrides(manifest, out_dir, "eval.val_fraction=0.25", "eval.knn_k=2", *extra)


def test_online_knn_is_logged_every_n_epochs_and_matches_an_evaluation_of_the_checkpoint(manifest, tmp_path):
    out = tmp_path / "run"
    args = overrides(manifest, out, "train.epochs=4", "train.knn_every=2", "train.evaluate=false")
    train_main(["pipelines/debug.yaml", *args])
    rows = [json.loads(line) for line in open(out / "metrics.jsonl")]
    knn = [r for r in rows if "val_knn_top1" in r]
    assert [r["step"] for r in knn] == [4, 8], knn  # 2 steps an epoch, every 2 epochs
    assert len(losses(out)) == 8
    # the last online number is the final model's kNN on the validation split, recomputed here
    # from the checkpoint with a float64 reference kNN
    cfg = load_config("pipelines/debug.yaml", args)
    model = build_model(cfg.model)
    model.load_state_dict(torch.load(out / "checkpoint.pt", weights_only=True)["model"])
    fit, val = validation_split(read_videos(manifest), 0.25, 0)
    data = eval_data_config(cfg)
    train_x, train_y = extract_features(model, data, fit, torch.device("cpu"))
    val_x, val_y = extract_features(model, data, val, torch.device("cpu"))
    assert knn[-1]["val_knn_top1"] == pytest.approx(reference_knn(train_x, train_y, val_x, val_y, k=2)), knn
    assert (out / "loss.png").exists()


def test_eval_reports_each_group_and_the_validation_split_on_request(manifest, tmp_path):
    out = tmp_path / "run"
    groups = "eval.groups={leftward: [left], rightward: [right]}"
    train_main(["pipelines/debug.yaml", *overrides(manifest, out, "train.epochs=1", f"eval.test_manifest={manifest}",
                                                   groups, "eval.random_init=false", "train.evaluate=true")])
    result = json.load(open(out / "eval.json"))["pretrained"]
    for metric in ("knn_top1", "linear_top1"):
        # 4 test videos per class: the overall number is the mean of the two groups'
        assert (result[f"{metric}_leftward"] + result[f"{metric}_rightward"]) / 2 == pytest.approx(result[metric]), result
    with pytest.raises(SystemExit, match="eval.groups.bad"):
        train_main(["pipelines/debug.yaml", *overrides(manifest, tmp_path / "bad", "train.epochs=1",
                                                       f"eval.test_manifest={manifest}", "eval.groups={bad: [up]}",
                                                       "train.evaluate=true")])
    assert not (tmp_path / "bad" / "checkpoint.pt").exists(), "refused before training"
    with pytest.raises(SystemExit, match="eval.val_fraction"):
        train_main(["pipelines/debug.yaml", *overrides(manifest, tmp_path / "v", "eval.val_fraction=0", "train.knn_every=1")])


def test_a_run_reads_its_manifests_once_for_every_evaluation_in_it(manifest, tmp_path, monkeypatch):
    """The online kNN, both encoders of the final evaluation, their groups and the table's heading
    share one read of each manifest (issue #26: the train manifest was read 8 times a run)."""
    from timeclr.pipelines.loader import clip_source

    reads, real = [], clip_source.read_manifest
    monkeypatch.setattr(clip_source, "read_manifest", lambda path, *a, **k: reads.append(str(path)) or real(path, *a, **k))
    groups = "eval.groups={leftward: [left], rightward: [right]}"
    train_main(["pipelines/debug.yaml", *overrides(manifest, tmp_path / "run", "train.epochs=2", "train.knn_every=1",
                                                   f"eval.test_manifest={manifest}", groups, "eval.random_init=true",
                                                   "train.evaluate=true")])
    assert json.load(open(tmp_path / "run" / "eval.json")).keys() == {"pretrained", "random_init"}
    # the training's own list, the evaluations' train split, their test split (here the same file)
    assert reads == [str(manifest)] * 3, reads


def test_the_labelled_subsets_are_class_balanced_fixed_and_as_long_as_the_full_manifest(tmp_path):
    import csv

    from timeclr.benchmarks.experiments.finetune_synthetic import labelled_manifest

    full = tmp_path / "train.csv"
    rows = [{"path": f"{c}/{i}.webm", "label": str(c), "class_name": f"c{c}"} for c in range(4) for i in range(40)]
    with open(full, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["path", "label", "class_name"])
        w.writeheader()
        w.writerows(rows)
    (tmp_path / "train.classes.txt").write_text("".join(f"c{c}\n" for c in range(4)))
    assert labelled_manifest(full, 1.0) == str(full)
    for fraction, per_class in ((0.1, 4), (0.01, 1)):
        path = labelled_manifest(full, fraction)
        with open(path, newline="") as f:
            got = list(csv.DictReader(f))
        assert len(got) == len(rows), "repeated to the full length: the same steps per epoch"
        distinct = {r["path"] for r in got}
        for c in range(4):
            n = len({p for p in distinct if p.startswith(f"{c}/")})
            assert n == per_class, (fraction, c, n)
        assert labelled_manifest(full, fraction) == path and list(csv.DictReader(open(path))) == got, "fixed"
        assert open(path.replace(".csv", ".classes.txt")).read() == (tmp_path / "train.classes.txt").read_text()
