"""Segment and interval selection: the documented semantics, checked on many random videos."""
import math

import numpy as np
import pytest

from timeclr.pipelines.loader.frame_selection import interval_indices, segment_indices, view_indices


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
