"""Segment and interval selection: the documented semantics, checked on many random videos."""
import numpy as np
import pytest

from timeclr.pipelines.frame_selection import interval_indices, segment_indices, view_indices


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
