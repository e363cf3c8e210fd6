"""Frames that say their own index: the test pattern of the frame-exactness checks.

Frame i shows the binary digits of i as BITS vertical stripes (white = 1, black = 0, most
significant bit on the left), wide enough to survive lossy codecs, so a decoded frame tells which
source frame it is: ``read_frame_index(decoded_rgb)``. The tests' videos and the GPU decode probe
(``benchmarks/gpu_decode_probe.py``) are made of them.
"""
import numpy as np

BITS = 10  # up to 1024 frames


def frame_index_image(i: int, width: int = 80, height: int = 48, bits: int = BITS) -> np.ndarray:
    """(height, width, 3) uint8 RGB frame showing the index i as stripes."""
    if not 0 <= i < 2 ** bits:
        raise ValueError(f"frame index {i} does not fit in {bits} bits")
    stripe = width // bits
    img = np.zeros((height, width, 3), np.uint8)
    left = (width - stripe * bits) // 2  # stripes centred, so a centre crop of the frame keeps them
    for b in range(bits):
        if (i >> (bits - 1 - b)) & 1:
            img[:, left + b * stripe:left + (b + 1) * stripe] = 255
    return img


def read_frame_index(img: np.ndarray, bits: int = BITS, stripe: int | None = None) -> int:
    """Inverse of frame_index_image for a decoded (H, W, 3) frame, or a centre crop of one that
    keeps the stripes, with ``stripe`` their width in pixels (default: the widest that fits)."""
    stripe = stripe or img.shape[1] // bits
    left = (img.shape[1] - stripe * bits) // 2
    centres = img[:, left + stripe // 2::stripe][:, :bits].astype(np.float32).mean(axis=(0, 2))
    return int(sum(1 << (bits - 1 - b) for b, v in enumerate(centres) if v > 127))
