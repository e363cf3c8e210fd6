"""Segment and interval selection: the documented semantics, checked on many random videos."""
import math

import numpy as np
import pytest

from timeclr.pipelines.loader.frame_selection import interval_indices, segment_indices, select_views, view_indices


@pytest.mark.parametrize("train", [True, False])
def test_segment_view_hits_every_segment(train):
    rng = np.random.default_rng(0)
    for _ in range(2000):
        n, k = int(rng.integers(1, 400)), int(rng.integers(1, 17))
        idx = segment_indices(n, k, train, rng)
        bounds = np.arange(k + 1) * n // k
        assert idx.shape == (k,) and idx.dtype == np.int64
        assert (np.diff(idx) >= 0).all(), f"n={n} K={k}: not in order {idx}"
        assert ((idx >= 0) & (idx < n)).all(), f"n={n} K={k}: out of range {idx}"
        # idx_k lies in segment k = [floor(k·n/K), floor((k+1)·n/K)), or at its start if it is empty
        assert (idx >= bounds[:-1]).all(), f"n={n} K={k}: {idx} before its segment {bounds}"
        assert ((idx < bounds[1:]) | (bounds[1:] == bounds[:-1])).all(), f"n={n} K={k}: {idx} past {bounds}"
        if n >= k:
            assert len(np.unique(idx)) == k, f"n={n} K={k}: a frame repeats although every segment has one"


def test_segment_eval_is_segment_centres():
    assert segment_indices(100, 4, train=False).tolist() == [12, 37, 62, 87]
    assert segment_indices(3, 6, train=False).tolist() == [0, 0, 1, 1, 2, 2]  # short video: frames repeat


def test_segment_train_covers_each_segment_uniformly():
    rng = np.random.default_rng(1)
    draws = np.stack([segment_indices(40, 4, True, rng) for _ in range(4000)])
    for k in range(4):  # each segment has 10 frames, each drawn ~10% of the time
        counts = np.bincount(draws[:, k] - 10 * k, minlength=10)
        assert counts.shape == (10,) and counts.min() > 300, f"segment {k}: {counts}"


@pytest.mark.parametrize("train", [True, False])
def test_interval_view_is_evenly_strided_and_ordered(train):
    rng = np.random.default_rng(2)
    for _ in range(2000):
        n, t = int(rng.integers(1, 400)), int(rng.integers(1, 17))
        strides = sorted(set(rng.integers(1, 9, size=int(rng.integers(1, 4))).tolist()))
        idx = interval_indices(n, t, strides, train, rng)
        assert idx.shape == (t,) and ((idx >= 0) & (idx < n)).all(), f"n={n} T={t}: {idx}"
        if t > 1 and n >= t:
            steps = np.unique(np.diff(idx))
            assert len(steps) == 1, f"n={n} T={t}: uneven steps {idx}"
            # the drawn stride (train) or the first stride (eval), shrunk to the largest that fits
            largest = (n - 1) // (t - 1)
            allowed = {min(s, largest) for s in (strides if train else strides[:1])}
            assert steps[0] in allowed, f"n={n} T={t} strides={strides}: step {steps[0]} not in {allowed}"
        if n < t:  # edge padding: 0, 1, ..., n-1, n-1, ...
            assert idx.tolist() == list(range(n)) + [n - 1] * (t - n)


def test_interval_eval_is_centred_and_train_covers_all_starts():
    # span 29, 71 spare frames: start at 71 // 2 = 35
    assert interval_indices(100, 8, [4, 2], train=False).tolist() == list(range(35, 35 + 29, 4))
    rng = np.random.default_rng(3)
    starts = {int(interval_indices(20, 4, [2], True, rng)[0]) for _ in range(2000)}
    assert starts == set(range(0, 20 - 7 + 1)), starts
    strides = {int(np.diff(interval_indices(100, 4, [1, 3, 5], True, rng))[0]) for _ in range(500)}
    assert strides == {1, 3, 5}


def test_view_indices_and_bad_arguments():
    rng = np.random.default_rng(4)
    assert len(view_indices({"kind": "segment", "frames": 8}, 50, True, rng)) == 8
    assert len(view_indices({"kind": "interval", "frames": 8, "strides": [2]}, 50, True, rng)) == 8
    with pytest.raises(ValueError, match="kind"):
        view_indices({"kind": "random", "frames": 8}, 50, True, rng)
    with pytest.raises(ValueError, match="num_frames"):
        segment_indices(0, 4, False)
    with pytest.raises(ValueError, match="strides"):
        interval_indices(10, 4, [0], False)


def test_clip_k_of_c_against_the_closed_form():
    """Eval clip k of C: fraction u = (k + 1/2)/C where eval otherwise takes 1/2, i.e. segment k's
    frame b_k + floor(u·L_k) and the interval start floor(u·free), computed here in exact rationals."""
    from fractions import Fraction

    rng = np.random.default_rng(5)
    for _ in range(2000):
        n, k_seg, t = int(rng.integers(1, 400)), int(rng.integers(1, 17)), int(rng.integers(1, 17))
        clips = int(rng.integers(1, 12))
        stride = int(rng.integers(1, 5))
        bounds = [s * n // k_seg for s in range(k_seg + 1)]
        stride_fit = max(1, min(stride, (n - 1) // (t - 1))) if t > 1 else stride
        free = max(0, n - ((t - 1) * stride_fit + 1))
        starts = []
        for clip in range(clips):
            u = Fraction(2 * clip + 1, 2 * clips)
            want = [min(b + math.floor(u * (e - b)), n - 1) for b, e in zip(bounds[:-1], bounds[1:])]
            got = segment_indices(n, k_seg, False, clip=clip, clips=clips).tolist()
            assert got == want, f"n={n} K={k_seg} clip {clip}/{clips}: {got}, closed form {want}"
            idx = interval_indices(n, t, [stride], False, clip=clip, clips=clips)
            start = math.floor(u * free)
            want = [min(start + j * stride_fit, n - 1) for j in range(t)]
            assert idx.tolist() == want, f"n={n} T={t} s={stride} clip {clip}/{clips}: {idx.tolist()}, closed form {want}"
            starts.append(start)
        assert starts == sorted(starts) and starts[-1] <= free, f"n={n} T={t}: starts {starts} not spread in [0, {free}]"


def test_one_clip_is_the_default_eval_selection_and_train_ignores_clips():
    rng = np.random.default_rng(6)
    for _ in range(500):
        n, k = int(rng.integers(1, 300)), int(rng.integers(1, 17))
        assert segment_indices(n, k, False, clip=0, clips=1).tolist() == segment_indices(n, k, False).tolist()
        assert interval_indices(n, k, [3, 1], False, clip=0, clips=1).tolist() == \
            interval_indices(n, k, [3, 1], False).tolist()
    # spread over the video: 4 clips of a 16-frame interval in 100 frames (free = 84) start at 10, 31, 52, 73
    view = {"kind": "interval", "frames": 16, "strides": [1], "clips": 4}
    assert [int(view_indices({**view, "clip": c}, 100, False)[0]) for c in range(4)] == [10, 31, 52, 73]
    # segments of 4 frames, 4 clips: offsets 0, 1, 2, 3 within each segment
    assert [segment_indices(32, 8, False, clip=c, clips=4).tolist()[:2] for c in range(4)] == \
        [[0, 4], [1, 5], [2, 6], [3, 7]]
    a = view_indices({"kind": "segment", "frames": 8, "clip": 3, "clips": 4}, 50, True, np.random.default_rng(7))
    b = view_indices({"kind": "segment", "frames": 8}, 50, True, np.random.default_rng(7))
    assert a.tolist() == b.tolist(), "train mode must ignore the clip index"
    with pytest.raises(ValueError, match="clip"):
        segment_indices(50, 8, False, clip=4, clips=4)
    with pytest.raises(ValueError, match="clip"):
        interval_indices(50, 8, [1], False, clip=0, clips=0)


# ---------------------------------------------------------------------------------------------
# where an interval view starts: select_views's rules against closed forms and enumeration
# ---------------------------------------------------------------------------------------------
SEG = {"kind": "segment", "frames": 8}
CLIP = {"kind": "interval", "frames": 8, "strides": [1]}


def test_random_starts_are_view_indices_view_after_view():
    """The default keeps every earlier draw: the same frames as view_indices on one generator."""
    views = [SEG, {**CLIP, "strides": [1, 2, 3]}, {**CLIP, "start": "random", "anchor": 0}]
    for seed in range(200):
        n = 8 + seed % 90
        got = select_views(views, n, True, np.random.default_rng(seed))
        rng = np.random.default_rng(seed)
        want = [view_indices(v, n, True, rng) for v in views]
        assert [g.tolist() for g in got] == [w.tolist() for w in want], f"seed {seed} n={n}"


def test_spread_views_are_evenly_spaced_with_one_random_phase():
    # 4 clips of 8 frames at stride 1 in 40 frames: free = 32, starts floor((i + u) / 4 * 33)
    views = [{**CLIP, "start": "spread"} for _ in range(4)]
    rng = np.random.default_rng(0)
    firsts = []
    for _ in range(2000):
        starts = [int(v[0]) for v in select_views(views, 40, True, rng)]
        u = starts[0] / 33 * 4  # the phase, up to the floor
        want = [math.floor((i + u) / 4 * 33) for i in range(4)]
        assert all(abs(s - w) <= 1 for s, w in zip(starts, want)), f"starts {starts}, evenly spaced {want}"
        assert starts == sorted(starts) and min(np.diff(starts)) >= 7, starts
        firsts.append(starts[0])
    assert set(firsts) == set(range(9)), f"the first clip's start covers floor(u * 33 / 4) = 0..8: {sorted(set(firsts))}"


def test_near_starts_follow_the_linear_decreasing_weight():
    """The distance |t1 - t0| between a random clip and a 'near' clip against its distribution
    enumerated in float64: t0 uniform over 0..F, P(t1 | t0) ∝ F + 1 - |t1 - t0|."""
    n, views = 30, [CLIP, {**CLIP, "start": "near", "anchor": 0}]
    free = n - 8
    t = np.arange(free + 1, dtype=np.float64)
    weight = free + 1 - np.abs(t[:, None] - t[None, :])  # [t0, t1]
    joint = weight / weight.sum(1, keepdims=True) / (free + 1)
    want = np.bincount(np.abs(t[:, None] - t[None, :]).astype(int).ravel(), joint.ravel(), minlength=free + 1)
    rng, draws = np.random.default_rng(1), 20000
    d = [abs(int(b[0]) - int(a[0])) for a, b in (select_views(views, n, True, rng) for _ in range(draws))]
    got = np.bincount(d, minlength=free + 1) / draws
    err = np.abs(got - want).max()
    assert err < 0.01, f"distance histogram off by {err:.4f}:\n got {np.round(got, 3)}\nwant {np.round(want, 3)}"
    # and nearer than two independent random clips, whose mean distance is (F + 2) F / (3 (F + 1))
    assert np.mean(d) < 0.8 * (free + 2) * free / (3 * (free + 1)), np.mean(d)


def test_near_with_another_stride_than_its_anchor():
    """An anchor at stride 1 (starts 0..24 in 32 frames) and a near clip at stride 3 (span 22,
    starts 0..10): an anchor start past 10 still gives a proper weight, max(10, a) + 1 - |t - a| >= 1."""
    views = [{**CLIP, "strides": [1]}, {**CLIP, "strides": [3], "start": "near", "anchor": 0}]
    rng, counts = np.random.default_rng(4), np.zeros((25, 11))
    for _ in range(30000):
        a, b = select_views(views, 32, True, rng)
        counts[int(a[0]), int(b[0])] += 1
    t = np.arange(11)
    for a in (0, 10, 24):
        weight = max(10, a) + 1 - np.abs(t - a)
        want, got = weight / weight.sum(), counts[a] / counts[a].sum()
        err = np.abs(got - want).max()
        assert err < 0.06, f"anchor {a}: start frequencies off by {err:.3f}:\n got {np.round(got, 3)}\nwant {np.round(want, 3)}"


@pytest.mark.parametrize("stride", [1, 2, 3])
def test_overlap_centres_the_clip_on_one_of_the_anchors_frames(stride):
    n, views = 32, [SEG, {**CLIP, "strides": [stride], "start": "overlap", "anchor": 0}]
    rng, centres = np.random.default_rng(2), set()
    for _ in range(3000):
        seg, clip = select_views(views, n, True, rng)
        assert clip[4] in seg, f"stride {stride}: the clip's middle frame {clip[4]} is not a segment frame {seg}"
        assert (np.diff(clip) == stride).all(), clip
        centres.add(int(np.searchsorted(np.arange(9) * n // 8, clip[4], side="right") - 1))
    # every segment whose frames can centre a fitting clip does so: frames 4s .. n-1-3s
    reachable = {k for k in range(8) if 4 * k + 3 >= 4 * stride and 4 * k <= n - 1 - 3 * stride}
    assert centres == reachable, f"stride {stride}: centred on segments {sorted(centres)}, expected {sorted(reachable)}"


def test_overlap_falls_back_to_the_nearest_start_and_eval_ignores_start():
    # a 1-frame anchor at frame 0 cannot centre an 8-frame clip: start 0, the nearest
    views = [{"kind": "interval", "frames": 1, "strides": [1]}, {**CLIP, "start": "overlap", "anchor": 0}]
    for seed in range(50):
        anchor, clip = select_views(views, 40, True, np.random.default_rng(seed))
        want = min(max(int(anchor[0]) - 4, 0), 32)
        assert int(clip[0]) == want, f"anchor {anchor}: clip starts at {clip[0]}, nearest fit {want}"
    views = [SEG, {**CLIP, "start": "near", "anchor": 0}]
    assert [v.tolist() for v in select_views(views, 40, False)] == [view_indices(v, 40, False).tolist() for v in views]


@pytest.mark.parametrize("views, message", [
    ([SEG, {**CLIP, "start": "soon"}], r"views\[1\]\.start must be one of"),
    ([{**SEG, "start": "spread"}, CLIP], r"views\[0\]\.start='spread' places an interval view"),
    ([CLIP, {**CLIP, "start": "near", "anchor": 1}], r"views\[1\]\.anchor must name an earlier view \(0 \.\. 0\)"),
    ([{**CLIP, "start": "overlap"}, CLIP], r"views\[0\]\.anchor must name an earlier view"),
    ([SEG, {**CLIP, "start": "near"}], r"views\[1\]\.start='near' measures from the anchor's start"),
])
def test_bad_starts_are_named(views, message):
    with pytest.raises(ValueError, match=message):
        select_views(views, 40, True, np.random.default_rng(0))
