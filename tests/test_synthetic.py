"""timeclr.synthetic.dataset: the generated tree, its manifests and DONE.json contract; and
timeclr.synthetic.render: the classes are defined by motion over time (the renderer's ground truth
and its pixels), not by one frame."""
import json
import os
import time
from collections import Counter

import av
import numpy as np
import pytest

from timeclr.synthetic import dataset as synthetic
from timeclr.data import main as data_main
from timeclr.synthetic import render
from timeclr.pipelines.storage import manifest
from timeclr.pipelines.storage.manifest import read_manifest
from timeclr.synthetic.dataset import DatasetMismatch, NotADataset, ensure_dataset
from timeclr.synthetic.render import CLASSES, make_sample

TRAIN, TEST, FRAMES, SIZE = 3, 2, 16, 32  # the tiny dataset the file-level tests share
PER_SPLIT = {"train": TRAIN, "test": TEST}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic") / "data"
    paths = ensure_dataset(root, train_per_class=TRAIN, test_per_class=TEST, frames=FRAMES, size=SIZE,
                           seed=3, workers=2, progress=False)
    return root, paths


def snapshot(root):
    return {str(p): p.stat().st_mtime_ns for p in root.rglob("*")}


def test_tree_manifests_and_labels(dataset):
    root, (train_csv, test_csv) = dataset
    assert (train_csv, test_csv) == (str(root / "train.csv"), str(root / "test.csv"))
    for split, path in zip(("train", "test"), (train_csv, test_csv)):
        rows, classes = read_manifest(path)
        assert classes == list(CLASSES) == sorted(CLASSES)  # folder order = label order
        assert Counter(r["label"] for r in rows) == {i: PER_SPLIT[split] for i in range(len(CLASSES))}
        for r in rows:
            assert r["class_name"] == CLASSES[r["label"]] and r["path"].startswith(r["class_name"] + "/")
            assert (r["num_frames"], r["width"], r["height"], r["codec"], r["fps"]) == (FRAMES, SIZE, SIZE, "vp9", 25.0)
            assert os.path.isfile(r["abs_path"]) and r["abs_path"].startswith(str(root / split))
        _, rejects = manifest.sidecar_paths(path)
        assert rejects.read_text().strip() == "path,reason"
    done = json.loads((root / "DONE.json").read_text())
    assert done["params"] == synthetic.dataset_params(TRAIN, TEST, FRAMES, SIZE, seed=3)
    assert not list(root.parent.glob(".data.partial-*"))


def test_files_are_vp9_holding_the_rendered_frames(dataset):
    root, (train_csv, _) = dataset
    rows, _ = read_manifest(train_csv)
    for r in rows[::TRAIN]:  # one video per class
        with av.open(r["abs_path"]) as c:
            assert c.streams.video[0].codec_context.name == "vp9"
            decoded = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
        index = int(os.path.basename(r["path"]).split(".")[0])
        rendered, _ = make_sample(3, "train", r["label"], index, FRAMES, SIZE)
        assert decoded.shape == rendered.shape == (FRAMES, SIZE, SIZE, 3)
        assert np.abs(decoded.astype(int) - rendered).mean() < 5, r["path"]  # same video, good quality


def test_keyframe_every_gop_frames(tmp_path):
    frames, _ = make_sample(0, "train", 0, 0, frames=40, size=32)
    path = synthetic.write_webm(tmp_path / "v.webm", frames)
    with av.open(path) as c:
        keys = [i for i, packet in enumerate(c.demux(video=0)) if packet.is_keyframe]
    assert keys == [0, 16, 32]


def test_second_call_returns_at_once_and_touches_nothing(dataset):
    root, paths = dataset
    before = snapshot(root)
    began = time.perf_counter()
    again = ensure_dataset(root, train_per_class=TRAIN, test_per_class=TEST, frames=FRAMES, size=SIZE,
                           seed=3, workers=2, progress=False)
    assert time.perf_counter() - began < 0.5
    assert again == paths and snapshot(root) == before


def test_cli_prints_the_manifests(dataset, capsys):
    root, (train_csv, test_csv) = dataset
    argv = [str(root), "--train-per-class", str(TRAIN), "--test-per-class", str(TEST),
            "--frames", str(FRAMES), "--size", str(SIZE), "--seed", "3", "--no-progress"]
    assert data_main(["synthetic", *argv]) == 0
    out = capsys.readouterr().out
    assert train_csv in out and test_csv in out


def test_prepare_synthetic_returns_the_manifests_and_a_manifest_the_config_names_wins(dataset):
    from omegaconf import OmegaConf

    from timeclr.config import load_config

    root, (train_csv, test_csv) = dataset
    cfg = OmegaConf.create({
        "synthetic": {"train_per_class": TRAIN, "test_per_class": TEST, "frames": FRAMES, "size": SIZE},
        "data": {"root": str(root), "manifest": ""}, "eval": {"test_manifest": ""}})
    with pytest.raises(DatasetMismatch):  # its seed is the default, 0: not this dataset's
        synthetic.prepare_synthetic(cfg, rank=0)
    cfg.data.root = str(root.parent / "default_seed")
    before = OmegaConf.to_yaml(cfg)
    made = synthetic.prepare_synthetic(cfg, rank=0)
    assert made == (str(root.parent / "default_seed" / "train.csv"), str(root.parent / "default_seed" / "test.csv"))
    assert OmegaConf.to_yaml(cfg) == before, "the config is the caller's to change"
    assert synthetic.prepare_synthetic(cfg, rank=1) == made  # the other ranks find it done
    assert synthetic.chosen_manifests(cfg, *made) == made  # none given: the dataset's
    cfg.data.manifest, cfg.eval.test_manifest = "subset.csv", "mine.csv"  # given ones are kept
    assert synthetic.chosen_manifests(cfg, *made) == ("subset.csv", "mine.csv")
    schema = load_config("pipelines/synthetic_v1.yaml")  # data.manifest '???' (none given) takes the dataset's
    assert OmegaConf.is_missing(schema.data, "manifest")
    assert synthetic.chosen_manifests(schema, *made) == made


def test_other_parameters_raise_and_overwrite_nothing(dataset):
    root, _ = dataset
    before = snapshot(root)
    with pytest.raises(DatasetMismatch) as e:
        ensure_dataset(root, train_per_class=TRAIN, test_per_class=TEST, frames=FRAMES + 8, size=SIZE, seed=3)
    message = str(e.value)
    assert str(root) in message and "differing: frames" in message
    assert f'"frames": {FRAMES}' in message and f'"frames": {FRAMES + 8}' in message
    assert snapshot(root) == before


def test_foreign_folder_is_not_overwritten(tmp_path):
    (tmp_path / "mine.txt").write_text("keep")
    with pytest.raises(NotADataset, match="no DONE.json"):
        ensure_dataset(tmp_path, train_per_class=1, test_per_class=1, frames=8, size=16, progress=False)
    assert [p.name for p in tmp_path.iterdir()] == ["mine.txt"]


def test_interrupted_generation_leaves_no_dataset_and_is_redone(tmp_path, monkeypatch):
    root = tmp_path / "data"
    small = dict(train_per_class=1, test_per_class=1, frames=8, size=16, workers=1, progress=False)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(synthetic, "index_tree", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ensure_dataset(root, **small)
    assert list(tmp_path.iterdir()) == []  # no root, no partial folder
    monkeypatch.undo()

    stale = tmp_path / ".data.partial-999999999"  # a dead run's leftovers (no such pid)
    (stale / "train").mkdir(parents=True)
    train_csv, _ = ensure_dataset(root, **small)
    assert len(read_manifest(train_csv)[0]) == len(CLASSES)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_videos_are_deterministic_per_seed_split_label_index():
    a, pa = make_sample(5, "test", 2, 7, frames=8, size=16)
    b, pb = make_sample(5, "test", 2, 7, frames=8, size=16)
    assert np.array_equal(a, b) and pa["shape"] == pb["shape"]
    for other in [(6, "test", 2, 7), (5, "train", 2, 7), (5, "test", 2, 8)]:
        assert not np.array_equal(a, make_sample(*other, frames=8, size=16)[0])


# -- the classes: motion over time tells them apart, one frame does not ---------------------------

N, F, S = 40, 32, 64  # videos per class and their format, as the main job generates them


def samples(label):
    rng = np.random.default_rng(1000 + label)
    return [render.sample_params(label, F, S, rng) for _ in range(N)]


def moments(params):
    """Per frame: the object's area, centroid x and principal-axis angle (degrees, y down, so an
    increasing angle turns clockwise on screen), from the rendered coverage itself."""
    a = render.object_alpha(params).astype(np.float64)
    y, x = np.mgrid[:S, :S] + 0.5
    m = a.sum((1, 2))
    mx, my = (a * x).sum((1, 2)) / m, (a * y).sum((1, 2)) / m
    dx, dy = x - mx[:, None, None], y - my[:, None, None]
    mu20, mu02, mu11 = ((a * dx * dx).sum((1, 2)), (a * dy * dy).sum((1, 2)), (a * dx * dy).sum((1, 2)))
    return m, mx, np.degrees(0.5 * np.arctan2(2 * mu11, mu20 - mu02))


def best_threshold_accuracy(a, b):
    """Accuracy of the best single threshold separating values a (one class) from b (the other)."""
    values = np.concatenate([a, b])
    is_a = np.r_[np.ones(len(a), bool), np.zeros(len(b), bool)]
    order = np.argsort(values)
    below_a = np.r_[0, np.cumsum(is_a[order])]  # a-values at or below each cut
    below_b = np.r_[0, np.cumsum(~is_a[order])]
    acc = (below_a + (len(b) - below_b)) / len(values)  # rule: a below the cut, b above
    return max(acc.max(), (1 - acc).max())


def test_left_right_need_motion_not_one_frame():
    xs = {label: np.stack([moments(p)[1] for p in samples(label)]) for label in (0, 1)}  # (N, F)
    for label, sign in ((0, 1), (1, -1)):
        steps = np.diff(xs[label], axis=1) * sign
        assert (steps > -0.05).all()  # never moves the other way (beyond anti-aliasing at the frame edge)
        assert (steps.sum(1) > 0.3 * S).all()  # and travels at least 30 % of the width
        assert (xs[label] < 0.4 * S).any() and (xs[label] > 0.6 * S).any()  # on both halves
    # One frame's position barely tells the classes apart; the displacement always does.
    assert best_threshold_accuracy(xs[0].ravel(), xs[1].ravel()) < 0.6
    displacement = [xs[label][:, -1] - xs[label][:, 0] for label in (0, 1)]
    assert best_threshold_accuracy(*displacement) == 1.0


def test_rotation_turns_in_the_stated_sense():
    for label, sign in ((2, 1), (3, -1)):
        for p in samples(label):
            assert (np.diff(p["angle"]) * sign >= 0).all()
            # Centred, so no frame edge clips the object and its moments turn with it.
            _, _, axis = moments(dict(p, cx=np.full(F, S / 2), cy=np.full(F, S / 2)))
            steps = (np.diff(axis) + 90) % 180 - 90  # axis angle is defined modulo 180 degrees
            turned = p["angle"][-1] - p["angle"][0]
            assert sign * turned >= 120 and abs(steps.sum() - turned) < 15, p["shape"]


def test_grow_shrink_need_motion_not_one_frame():
    areas = {label: np.stack([moments(p)[0] for p in samples(label)]) for label in (4, 5)}
    for label, sign in ((4, 1), (5, -1)):
        assert (np.diff(areas[label], axis=1) * sign > -1e-3 * S * S).all()
        ratio = areas[label][:, -1] / areas[label][:, 0]
        assert (ratio ** sign > 1.8 ** 2 * 0.9).all()
    logs = [np.log(areas[label]).ravel() for label in (4, 5)]
    assert best_threshold_accuracy(*logs) < 0.6


def test_flash_half_is_only_told_by_time():
    brightness = {}
    for label, half in ((6, slice(0, F // 2)), (7, slice(F // 2, F))):
        for p in samples(label):
            flash = np.flatnonzero(p["flash"])
            assert len(flash) == F // 4 and np.all(np.diff(flash) == 1) and p["flash"][half].sum() == F // 4
            frames = render.render(p).astype(np.float64).mean(axis=(1, 2, 3))
            assert frames[flash].min() > frames[~p["flash"]].max() + 10  # the flash shows
        brightness[label] = np.concatenate([render.render(p).mean(axis=(1, 2, 3)) for p in samples(label)])
    assert best_threshold_accuracy(brightness[6], brightness[7]) < 0.6


def test_appearance_is_shared_by_every_class():
    shapes = {label: Counter(p["shape"] for p in samples(label)) for label in range(len(CLASSES))}
    for label, counts in shapes.items():
        assert set(counts) == set(render.SHAPE_NAMES[:render.SHAPES_USED]), (CLASSES[label], counts)
    for p in samples(0) + samples(6):
        colour_gap = np.linalg.norm(p["colour"] - p["background"])
        assert colour_gap >= render.MIN_COLOUR_DISTANCE
