"""Which frames a view sees: TimeCLR's segment and interval selection, as plain numpy functions.

Both return int64 frame indices into a video of ``num_frames`` decoded frames, in temporal order.
Frame index stands for time, so videos must have a constant frame rate (the indexer flags the
others; ``timeclr.data prepare`` re-encodes them).

Segment selection (global context)
    Split the frames into K equal segments, segment k = [b_k, b_{k+1}) with b_k = floor(k·n/K),
    and take one frame from each: ``idx_k = b_k + floor(u_k · (b_{k+1} − b_k))``, with
    u_k ~ U[0, 1) drawn independently per segment in train mode and u_k = 0.5 (the segment
    centre) in eval mode. Segments never share a frame when n >= K.

Interval selection (sequence structure)
    T frames at a fixed stride s from a start t0: ``idx_j = t0 + j·s``. The span (T−1)·s + 1 must
    fit in the video. In train mode s is drawn uniformly from the configured strides and t0
    uniformly from every start that fits; in eval mode s is the first configured stride and the
    interval is centred.

Clip k of C (eval mode, multi-view testing)
    Testing averages C deterministic clips spread uniformly over the video. Clip k uses the
    fraction u = (k + 1/2)/C where eval mode otherwise uses 1/2: the frame of segment k is
    ``b_k + floor(u·(b_{k+1} − b_k))`` and the interval starts at ``floor(u·free)``, with
    ``free = n − span`` the spare frames (computed in integers: ``(2k+1)·L // (2C)``). C = 1 is
    the centre selection above, unchanged; train mode ignores k and C.

Where an interval view starts (train mode; the view's ``start``, default ``random``)
    The views of a video are drawn one after the other; a view may place itself relative to an
    earlier one, its ``anchor`` (an index into the views), so the view designs of the literature
    are config, not code. Every rule keeps the stride draw and the span above; ``free`` is the
    view's spare frames, its starts are t = 0 .. free.
    - ``random``: t uniform over 0 .. free (above; TimeCLR's interval view, independent clips).
    - ``spread`` (ρBYOL's ρ clips): the m views marked ``spread`` are spaced evenly over the video
      with one random phase u ~ U[0, 1) per video: view i of them starts at floor((i + u)/m · (free + 1)).
    - ``near`` (CVRL's temporal interval sampler): the start is drawn with a weight that falls
      linearly with its distance from the anchor's start a (an interval view):
      P(t) ∝ L + 1 − |t − a| with L = max(free, a), the farthest any start can be, so nearby
      clips are likelier but any distance can occur (L = free when both views share a stride).
    - ``overlap``: the view is centred on one of the anchor's frames, f, drawn uniformly among
      those where it fits (its frame T//2 is f: t = f − (T//2)·s, 0 <= t <= free), so the two
      views share that moment; if none fits, the start nearest the anchor's middle frame.
    Eval mode ignores ``start`` (clips are deterministic).

Short videos (stated policy, never an error)
    - segment: with num_frames < K some segments are empty and take the frame at their start,
      so frames repeat (still in order): n=3, K=6 gives [0, 0, 1, 1, 2, 2].
    - interval: if the span does not fit, the stride shrinks to the largest that fits,
      ``(num_frames − 1) // (T − 1)``; if even stride 1 does not fit (num_frames < T), the
      interval starts at 0 and the last frame repeats ("edge" padding).

The pipelines call these per sample (one vectorised call per view, no Python loop per frame) with
a generator seeded from (seed, epoch, video index), so a batch is reproducible and resumable.
"""
import numpy as np

VIEW_KINDS = ("segment", "interval")
VIEW_STARTS = ("random", "spread", "near", "overlap")


def _check(num_frames: int, count: int, what: str):
    if num_frames < 1:
        raise ValueError(f"a video needs at least 1 frame, got num_frames={num_frames}")
    if count < 1:
        raise ValueError(f"{what} must be >= 1, got {count}")


def _check_clip(clip: int, clips: int):
    if clips < 1 or not 0 <= clip < clips:
        raise ValueError(f"clip must be in [0, clips) with clips >= 1, got clip={clip}, clips={clips}")


def segment_indices(num_frames: int, num_segments: int, train: bool, rng: np.random.Generator | None = None,
                    clip: int = 0, clips: int = 1):
    """One frame from each of ``num_segments`` equal segments of the video (see module docstring);
    in eval mode, clip ``clip`` of ``clips`` (the default 0 of 1: segment centres)."""
    _check(num_frames, num_segments, "num_segments")
    bounds = np.arange(num_segments + 1, dtype=np.int64) * num_frames // num_segments  # b_0 .. b_K
    if train:
        idx = bounds[:-1] + np.floor(rng.random(num_segments) * np.diff(bounds)).astype(np.int64)
    else:
        _check_clip(clip, clips)
        idx = bounds[:-1] + (2 * clip + 1) * np.diff(bounds) // (2 * clips)  # floor(u·L), u = (k + 1/2)/C
    return np.minimum(idx, num_frames - 1)


def interval_indices(num_frames: int, num_frames_out: int, strides, train: bool,
                     rng: np.random.Generator | None = None, clip: int = 0, clips: int = 1):
    """``num_frames_out`` frames at a fixed stride from a random (train) or centred (eval) start;
    in eval mode, clip ``clip`` of ``clips`` starts are spread uniformly (0 of 1: centred)."""
    stride, free = _stride_and_free(num_frames, num_frames_out, strides, train, rng)
    if train:
        start = int(rng.integers(free + 1))
    else:
        _check_clip(clip, clips)
        start = (2 * clip + 1) * free // (2 * clips)  # floor(u·free), u = (k + 1/2)/C; C = 1: free // 2
    return _strided(start, stride, num_frames_out, num_frames)


def _stride_and_free(num_frames, num_frames_out, strides, train, rng):
    """The interval's stride (drawn in train mode, shrunk to fit) and its spare frames ``free``."""
    _check(num_frames, num_frames_out, "num_frames_out")
    strides = [int(s) for s in np.atleast_1d(strides)]
    if not strides or min(strides) < 1:
        raise ValueError(f"strides must be a non-empty list of integers >= 1, got {strides}")
    stride = strides[rng.integers(len(strides))] if train else strides[0]
    if num_frames_out > 1:
        stride = max(1, min(stride, (num_frames - 1) // (num_frames_out - 1)))
    span = (num_frames_out - 1) * stride + 1
    return stride, max(0, num_frames - span)  # free: the number of extra start positions


def _strided(start, stride, num_frames_out, num_frames):
    idx = start + stride * np.arange(num_frames_out, dtype=np.int64)
    return np.minimum(idx, num_frames - 1)


def view_indices(view, num_frames: int, train: bool, rng: np.random.Generator | None = None):
    """Indices for one view described by a config node/dict with ``kind`` 'segment' or 'interval',
    ``frames`` (K or T), for intervals ``strides``, and optionally ``clip`` / ``clips`` (eval mode:
    clip k of C; absent: 0 of 1)."""
    clip = {"clip": view.get("clip", 0), "clips": view.get("clips", 1)}
    if view["kind"] == "segment":
        return segment_indices(num_frames, view["frames"], train, rng, **clip)
    if view["kind"] == "interval":
        return interval_indices(num_frames, view["frames"], view["strides"], train, rng, **clip)
    raise ValueError(f"view kind must be 'segment' or 'interval', got {view['kind']!r}")


def select_views(views, num_frames: int, train: bool, rng: np.random.Generator | None = None) -> list:
    """Indices for every view of one video, in the views' order: ``view_indices`` per view, except
    that in train mode an interval view's ``start`` other than ``random`` places it by the rules
    in the module docstring (``anchor``: the index of an earlier view). With every start
    ``random`` (the default) this is exactly ``view_indices`` called view after view on ``rng``."""
    if not train or all(v.get("start", "random") == "random" for v in views):
        return [view_indices(v, num_frames, train, rng) for v in views]
    check_starts(views)
    spread = [i for i, v in enumerate(views) if v.get("start") == "spread"]
    phase = rng.random() if spread else 0.0  # one phase per video: the spread clips move together
    out = []
    for i, view in enumerate(views):
        start = view.get("start", "random")
        if start == "random":
            out.append(view_indices(view, num_frames, True, rng))
            continue
        frames = view["frames"]
        stride, free = _stride_and_free(num_frames, frames, view["strides"], True, rng)
        if start == "spread":
            t0 = min(free, int((spread.index(i) + phase) / len(spread) * (free + 1)))
        elif start == "near":
            a = int(out[view.get("anchor", 0)][0])  # the anchor interval's start
            # L = max(free, a) bounds every distance (t <= free, a >= 0), so each weight is >= 1
            # also when the anchor's stride differs and its start lies beyond this view's starts
            weight = (max(free, a) + 1 - np.abs(np.arange(free + 1) - a)).astype(np.float64)
            t0 = int(rng.choice(free + 1, p=weight / weight.sum()))
        else:  # overlap: frame T//2 of this view is one of the anchor's frames
            anchor = out[view.get("anchor", 0)]
            t = anchor - (frames // 2) * stride
            fits = t[(t >= 0) & (t <= free)]
            if fits.size:
                t0 = int(fits[rng.integers(fits.size)])
            else:
                t0 = int(np.clip(anchor[len(anchor) // 2] - (frames // 2) * stride, 0, free))
        out.append(_strided(t0, stride, frames, num_frames))
    return out


def check_starts(views):
    """Raise ValueError naming the view when a ``start`` / ``anchor`` pair cannot be followed."""
    for i, view in enumerate(views):
        start = view.get("start", "random")
        if start not in VIEW_STARTS:
            raise ValueError(f"views[{i}].start must be one of {VIEW_STARTS}, got {start!r}")
        if start == "random":
            continue
        if view["kind"] != "interval":
            raise ValueError(f"views[{i}].start={start!r} places an interval view; this view is a {view['kind']} view")
        if start in ("near", "overlap"):
            anchor = view.get("anchor", 0)
            if not isinstance(anchor, int) or not 0 <= anchor < i:
                raise ValueError(f"views[{i}].anchor must name an earlier view (0 .. {i - 1}), got {anchor!r}")
            if start == "near" and views[anchor]["kind"] != "interval":
                raise ValueError(f"views[{i}].start='near' measures from the anchor's start: views[{anchor}] "
                                 f"must be an interval view, not a {views[anchor]['kind']} view")
