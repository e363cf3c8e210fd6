"""One video of the synthetic set ``v2``: four groups of classes, each testing one thing a view
can or cannot carry (``v1``, ``timeclr.synthetic.render``, is kept as it was, with its numbers).

    group    label  folder                  what tells the classes apart (and nothing else does)
    fast     0      0_fast_drift_left       stripes inside the resting object drift left, fast
             1      1_fast_drift_right      ... drift right
    order    2      2_order_dark_bright     the object goes dark for a moment early in the
                                            video and bright late
             3      3_order_bright_dark     ... bright early, dark late
    both     4      4_burst_left_early      the stripes drift fast (left) in a burst over the
                                            first ~60 % of the video and rest after
             5      5_burst_right_early     ... right, first ~60 %
             6      6_burst_left_late       ... left, last ~60 % (resting before)
             7      7_burst_right_late      ... right, last ~60 %
    slow     8-13   v1's six slow motions   left/right travel, clockwise/counter-clockwise
                                            turn, grow/shrink over most of the video

Why each group needs the view it is meant to need (32 frames; views of 8 frames; the eval
segment clip takes every 4th frame, 2, 6, ..., 30; the eval interval clip frames 12-19)
    fast    The drift is ``v`` stripe periods per frame, ``v`` uniform in [0.15, 0.22] or [0.28,
            0.35] (``SPEEDS``): consecutive frames show the direction (a shift under half a
            period). Frames 4 apart shift by 4v periods, which looks like 4v - 1: backward for
            the slow band, forward for the fast one, at least 0.12 of a period either way, so
            sparse frames see the stripes move but cannot tell which way, and random segment
            frames (1-7 apart) even less. The stripes' start phase is random.
    order   Each event fills one of the 8 segments that segment selection cuts (so every
            segment clip, random or eval, holds a frame of each): segment 2 (frames 8-11) and
            segment 5 (20-23). Eight frames lie between them, so no clip of 8 consecutive frames
            holds both: a short clip sees one event and cannot know whether it came first. Both
            events lie at least 7 frames from the video's ends, so a clip of 8 consecutive frames
            can hold either anywhere in it: where the event sits in the clip does not give away
            where it sits in the video (with events in the first or last segment it did, and
            dense clips learnt the order from that: 67 % where 50 % was meant). Dark and bright
            each occur once in both classes.
    both    The stripes drift for 20 frames from frame s, s in 0-2 (early) or 11-12 (late), and
            rest otherwise: the eval interval clip (frames 12-19) always lies inside the burst
            and sees its direction but not its place; a segment clip sees where the stripes move
            (its place) but not which way (aliased as in ``fast``). Only the two together name
            the class.
    slow    v1's motions (``render.sample_params``), the object without stripes; scored as a pair
            per kind of motion (``pipelines/synthetic_v2.yaml``'s ``eval.groups`` name the groups).

Shared by every class: the look of v1 (small palettes of object and background colours, a fixed
texture, three shapes, a bouncing distractor disc), the object's size, place and angle drawn at
random, so no frame and no appearance tells a class within its group. The stripe groups' object
rests; its stripes are vertical, ``STRIPE_PERIOD`` pixels apart at size 64 (scaled with size).

A video is a pure function of ``(seed, split, label, index)`` and the parameters (``make_sample``).
"""
import numpy as np

from timeclr.synthetic import render as v1

SLOW = v1.CLASSES[:6]  # v1's motions; its flash classes are replaced by the order group
CLASSES = (
    "0_fast_drift_left", "1_fast_drift_right", "2_order_dark_bright", "3_order_bright_dark",
    "4_burst_left_early", "5_burst_right_early", "6_burst_left_late", "7_burst_right_late",
    *(f"{8 + k}_{name.split('_', 1)[1]}" for k, name in enumerate(SLOW)),
)
DESCRIPTIONS = {
    CLASSES[0]: "stripes in the resting object drift left, faster than sparse frames can follow",
    CLASSES[1]: "stripes in the resting object drift right, faster than sparse frames can follow",
    CLASSES[2]: "the object goes dark early in the video and bright late",
    CLASSES[3]: "the object goes bright early in the video and dark late",
    CLASSES[4]: "a burst of fast leftward stripe drift over the first ~60 % of the video",
    CLASSES[5]: "a burst of fast rightward stripe drift over the first ~60 % of the video",
    CLASSES[6]: "a burst of fast leftward stripe drift over the last ~60 % of the video",
    CLASSES[7]: "a burst of fast rightward stripe drift over the last ~60 % of the video",
    **{CLASSES[8 + k]: v1.DESCRIPTIONS[name] for k, name in enumerate(SLOW)},
}
SPLITS = v1.SPLITS
VERSION = 4  # bump when v2's rendering changes

# stripe drift, periods per frame: one of two bands symmetric about 1/4, so frames 4 apart alias
# both ways (4v - 1 in -0.4..-0.12 or 0.12..0.4) and never to a standstill (4v near 1)
SPEEDS = ((0.15, 0.22), (0.28, 0.35))
STRIPE_PERIOD = 6.0  # pixels at size 64
STRIPE_DEPTH = 0.6  # darkest stripe: colour * (1 - STRIPE_DEPTH)
DARK = 0.3  # the dark event: colour * DARK
BRIGHT = 0.65  # the bright event: this fraction of white mixed in
BURST = 20  # frames of a burst at 32 frames (scaled with frames)


def _rng(seed: int, split: str, label: int, index: int) -> np.random.Generator:
    # the 2 keeps v2's streams apart from v1's (whose key has no set number) for the same seed
    return np.random.default_rng(np.random.SeedSequence([seed, SPLITS.index(split), label, index, 2, VERSION]))


def sample_params(label: int, frames: int, size: int, rng: np.random.Generator) -> dict:
    """Draw one video of class ``label`` (v1's per-frame ground truth, plus ``phase``: the stripes'
    phase per frame in periods, None without stripes; ``event``: per frame -1 dark, +1 bright, 0)."""
    if not 0 <= label < len(CLASSES):
        raise ValueError(f"label must be in 0..{len(CLASSES) - 1}, got {label}")
    if label >= 8:  # a slow motion: v1's draw, renamed
        p = v1.sample_params(label - 8, frames, size, rng)
        p.update(label=label, class_name=CLASSES[label], phase=None, event=np.zeros(frames, np.int8))
        return p
    # the resting object of v1's flash classes (their draw, without the flash), then this class
    p = v1.sample_params(6, frames, size, rng)
    p.update(label=label, class_name=CLASSES[label], flash=np.zeros(frames, bool), motion_window=None)
    event = np.zeros(frames, np.int8)
    velocity = np.zeros(frames)  # periods per frame, + = right
    speed = rng.uniform(*SPEEDS[rng.integers(len(SPEEDS))])
    if label < 2:
        velocity[:] = speed if label == 1 else -speed
    elif label < 4:
        # each event fills one of 8 equal segments (as segment selection cuts them), segments 2
        # and 5: every segment clip holds a frame of each (see the module docstring)
        bounds = np.arange(9) * frames // 8
        first, last = 2, 5
        early, late = (-1, 1) if label == 2 else (1, -1)
        event[bounds[first]:bounds[first + 1]] = early
        event[bounds[last]:bounds[last + 1]] = late
    else:
        burst = round(BURST * frames / 32)
        # velocity[f] moves the stripes from frame f - 1 to f: an early burst starts at 0-2, a late
        # one at 11-12 (32 frames), so it never moves them before frame 10, the eval segment clip's third
        start = int(rng.integers(0, 3)) if label in (4, 5) else frames - burst - int(rng.integers(0, 2))
        velocity[start:start + burst] = speed if label in (5, 7) else -speed
    phase = None
    if label < 2 or label >= 4:
        # phase[f] = phase0 + sum of the drift up to frame f (the drift between f-1 and f is velocity[f])
        phase = rng.uniform(0, 1) + np.cumsum(np.concatenate([[0.0], velocity[1:]]))
    p.update(phase=phase, event=event, speed=speed if phase is not None else 0.0)
    return p


def object_colour(p: dict) -> np.ndarray:
    """(frames, 1, 1 or size, 3) float32: the object's colour at every frame (and pixel column,
    with stripes: they vary along x only), before it is composited."""
    colour = p["colour"].astype(np.float32)
    frames, size = p["frames"], p["size"]
    if p["phase"] is None:
        c = np.broadcast_to(colour, (frames, 1, 1, 3)).copy()
    else:
        period = STRIPE_PERIOD * size / 64
        x = (np.arange(size) + 0.5) / period
        wave = 0.5 + 0.5 * np.cos(2 * np.pi * (x[None, :] - p["phase"][:, None]))  # (F, W), 1 = bright stripe
        shade = (1 - STRIPE_DEPTH * (1 - wave)).astype(np.float32)
        c = shade[:, None, :, None] * colour  # (F, 1, W, 3)
    event = p["event"][:, None, None, None]
    c = np.where(event < 0, c * DARK, c)
    return np.where(event > 0, c * (1 - BRIGHT) + 255 * BRIGHT, c).astype(np.float32)


def render(p: dict) -> np.ndarray:
    """The video of ``sample_params``' output: (frames, size, size, 3) uint8 RGB (v1's compositing,
    with the object coloured by ``object_colour``)."""
    return v1.render(p, object_colour(p))


def make_sample(seed: int, split: str, label: int, index: int, frames: int = 32, size: int = 64):
    """(frames uint8 (F, H, W, 3), params with ground truth) of video ``index`` of class ``label``."""
    p = sample_params(label, frames, size, _rng(seed, split, label, index))
    return render(p), p

