"""One video of the embedded synthetic dataset: its random draw and its frames.

8 classes defined by motion over time, not by appearance (the folder of videos, its manifests and
DONE.json are ``timeclr.synthetic.dataset``'s job). Every video shows one object on a textured
background; what the object *does* over the video is the class, and everything a single frame
shows is randomised so that no frame on its own tells the class:

    label  folder                       what happens over the video
    0      0_left_to_right              the object travels to the right (35-55 % of the width)
    1      1_right_to_left              the object travels to the left (35-55 % of the width)
    2      2_rotate_clockwise           the object turns clockwise on screen (120-240 degrees)
    3      3_rotate_counterclockwise    the object turns counter-clockwise (120-240 degrees)
    4      4_grow                       the object grows (x1.8 to x2.4 in size)
    5      5_shrink                     the object shrinks (the same factors)
    6      6_flash_first_half           the whole frame flashes white for frames//4 frames,
                                        all within the first half of the video
    7      7_flash_second_half          ... all within the second half

Why single frames do not tell the class
    - Every video draws its shape (one of the first ``SHAPES_USED`` of ``SHAPES``, none
      rotation-symmetric, so a turn is visible), object colour (``PALETTE``), background colour
      (``BACKGROUNDS``) and texture (``TEXTURES``), size, position and start angle at random.
      The palettes are small on purpose: many videos share a look, so contrastive pretraining,
      which must tell every video from every other, has to use what the object does (with a
      unique look per video it learns the look, and its kNN accuracy matched random init). Only the class's own quantity changes over time: translation classes
      do not turn or resize, rotation classes do not move or resize, and so on; in the flash
      classes the object stands still.
    - Left/right: the path is 35-55 % of the width long and lies anywhere inside the central
      70 %, so both classes put the object on both halves of the frame; the per-frame position
      distribution of one class is the mirror of the other's, which (by the time symmetry of
      the motion window below) is the same distribution.
    - Grow/shrink: the sizes run over the same range (radius 12-30 % of the frame side) in both,
      one forwards, one backwards in time; the static classes draw their size from that range too.
    - Rotation: the start angle is uniform, so a single frame's orientation says nothing.
    - Flash: a flash frame looks the same in both classes; only *when* it happens differs.
    - The motion starts after a random delay of up to 25 % of the video and ends 0-25 % before
      its end (a "motion window"), so the object also rests for a while in most videos;
      segment views (spread over the whole video) and most interval views still see it move.
    - A distractor (a small disc, which carries no rotation) bounces around the frame in a random
      direction at a random speed in every video, so "something moves horizontally" alone is not
      the class.

Time is normalised (t = frame / (frames - 1)), so a 16-frame video shows the same motion as a
32-frame one, in fewer, larger steps.

A video is a pure function of ``(seed, split, label, index)`` and the parameters (``make_sample``);
``VERSION`` enters its random seed, so a change to the rendering is a new dataset.
"""
import math

import numpy as np

CLASSES = (
    "0_left_to_right", "1_right_to_left", "2_rotate_clockwise", "3_rotate_counterclockwise",
    "4_grow", "5_shrink", "6_flash_first_half", "7_flash_second_half",
)
DESCRIPTIONS = {
    "0_left_to_right": "the object travels to the right",
    "1_right_to_left": "the object travels to the left",
    "2_rotate_clockwise": "the object turns clockwise (on screen)",
    "3_rotate_counterclockwise": "the object turns counter-clockwise (on screen)",
    "4_grow": "the object grows",
    "5_shrink": "the object shrinks",
    "6_flash_first_half": "the frame flashes white, within the first half of the video",
    "7_flash_second_half": "the frame flashes white, within the second half of the video",
}
SPLITS = ("train", "test")
VERSION = 3  # bump when the rendering changes: DONE.json of an older dataset then mismatches
SUPERSAMPLE = 2  # anti-aliasing: shapes are rasterised at 2x and averaged down

# Ranges, as fractions of the frame side (lengths) or plain numbers.
POSITION = (0.15, 0.85)  # object centre x; y uses Y_POSITION
Y_POSITION = (0.2, 0.8)
TRAVEL = (0.35, 0.55)  # translation classes: path length
RADIUS = (0.12, 0.30)  # object radius (its farthest point from its centroid)
GROWTH = (1.8, 2.4)  # grow/shrink: size ratio from start to end
TURN = (120.0, 240.0)  # rotation classes: degrees over the motion window
DELAY = 0.25  # the motion window starts in [0, DELAY] and ends in [1 - DELAY, 1] (normalised time)
FLASH_MIX = 0.7  # flash frames: this fraction of white mixed in
DISTRACTOR_RADIUS = (0.04, 0.07)
DISTRACTOR_SPEED = (0.3, 1.0)  # frame sides per video
MIN_COLOUR_DISTANCE = 110.0  # RGB distance between the object's and the background's colour
MIN_LUMA_DISTANCE = 45.0  # and in luma, so the object stays visible in grayscale too
# Appearance comes from small palettes, so that many videos share a look: telling one video from
# every other (what contrastive pretraining asks) then needs what it does, not only how it looks.
PALETTE = np.array([[230, 60, 50], [60, 90, 230], [240, 220, 60]], float)
BACKGROUNDS = np.array([[70, 90, 110], [150, 130, 90]], float)
TEXTURES = 1  # fixed low-frequency texture patterns
SHAPES_USED = 3  # of SHAPE_NAMES


def _shape(*parts):
    """A shape: the union of disjoint convex polygons (x right, y down), centred on its area
    centroid, scaled so its farthest vertex is at distance 1, vertices counter-clockwise in
    (x, y) coordinates (so 'inside' is the positive side of every edge)."""
    parts = [np.asarray(p, np.float64) for p in parts]
    areas, centroids = [], []
    for p in parts:
        x, y = p[:, 0], p[:, 1]
        cross = x * np.roll(y, -1) - np.roll(x, -1) * y
        a = cross.sum() / 2
        areas.append(abs(a))
        centroids.append([((x + np.roll(x, -1)) * cross).sum() / (6 * a),
                          ((y + np.roll(y, -1)) * cross).sum() / (6 * a)])
        if a < 0:
            p[:] = p[::-1]
    centre = np.average(centroids, axis=0, weights=areas)
    parts = [p - centre for p in parts]
    scale = max(np.hypot(p[:, 0], p[:, 1]).max() for p in parts)
    return tuple(p / scale for p in parts)


# None of these looks the same after any turn short of 360 degrees.
SHAPES = {
    "triangle": _shape([(-0.8, 0.6), (0.9, 0.5), (-0.3, -0.9)]),  # scalene
    "L": _shape([(-0.7, -0.9), (-0.2, -0.9), (-0.2, 0.9), (-0.7, 0.9)],
                [(-0.2, 0.4), (0.8, 0.4), (0.8, 0.9), (-0.2, 0.9)]),
    "arrow": _shape([(-0.9, -0.2), (0.2, -0.2), (0.2, 0.2), (-0.9, 0.2)],
                    [(0.2, -0.6), (0.95, 0.0), (0.2, 0.6)]),
    "T": _shape([(-0.8, -0.8), (0.8, -0.8), (0.8, -0.4), (-0.8, -0.4)],
                [(-0.2, -0.4), (0.2, -0.4), (0.2, 0.9), (-0.2, 0.9)]),
    "flag": _shape([(-0.6, -0.9), (-0.35, -0.9), (-0.35, 0.9), (-0.6, 0.9)],
                   [(-0.35, -0.9), (0.7, -0.55), (-0.35, -0.2)]),
}
SHAPE_NAMES = tuple(SHAPES)


# ----------------------------------------------------------------------------------------------
# Sampling and rendering one video

def _rng(seed: int, split: str, label: int, index: int) -> np.random.Generator:
    """The generator of one video: its own stream, so videos render in any order, in any process."""
    return np.random.default_rng(np.random.SeedSequence([seed, SPLITS.index(split), label, index, VERSION]))


def _luma(rgb):
    return 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]


def _object_colour(rng, background):
    for c in PALETTE[rng.permutation(len(PALETTE))]:
        if (np.linalg.norm(c - background) >= MIN_COLOUR_DISTANCE
                and abs(_luma(c) - _luma(background)) >= MIN_LUMA_DISTANCE):
            return c
    return np.where(background < 128, 255.0, 0.0)  # no palette colour stands out enough


def sample_params(label: int, frames: int, size: int, rng: np.random.Generator) -> dict:
    """Draw one video of class ``label``: every random choice and the per-frame ground truth.

    Per-frame arrays (length ``frames``): ``cx, cy`` object centroid in pixels (x right, y down,
    pixel i spans [i, i + 1)), ``angle`` in degrees clockwise on screen, ``radius`` in pixels,
    ``flash`` (bool), ``dx, dy`` the distractor's centre. ``progress`` is the motion's progress
    (0 to 1) for the motion classes, 0 for the flash classes.
    """
    if not 0 <= label < len(CLASSES):
        raise ValueError(f"label must be in 0..{len(CLASSES) - 1}, got {label}")
    name = CLASSES[label]
    t = np.arange(frames) / max(frames - 1, 1)
    start = rng.uniform(0, DELAY)
    end = rng.uniform(1 - DELAY, 1)
    progress = np.clip((t - start) / (end - start), 0.0, 1.0)

    background = BACKGROUNDS[rng.integers(len(BACKGROUNDS))]
    p = {
        "label": label, "class_name": name, "frames": frames, "size": size,
        "shape": SHAPE_NAMES[rng.integers(SHAPES_USED)],
        "background": background,
        # low-frequency: one of TEXTURES fixed 4x4 grids, bilinearly upsampled
        "texture": np.random.default_rng(1000 + int(rng.integers(TEXTURES))).normal(0, 22, (3, 4, 4)),
        "colour": _object_colour(rng, background),
        "motion_window": (start, end),
    }
    lo, hi = POSITION[0] * size, POSITION[1] * size
    cx = np.full(frames, rng.uniform(lo, hi))
    cy = np.full(frames, rng.uniform(*Y_POSITION) * size)
    angle = np.full(frames, rng.uniform(0, 360))
    radius = np.full(frames, math.exp(rng.uniform(*np.log(RADIUS))) * size)
    flash = np.zeros(frames, bool)

    if name in ("0_left_to_right", "1_right_to_left"):
        travel = rng.uniform(*TRAVEL) * size
        x0 = rng.uniform(lo, hi - travel)  # the path's left end
        cx = x0 + travel * (progress if label == 0 else 1 - progress)
    elif name in ("2_rotate_clockwise", "3_rotate_counterclockwise"):
        turn = rng.uniform(*TURN)
        angle = angle + (turn if label == 2 else -turn) * progress
    elif name in ("4_grow", "5_shrink"):
        ratio = rng.uniform(*GROWTH)
        small = math.exp(rng.uniform(math.log(RADIUS[0]), math.log(RADIUS[1] / ratio))) * size
        exponent = progress if label == 4 else 1 - progress
        radius = small * ratio ** exponent
    else:  # flash classes: the object rests, the frame flashes for frames // 4 frames
        length = max(1, frames // 4)
        half = frames // 2
        first = rng.integers(0, half - length + 1) if label == 6 else rng.integers(half, frames - length + 1)
        flash[first:first + length] = True
        progress = np.zeros(frames)

    # Distractor: a small disc bouncing off the frame's edges in a straight line.
    d_radius = rng.uniform(*DISTRACTOR_RADIUS) * size
    heading = rng.uniform(0, 2 * np.pi)
    speed = rng.uniform(*DISTRACTOR_SPEED) * size
    d0 = rng.uniform(d_radius, size - d_radius, 2)
    p.update(cx=cx, cy=cy, angle=angle, radius=radius, flash=flash, progress=progress,
             distractor_radius=d_radius,
             distractor_colour=_object_colour(rng, background),
             dx=_bounce(d0[0] + speed * np.cos(heading) * t, d_radius, size - d_radius),
             dy=_bounce(d0[1] + speed * np.sin(heading) * t, d_radius, size - d_radius))
    return p


def _bounce(x, lo, hi):
    """Fold a straight path into [lo, hi] (reflections at both ends)."""
    span = hi - lo
    u = np.mod(x - lo, 2 * span)
    return lo + span - np.abs(u - span)


def _upsample_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) bilinear interpolation from n_in grid points spanning the frame."""
    pos = (np.arange(n_out) + 0.5) / n_out * (n_in - 1)
    return np.stack([np.interp(pos, np.arange(n_in), np.eye(n_in)[j]) for j in range(n_in)], axis=1)


def background_image(p: dict) -> np.ndarray:
    """The static background: (size, size, 3) float, colour plus low-frequency texture."""
    m = _upsample_matrix(p["texture"].shape[1], p["size"])
    texture = np.einsum("ij,cjk,lk->ilc", m, p["texture"], m)
    return p["background"] + texture


def _coverage(p: dict, cx, cy, reach, inside) -> np.ndarray:
    """(frames, size, size) float32 coverage of a shape centred at per-frame (cx, cy) that lies
    within ``reach`` pixels of its centre: ``inside(dx, dy)`` says which sub-pixel offsets from
    the centre (arrays (F, 1, w) and (F, h, 1), float32) it covers. Only the box the shape can
    reach over the whole video is rasterised (at SUPERSAMPLE x SUPERSAMPLE points per pixel)."""
    size, frames = p["size"], p["frames"]
    cx, cy, reach = (np.asarray(a, np.float32) for a in (cx, cy, reach))
    box = [int(np.clip(np.floor(np.min(c - reach)), 0, size)) for c in (cx, cy)]
    box += [int(np.clip(np.ceil(np.max(c + reach)), 0, size)) for c in (cx, cy)]
    x0, y0, x1, y1 = box
    out = np.zeros((frames, size, size), np.float32)
    if x1 <= x0 or y1 <= y0:
        return out
    def centres(lo, hi):  # sub-pixel centres of pixels lo..hi-1, in pixels
        return ((np.arange(lo * SUPERSAMPLE, hi * SUPERSAMPLE) + 0.5) / SUPERSAMPLE).astype(np.float32)

    dx = centres(x0, x1)[None, None, :] - cx[:, None, None]
    dy = centres(y0, y1)[None, :, None] - cy[:, None, None]
    mask = inside(dx, dy)
    out[:, y0:y1, x0:x1] = mask.reshape(frames, y1 - y0, SUPERSAMPLE, x1 - x0, SUPERSAMPLE).mean(
        axis=(2, 4), dtype=np.float32)
    return out


def object_alpha(p: dict) -> np.ndarray:
    """(frames, size, size) float32 coverage of the object, in [0, 1]."""
    theta = np.radians(np.asarray(p["angle"], np.float64))[:, None, None]
    cos, sin = np.cos(theta).astype(np.float32), np.sin(theta).astype(np.float32)
    inv_r = (1 / np.asarray(p["radius"], np.float64)).astype(np.float32)[:, None, None]

    def inside(dx, dy):
        # Screen = centre + r * R(angle) @ local, R turning clockwise on screen (y points down).
        u = (dx * cos + dy * sin) * inv_r
        v = (dy * cos - dx * sin) * inv_r
        covered = None
        for poly in SHAPES[p["shape"]]:
            part = None
            for (ax, ay), (bx, by) in zip(poly, np.roll(poly, -1, axis=0)):
                edge = np.float32(bx - ax) * (v - np.float32(ay)) - np.float32(by - ay) * (u - np.float32(ax)) >= 0
                part = edge if part is None else part & edge
            covered = part if covered is None else covered | part
        return covered

    return _coverage(p, p["cx"], p["cy"], np.asarray(p["radius"]) + 1, inside)


def distractor_alpha(p: dict) -> np.ndarray:
    """(frames, size, size) float32 coverage of the distractor disc."""
    r2 = np.float32(p["distractor_radius"] ** 2)
    return _coverage(p, p["dx"], p["dy"], p["distractor_radius"] + 1, lambda dx, dy: dx * dx + dy * dy <= r2)


def render(p: dict, object_colour: np.ndarray | None = None) -> np.ndarray:
    """The video of ``sample_params``' output: (frames, size, size, 3) uint8 RGB. ``object_colour``:
    the object's colour per frame and pixel, float32 broadcasting to (frames, size, size, 3)
    (v2's stripes and events, ``timeclr.synthetic.render_v2``); default ``p["colour"]`` throughout."""
    img = np.broadcast_to(background_image(p).astype(np.float32), (p["frames"], p["size"], p["size"], 3))
    a = distractor_alpha(p)[..., None]
    img = img * (1 - a) + a * p["distractor_colour"].astype(np.float32)  # under the object
    a = object_alpha(p)[..., None]
    img = img * (1 - a) + a * (p["colour"].astype(np.float32) if object_colour is None else object_colour)
    img[p["flash"]] = img[p["flash"]] * (1 - FLASH_MIX) + 255 * FLASH_MIX
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def make_sample(seed: int, split: str, label: int, index: int, frames: int = 32, size: int = 64):
    """(frames uint8 (F, H, W, 3), params with ground truth) of video ``index`` of class ``label``
    in ``split``: exactly what the dataset file holds, before encoding."""
    p = sample_params(label, frames, size, _rng(seed, split, label, index))
    return render(p), p
