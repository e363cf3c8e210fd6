"""Per-view augmentation parameters, drawn in numpy and applied by DALI.

Drawing the parameters here (per sample, from the same seeded generator as the frame selection)
instead of with DALI's random operators makes every batch a pure function of
(seed, epoch, video): a resumed run sees exactly the augmentations the uninterrupted run would
have seen, and the tests can check the parameters themselves.

One view's parameters are a float32 vector ``PARAMS`` long, applied to all frames of the view:

    [0:4]  crop box (y0, x0, y1, x1), relative to the frame (random resized crop)
    [4]    1.0 to flip horizontally, else 0.0
    [5:9]  colour twist: brightness, contrast, saturation factors; hue shift in degrees
    [9]    Gaussian blur sigma in pixels (0: no blur)
"""
import math

import numpy as np

PARAMS = 10
IDENTITY = np.array([0, 0, 1, 1, 0, 1, 1, 1, 0, 0], np.float32)


def random_resized_crop_box(rng, height: int, width: int, scale, ratio):
    """(y0, x0, y1, x1) in pixels of a crop covering a random fraction ``scale`` of the frame's
    area with aspect ratio (w/h) log-uniform in ``ratio``; torchvision's RandomResizedCrop rule,
    including its fallback to a centre crop after 10 misses."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            y0 = int(rng.integers(0, height - h + 1))
            x0 = int(rng.integers(0, width - w + 1))
            return y0, x0, y0 + h, x0 + w
    in_ratio = width / height  # fallback: the largest centre crop with a ratio inside the range
    if in_ratio < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        h, w = height, int(round(height * ratio[1]))
    else:
        w, h = width, height
    y0, x0 = (height - h) // 2, (width - w) // 2
    return y0, x0, y0 + h, x0 + w


def view_params(view, height: int, width: int, rng) -> np.ndarray:
    """Draw one view's augmentation parameters (see the module docstring for the layout)."""
    p = IDENTITY.copy()
    y0, x0, y1, x1 = random_resized_crop_box(rng, height, width, view["scale"], view["ratio"])
    p[0:4] = (y0 / height, x0 / width, y1 / height, x1 / width)
    p[4] = float(rng.random() < view["flip_prob"])
    if rng.random() < view["jitter_prob"]:
        for i, strength in enumerate((view["brightness"], view["contrast"], view["saturation"])):
            p[5 + i] = rng.uniform(max(0.0, 1.0 - strength), 1.0 + strength)
        p[8] = rng.uniform(-180.0 * view["hue"], 180.0 * view["hue"])
    if rng.random() < view["grayscale_prob"]:
        p[7] = 0.0
    if rng.random() < view["blur_prob"]:
        p[9] = rng.uniform(*view["blur_sigma"])
    return p
