"""timeclr.synthetic.render_v2: each group of the v2 set holds what its docstring says, measured on
the rendered pixels (not the renderer's own parameters): the fast drift's direction is seen by
consecutive frames and aliased both ways by frames 4 apart; the order group's events are caught
by every segment clip, never both by 8 consecutive frames, and lie away from the video's ends; a
burst always covers the eval interval clip, and its place shows in the eval segment clip."""
import numpy as np
import pytest

from pipelines.loader.frame_selection import interval_indices, segment_indices
from timeclr.synthetic import render, render_v2
from timeclr.synthetic.dataset import dataset_params, ensure_dataset

FRAMES, SIZE = 32, 64
VIDEOS = 24  # per class


def luma(video):
    return video[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def object_mask(label, index):
    """Pixels fully inside the (resting) object in every frame, and the video."""
    video, p = render_v2.make_sample(0, "train", label, index, FRAMES, SIZE)
    alpha = render.object_alpha(p)
    dist = render.distractor_alpha(p)
    return (alpha > 0.999).all(axis=0) & (dist < 1e-3).all(axis=0), video


def stripe_phase(video, mask):
    """Per frame, the phase (in periods) of the stripes' cosine along x inside ``mask``, found by
    projecting the pixels on cos / sin of the stripe frequency."""
    x = (np.arange(SIZE) + 0.5) / (render_v2.STRIPE_PERIOD * SIZE / 64)
    xs = np.broadcast_to(x, (SIZE, SIZE))[mask]
    y = luma(video)[:, mask]
    y = y - y.mean(axis=1, keepdims=True)
    return np.arctan2(y @ np.sin(2 * np.pi * xs), y @ np.cos(2 * np.pi * xs)) / (2 * np.pi)


def apparent_shift(phase, a, b):
    """The shift from frame a to b as it looks: the wrapped phase difference, in (-0.5, 0.5]."""
    d = phase[b] - phase[a]
    return d - np.round(d)


def usable(label, index):
    mask, video = object_mask(label, index)
    return (mask, video) if mask.sum() >= 20 else (None, None)


def test_fast_drift_direction_is_seen_by_consecutive_frames_and_aliased_by_frames_4_apart():
    dense_right, sparse_right, n = [], [], 0
    for label, sign in ((0, -1), (1, 1)):
        for index in range(VIDEOS):
            mask, video = usable(label, index)
            if mask is None:
                continue
            phase = stripe_phase(video, mask)
            dense = [apparent_shift(phase, f, f + 1) for f in range(FRAMES - 1)]
            dense_right.append(np.mean(np.sign(dense)) * sign)
            sparse = segment_indices(FRAMES, 8, train=False)  # frames 2, 6, ..., 30
            sparse_right.append(np.sign(np.mean([apparent_shift(phase, a, b) for a, b in zip(sparse, sparse[1:])])) * sign)
            n += 1
    assert n >= VIDEOS, f"only {n} videos had enough visible stripes"
    # consecutive frames: every shift in the class's direction
    assert min(dense_right) > 0.9, sorted(dense_right)[:5]
    # frames 4 apart: the apparent direction agrees with the class for about half the videos
    agree = np.mean(np.array(sparse_right) > 0)
    assert 0.25 <= agree <= 0.75, f"the eval segment clip tells the direction in {agree:.0%} of videos"


def test_order_events_are_one_segment_each_far_apart_and_every_segment_clip_sees_both():
    rng = np.random.default_rng(0)
    for label, first in ((2, "dark"), (3, "bright")):
        for index in range(VIDEOS):
            video, p = render_v2.make_sample(0, "train", label, index, FRAMES, SIZE)
            alpha = render.object_alpha(p)[0] > 0.999
            level = luma(video)[:, alpha].mean(axis=1)
            rest = np.median(level)
            dark = np.flatnonzero(level < rest - 30)
            bright = np.flatnonzero(level > rest + 30)
            assert len(dark) == len(bright) == FRAMES // 8, (label, index, dark, bright)
            early, late = (dark, bright) if first == "dark" else (bright, dark)
            assert late.min() - early.max() > 8, (early, late)
            # 7 frames or more from either end: a clip of 8 consecutive frames can hold an event at
            # any place in it, so its place in the clip does not tell its place in the video
            assert early.min() >= 7 and late.max() <= FRAMES - 8, (early, late)
            events = set(dark) | set(bright)
            for start in range(FRAMES - 7):  # 8 consecutive frames never hold both
                window = set(range(start, start + 8))
                assert not (window & set(dark) and window & set(bright)), (label, index, start)
            for _ in range(5):  # a random training segment clip and the eval one see both
                for clip in (segment_indices(FRAMES, 8, True, rng), segment_indices(FRAMES, 8, False)):
                    assert set(clip) & set(dark) and set(clip) & set(bright), (label, index, clip)
            assert events


def test_a_burst_covers_the_eval_interval_clip_and_its_place_shows_in_the_eval_segment_clip():
    dense = interval_indices(FRAMES, 8, [1], train=False)  # 12..19
    sparse = segment_indices(FRAMES, 8, train=False)
    for label, sign, early in ((4, -1, True), (5, 1, True), (6, -1, False), (7, 1, False)):
        for index in range(VIDEOS // 2):
            mask, video = usable(label, index)
            if mask is None:
                continue
            phase = stripe_phase(video, mask)
            shifts = np.array([apparent_shift(phase, f, f + 1) for f in range(FRAMES - 1)])
            moving = np.abs(shifts) > 0.05
            assert all(np.sign(shifts[f]) == sign for f in dense[:-1]), (label, index, shifts[dense[:-1]])
            # the sparse clip: stripes move between its first frames and rest between its last, or the reverse
            steps = [abs(apparent_shift(phase, a, b)) > 0.02 for a, b in zip(sparse, sparse[1:])]
            head, tail = steps[:2], steps[-2:]
            assert (any(head) and not any(tail)) if early else (any(tail) and not any(head)), (label, index, steps)
            assert moving.sum() >= 15


def test_slow_classes_are_v1s_motions_and_the_sets_record_apart(tmp_path):
    for k, name in enumerate(render_v2.SLOW):
        _, p = render_v2.make_sample(0, "train", 8 + k, 0, FRAMES, SIZE)
        assert p["class_name"].split("_", 1)[1] == name.split("_", 1)[1]
        assert p["phase"] is None and not p["event"].any()
    assert "set" not in dataset_params()  # v1's folders made before v2 still match
    assert dataset_params(set_name="v2")["set"] == "v2"
    assert dataset_params(set_name="v2")["classes"] == list(render_v2.CLASSES)
    with pytest.raises(ValueError, match="v3"):
        dataset_params(set_name="v3")
    train_csv, _ = ensure_dataset(tmp_path / "v2", train_per_class=1, test_per_class=1, frames=16, size=32,
                                  workers=1, progress=False, set_name="v2")
    names = sorted(p.name for p in (tmp_path / "v2" / "train").iterdir())
    assert names == sorted(render_v2.CLASSES), names


def test_the_committed_self_check_follows_from_its_runs_and_every_group_passes():
    # benchmarks/results/v2_self_check.csv (docs/results.md's table): each group's summary is
    # recomputed here from the runs, with the rule, so the table and the README cannot drift from them
    import csv
    from pathlib import Path
    from statistics import fmean

    from timeclr.config import load_config

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "v2_self_check.csv"
    rows = list(csv.DictReader(open(path, newline="", encoding="utf-8")))
    groups = load_config("pipelines/synthetic_v2.yaml").eval.groups
    summaries = {r["group"]: r for r in rows if r["kind"] == "summary"}
    assert sorted(summaries) == sorted(groups), (sorted(summaries), sorted(groups))
    for g, names in groups.items():
        runs = [r for r in rows if r["kind"] == "run" and r["group"] == g]
        rand = [r for r in runs if r["what"] == "random_init"]
        assert len(rand) == 3, (g, len(rand))
        worst = max(fmean(float(r[f"knn_{c}"]) for r in rand) for c in ("segment", "interval", "segment+interval"))
        ceilings = {w: fmean(float(r["top1"]) for r in runs if r["what"] == w)
                    for w in ("ceiling_segment8", "ceiling_interval8", "ceiling_all32")}
        s = summaries[g]
        assert abs(float(s["random_knn_max"]) - worst) < 1e-3, (g, s["random_knn_max"], worst)
        for w, v in ceilings.items():
            assert abs(float(s[w]) - v) < 1e-3, (g, w, s[w], v)
        limit = 100 / len(names) + 15
        assert worst <= limit and worst <= max(ceilings.values()) - 40, (g, worst, limit, ceilings)
        assert s["passes"] == "True", (g, s["passes"])
