"""Augmentation parameters: torchvision's random-resized-crop rule and the documented layout."""
import numpy as np

from omegaconf import OmegaConf

from timeclr.config import ViewConfig
from timeclr.pipelines.loader.augment import IDENTITY, PARAMS, random_resized_crop_box, view_params


def test_crop_box_area_and_ratio_within_range():
    rng = np.random.default_rng(0)
    for _ in range(2000):
        h, w = int(rng.integers(16, 400)), int(rng.integers(16, 400))
        y0, x0, y1, x1 = random_resized_crop_box(rng, h, w, (0.2, 1.0), (3 / 4, 4 / 3))
        assert 0 <= y0 < y1 <= h and 0 <= x0 < x1 <= w, (h, w, y0, x0, y1, x1)
        area, ratio = (y1 - y0) * (x1 - x0) / (h * w), (x1 - x0) / (y1 - y0)
        if max(h / w, w / h) > 2:  # long strips may take the centre-crop fallback (tested below)
            continue
        # rounding to whole pixels moves area and ratio a little at small sizes
        assert 0.2 * 0.8 <= area <= 1.0, (h, w, area)
        assert 0.75 * 0.85 <= ratio <= 4 / 3 * 1.15, (h, w, ratio)


def test_crop_box_falls_back_to_centre_crop():
    rng = np.random.default_rng(1)
    # a 1000x10 strip cannot hold a 3/4..4/3 crop of 20%+ of its area: centre crop, ratio clamped
    y0, x0, y1, x1 = random_resized_crop_box(rng, 1000, 10, (0.5, 1.0), (3 / 4, 4 / 3))
    assert (x0, x1) == (0, 10) and y1 - y0 == 13 and y0 == (1000 - 13) // 2


def test_view_params_layout_and_probabilities():
    rng = np.random.default_rng(2)
    view = OmegaConf.structured(ViewConfig(flip_prob=0.5, jitter_prob=0.8, grayscale_prob=0.2, blur_prob=0.5))
    p = np.stack([view_params(view, 128, 170, rng) for _ in range(4000)])
    assert p.shape == (4000, PARAMS) and p.dtype == np.float32
    assert ((p[:, 0] < p[:, 2]) & (p[:, 1] < p[:, 3])).all() and p[:, :4].min() >= 0 and p[:, :4].max() <= 1
    assert abs(p[:, 4].mean() - 0.5) < 0.04  # flip
    jittered = p[:, 5] != 1.0
    assert abs(jittered.mean() - 0.8) < 0.04
    assert p[jittered, 5].min() >= 0.6 and p[jittered, 5].max() <= 1.4 and np.abs(p[:, 8]).max() <= 18.0
    assert abs((p[:, 7] == 0).mean() - 0.2) < 0.04  # grayscale: saturation 0
    assert abs((p[:, 9] > 0).mean() - 0.5) < 0.04 and p[:, 9].max() <= 2.0  # blur sigma
    off = OmegaConf.structured(ViewConfig(flip_prob=0, jitter_prob=0, grayscale_prob=0, blur_prob=0,
                                          scale=[1.0, 1.0], ratio=[170 / 128] * 2))
    assert np.allclose(view_params(off, 128, 170, rng), IDENTITY, atol=1e-2)
