"""The DALI pipeline on CPU, on generated videos whose frames show their own index, in each
storage: VP9 files (GOP 12, trimmed to the GOPs needed) and frame archives (JPEG per frame).

References are independent of DALI: PyAV's decode of the same frames, and the numpy selection
functions (the oracle for which frames each view should show).
"""
import os

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from timeclr.config import load_config
from timeclr.pipelines.loader.clip_source import Video
from timeclr.pipelines.loader.frame_selection import select_views
from timeclr.pipelines.loader.video import VideoLoader
from tests.helpers.videos import decode_all, make_archive, make_video, read_frame_index

W, H = 80, 80  # frame size of the generated videos: square, so a full-height centre crop keeps every index stripe


@pytest.fixture(scope="module", params=["vp9", "jpeg"])
def videos(tmp_path_factory, request):
    """9 videos of 3 classes, 20 to 90 frames: VP9 with a keyframe every 12 frames, or frame
    archives (the manifest's codec 'jpeg')."""
    root = tmp_path_factory.mktemp("videos")
    out = []
    for i, n in enumerate([20, 35, 50, 61, 90, 24, 47, 33, 70]):
        if request.param == "jpeg":
            path = make_archive(root / f"v{i}.tar", n, width=W, height=H)
        else:
            path = make_video(root / f"v{i}.webm", n, width=W, height=H, gop=12)
        out.append(Video(path, label=i % 3, num_frames=n, codec=request.param))
    return out


def data_config(*overrides):
    cfg = load_config("pipelines/debug.yaml", ["data.manifest=unused", *overrides])
    return cfg.data


def one_epoch(loader):
    return list(iter(loader))


def test_decoded_frames_match_pyav_at_selected_indices(videos):
    """augment=false, crop = frame height, short side = frame height: exactly the decoded frames."""
    data = data_config("data.augment=false", f"data.short_side={H}", f"data.views.0.crop_size={H}",
                       f"data.views.1.crop_size={H}")
    loader = VideoLoader(data, videos, uint8=True)
    checked = 0
    for batch in one_epoch(loader):
        for b, index in enumerate(batch["index"].tolist()):
            reference = decode_all(videos[index].path)  # (F, H, W, 3) by PyAV
            for view, frames in zip(batch["views"], batch["frame_indices"]):
                got = view[b].numpy()  # (T, H, H, 3): centre crop of the W-wide frame
                want = reference[frames[b].numpy()][:, :, (W - H) // 2:(W - H) // 2 + H]
                diff = np.abs(got.astype(int) - want.astype(int))
                assert diff.mean() < 1.0 and diff.max() <= 24, (
                    f"video {index} frames {frames[b].tolist()}: DALI vs PyAV mean |diff| {diff.mean():.2f}, "
                    f"max {diff.max()}")
                checked += 1
    assert checked == 2 * len(videos)


@pytest.mark.parametrize("start", ["random", "overlap"])
def test_views_show_the_frames_the_numpy_oracle_selects(videos, start):
    data = data_config("data.augment=false", f"data.short_side={H}", f"data.views.0.crop_size={H}",
                       f"data.views.1.crop_size={H}", f"data.views.1.start={start}")
    loader = VideoLoader(data, videos, uint8=True)
    for epoch in range(2):
        seen = set()
        for batch in one_epoch(loader):
            for b, index in enumerate(batch["index"].tolist()):
                seen.add(index)
                n = videos[index].num_frames
                rng = np.random.default_rng([data.seed, epoch, index])
                wants = select_views(OmegaConf.to_container(data.views), n, True, rng)
                for v, (view_cfg, view, frames, want) in enumerate(zip(data.views, batch["views"], batch["frame_indices"], wants)):
                    assert frames[b].tolist() == want.tolist(), f"epoch {epoch} video {index} view {v}"
                    shown = [read_frame_index(f) for f in view[b].numpy()]
                    assert shown == want.tolist(), f"video {index} view {v}: shows {shown}, selected {want.tolist()}"
                    if view_cfg.kind == "segment":  # one frame inside each of K equal segments
                        bounds = np.arange(view_cfg.frames + 1) * n // view_cfg.frames
                        assert all(bounds[k] <= f < bounds[k + 1] for k, f in enumerate(shown)), (shown, bounds)
                    else:  # evenly strided, in order
                        steps = set(np.diff(shown).tolist())
                        assert len(steps) == 1 and steps.pop() in view_cfg.strides, shown
        assert seen == set(range(len(videos)))


def test_eval_mode_is_deterministic(videos):
    data = data_config("data.train=false")
    first = one_epoch(VideoLoader(data, videos))
    again = one_epoch(VideoLoader(data, videos))
    assert [b["index"].tolist() for b in first] == [list(range(i, min(i + 4, 9))) for i in range(0, 9, 4)]
    for a, b in zip(first, again):
        for va, vb in zip(a["views"], b["views"]):
            assert torch.equal(va, vb)
        for fa, fb in zip(a["frame_indices"], b["frame_indices"]):
            assert torch.equal(fa, fb)


def test_augmentation_shared_by_frames_of_a_view_and_drawn_per_view(tmp_path):
    """A video whose frames are all one image: after augmentation the frames of a view must still
    be equal (same crop, flip, colour), while the views of a video differ."""
    yy, xx = np.mgrid[0:H, 0:W]
    # brighter to the right in every channel but blue, which varies down the frame only
    img = np.stack([xx * 255 // W, 40 + xx * 150 // W, yy * 255 // H], -1).astype(np.uint8)
    path = make_video(tmp_path / "still.webm", 30, W, H, frames=[img] * 30)
    data = data_config("data.batch_size=8", "data.views.0.jitter_prob=1.0", "data.views.1.jitter_prob=1.0")
    loader = VideoLoader(data, [Video(path, 0, 30)] * 8, uint8=True)
    (batch,) = one_epoch(loader)
    between = []
    for b in range(8):
        views = [v[b].numpy().astype(int) for v in batch["views"]]
        for v, frames in enumerate(views):
            spread = np.abs(frames - frames[:1]).max()
            assert spread <= 8, f"sample {b} view {v}: frames differ by up to {spread} (augmentation not shared)"
        between.append(np.abs(views[0] - views[1]).mean())
    assert min(between) > 5, f"views of the same video look alike: mean |diff| per sample {np.round(between, 1)}"
    params = batch["params"].numpy()  # (B, V, P): drawn per view, so the two views' differ
    assert params.shape == (8, 2, 10)
    assert (np.abs(params[:, 0] - params[:, 1]).max(axis=1) > 1e-3).all(), params
    flips = params[:, :, 4]
    assert 0 < flips.sum() < flips.size, f"flip probability 0.5 gave {flips}"
    for b in range(8):  # brightness (kept by crops, contrast > 0, hue and saturation) rises left to right unless flipped
        for v in range(2):
            frame = batch["views"][v][b, 0].numpy().astype(float).mean(-1)
            slope = frame[:, -8:].mean() - frame[:, :8].mean()
            assert (slope < 0) == bool(flips[b, v]), f"sample {b} view {v}: flip={flips[b, v]}, slope {slope:.1f}"


@pytest.mark.parametrize("num_shards", [2, 3])
def test_shards_visit_every_video_once_per_epoch_with_labels(videos, num_shards):
    data = data_config()
    loaders = [VideoLoader(data, videos, shard_id=s, num_shards=num_shards) for s in range(num_shards)]
    orders = []
    for epoch in range(2):
        visited = []
        for loader in loaders:
            for batch in one_epoch(loader):
                visited += batch["index"].tolist()
                for index, label in zip(batch["index"].tolist(), batch["label"].tolist()):
                    assert label == videos[index].label, f"video {index} came with label {label}"
        assert sorted(visited) == list(range(len(videos))), f"epoch {epoch}: {sorted(visited)}"
        orders.append(visited)
    assert orders[0] != orders[1], "epochs should be shuffled differently"


def test_drop_last_gives_equal_full_batches():
    vids = [Video("unused", 0, 10)] * 9
    data = data_config("data.drop_last=true", "data.batch_size=2")
    lens = [len(VideoLoader(data, vids, shard_id=s, num_shards=2)) for s in range(2)]
    assert lens == [2, 2]
    data = data_config("data.batch_size=2")
    assert [len(VideoLoader(data, vids, shard_id=s, num_shards=2)) for s in range(2)] == [3, 2]


def test_resume_mid_epoch_reproduces_the_batches(videos):
    data = data_config("data.batch_size=2")
    full = VideoLoader(data, videos, uint8=True)
    batches = one_epoch(full)[:4]
    part = VideoLoader(data, videos, uint8=True)
    it = iter(part)
    next(it)
    next(it)
    state = part.state_dict()
    resumed = VideoLoader(data, videos, uint8=True)
    resumed.load_state_dict(state)
    for want, got in zip(batches[2:], resumed):
        assert got["index"].tolist() == want["index"].tolist()
        for a, b in zip(want["frame_indices"], got["frame_indices"]):
            assert torch.equal(a, b)


def test_output_shapes_and_normalisation(videos):
    data = data_config()
    batch = next(iter(VideoLoader(data, videos)))
    for view_cfg, view in zip(data.views, batch["views"]):
        assert view.shape == (4, 3, view_cfg.frames, view_cfg.crop_size, view_cfg.crop_size)
        assert view.dtype == torch.float32
        assert -2.5 < view.mean() < 2.5 and view.std() > 0.1


def test_index_then_preview_command(tmp_path):
    """The two commands a user runs: index a folder-per-class tree, then preview one batch."""
    import json

    from timeclr.data import main

    for c, name in enumerate(["jump", "run"]):
        for i in range(3):
            (tmp_path / "tree" / name).mkdir(parents=True, exist_ok=True)
            make_video(tmp_path / "tree" / name / f"{name}{i}.webm", 30 + 10 * i + c, W, H)
    manifest = tmp_path / "m.csv"
    assert main(["index", str(tmp_path / "tree"), "-o", str(manifest), "--device", "cpu", "--workers", "1"]) == 0
    out = tmp_path / "preview"
    assert main(["preview", "pipelines/debug.yaml", f"data.manifest={manifest}", "data.augment=false",
                 f"data.short_side={H}", f"data.views.0.crop_size={H}", f"data.views.1.crop_size={H}",
                 "--out", str(out)]) == 0
    frames = np.load(out / "preview.npz")["frames"]
    info = json.loads((out / "preview.json").read_text())
    assert frames.dtype == np.uint8 and frames.shape == (4, 2, 4, H, W, 3)
    assert (out / "preview.png").stat().st_size > 10_000
    for b, sample in enumerate(info["samples"]):
        assert sample["label"] == (0 if "jump" in sample["path"] else 1)
        for v, view in enumerate(sample["views"]):
            assert view["kind"] == ["segment", "interval"][v]
            # augment=false: exactly the decoded selected frames, so each shows its own index
            assert [read_frame_index(f) for f in frames[b, v]] == view["frame_indices"], sample


def test_preview_names_a_missing_manifest(tmp_path):
    from timeclr.data import main

    with pytest.raises(SystemExit, match="data.manifest"):
        main(["preview", "pipelines/debug.yaml", f"data.manifest={tmp_path}/none.csv", "--out", str(tmp_path)])


def test_videos_damaged_after_indexing_are_logged_and_skipped(tmp_path):
    """One file cut short (DALI would silently decode black frames) and one overwritten with junk
    of the same size (DALI fails) after the first batch: both are named and skipped, every other
    video is still read, and the epoch completes."""
    vids = [Video(make_video(tmp_path / f"v{i}.webm", 30, W, H), i % 2, 30) for i in range(14)]
    for v in vids:
        v.bytes = os.path.getsize(v.path)
    data = data_config("data.batch_size=2", "data.train=false")
    loader = VideoLoader(data, vids)
    it = iter(loader)
    seen = next(it)["index"].tolist()  # [0, 1]
    cut, junk = vids[10].path, vids[12].path  # beyond what DALI has prefetched (and so already read)
    with open(cut, "r+b") as f:
        f.truncate(os.path.getsize(cut) // 3)
    with open(junk, "r+b") as f:
        f.write(np.random.default_rng(0).integers(0, 256, os.path.getsize(junk), dtype=np.uint8).tobytes())
    with pytest.warns(UserWarning, match="skipping damaged video"):
        for batch in it:
            seen += batch["index"].tolist()
    skipped = dict(loader.skipped)
    assert set(skipped) == {cut, junk}, loader.skipped
    assert "size changed" in skipped[cut]
    assert set(seen) == set(range(14)) - {10, 12}, seen  # a skipped video's place goes to the next usable one


def test_a_video_shorter_than_its_manifest_says_is_skipped_not_padded_black(tmp_path):
    """The manifest claims 40 frames of a file that has 12: the views ask for frames past its end,
    which DALI's default pad mode would fill with black frames silently. The video is named and
    skipped; the others come through with real frames (index stripes, not black)."""
    vids = [Video(make_video(tmp_path / f"v{i}.webm", 40, W, H), i % 2, 40) for i in range(5)]
    short = make_video(tmp_path / "short.webm", 12, W, H)
    vids.insert(2, Video(short, 0, 40))
    data = data_config("data.batch_size=2", "data.train=false", "data.augment=false", "data.trim_gops=false",
                       f"data.short_side={H}", f"data.views.0.crop_size={H}", f"data.views.1.crop_size={H}")
    loader = VideoLoader(data, vids, uint8=True)
    with pytest.warns(UserWarning, match="skipping damaged video"):
        batches = one_epoch(loader)
    seen = [i for b in batches for i in b["index"].tolist()]
    assert set(seen) == {0, 1, 3, 4, 5}, seen
    assert dict(loader.skipped).keys() == {short}, loader.skipped
    assert "decodes only 12 of the 40 frames" in dict(loader.skipped)[short]
    for b in batches:
        for view, frames in zip(b["views"], b["frame_indices"]):
            for clip, idx in zip(view.numpy(), frames.numpy()):  # (T, H, W, C) uint8
                got = [read_frame_index(f) for f in clip]
                assert got == idx.tolist(), f"frames {idx.tolist()} came back as {got}"


def test_a_video_only_dalis_decoder_fails_on_is_found_alone_and_skipped(tmp_path, monkeypatch):
    """What a file NVDEC refuses and PyAV reads looks like under data.device=gpu, simulated on the
    CPU: PyAV's verdict is made 'decodes' for every file, so the culprit can only be found by
    running DALI's decoder on each video of the failed window alone. It is named and skipped, and
    every other video still comes through."""
    from timeclr.pipelines.loader import culprits

    vids = [Video(make_video(tmp_path / f"v{i}.webm", 30, W, H), i % 2, 30) for i in range(14)]
    bad = vids[10].path  # beyond what DALI has prefetched (and so already read) after the first batch
    data = data_config("data.batch_size=2", "data.train=false")
    loader = VideoLoader(data, vids)
    it = iter(loader)
    seen = next(it)["index"].tolist()
    with open(bad, "r+b") as f:  # same size, so the size check passes: only decoding finds it
        f.write(np.random.default_rng(1).integers(0, 256, os.path.getsize(bad), dtype=np.uint8).tobytes())
    monkeypatch.setattr(culprits, "pyav_problem", lambda video: None)
    probed = []
    real = culprits.dali_problem
    monkeypatch.setattr(culprits, "dali_problem", lambda *a: probed.append(a[2]) or real(*a))
    with pytest.warns(UserWarning, match="skipping damaged video"):
        for batch in it:
            seen += batch["index"].tolist()
    assert dict(loader.skipped).keys() == {bad}, loader.skipped
    assert "DALI's cpu decoder fails on it (PyAV decodes it)" in dict(loader.skipped)[bad]
    assert set(probed) == {"cpu"} and len(probed) >= 2, probed  # each video of the window, alone
    assert set(seen) == set(range(14)) - {10}, seen


def test_dali_alone_decodes_a_good_file_and_names_a_damaged_one(tmp_path):
    from timeclr.pipelines.loader.culprits import dali_problem

    good = make_video(tmp_path / "good.webm", 20, W, H, gop=12)
    frames = np.array([0, 7, 19], dtype=np.int32)
    assert dali_problem(np.fromfile(good, dtype=np.uint8), frames, "cpu") is None
    junk = np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8)
    assert "DALI's cpu decoder fails" in dali_problem(junk, frames, "cpu")
    past_end = np.array([0, 25], dtype=np.int32)  # pad_mode none: asking past the end is an error
    assert dali_problem(np.fromfile(good, dtype=np.uint8), past_end, "cpu") is not None


def test_preview_works_with_the_synthetic_config(tmp_path):
    """synthetic.yaml names no manifest: preview generates the embedded set (v2; here a tiny one) as
    training does, and previews it."""
    from timeclr.data import main

    assert main(["preview", "pipelines/synthetic.yaml", f"data.root={tmp_path}/syn", "synthetic.train_per_class=1",
                 "synthetic.test_per_class=1", "data.batch_size=2", "--out", str(tmp_path / "pv")]) == 0
    assert os.path.getsize(tmp_path / "pv" / "preview.png") > 0
    import json

    from timeclr.synthetic.render_v2 import CLASSES  # the main job's set

    classes = (tmp_path / "syn" / "train.classes.txt").read_text().split()  # label i: line i of the manifest's list
    assert sorted(classes) == sorted(CLASSES), classes
    samples = json.load(open(tmp_path / "pv" / "preview.json"))["samples"]
    assert all(s["class"] == classes[s["label"]] for s in samples), samples  # the sheet's titles name it too


def test_augmented_views_match_a_torch_reference_with_the_same_parameters(tmp_path, videos):
    """Training mode, random crop + flip + colour jitter: each view equals the torch reference
    (``benchmarks/pyav_baseline.augment_view``: crop, antialiased resize, flip, colour twist) of
    PyAV's decode of the same frames with the parameters the batch reports. Frame archives decode
    only the crop box (``decoders.image_slice``), so this also checks that box lands where the
    video path's resize ROI does."""
    from timeclr.benchmarks.pyav_baseline import augment_view

    data = data_config("data.views.0.jitter_prob=1.0", "data.views.1.jitter_prob=1.0",
                       "data.views.0.grayscale_prob=0.0", "data.views.1.grayscale_prob=0.0")
    (batch, *_) = one_epoch(VideoLoader(data, videos))
    to_255 = torch.tensor(data.std).view(3, 1, 1, 1) * 255
    same = []
    for b, index in enumerate(batch["index"].tolist()):
        reference = decode_all(videos[index].path)
        for v, (view_cfg, view, frames) in enumerate(zip(data.views, batch["views"], batch["frame_indices"])):
            params = batch["params"][b, v].numpy()
            shifted = params.copy()
            shifted[[1, 3]] += 0.05  # the same box 5 % of the width to the right
            got = reference[frames[b].numpy()]
            d_same = float(((view[b] - augment_view(got, params, view_cfg, data)).abs() * to_255).mean())
            d_shifted = float(((view[b] - augment_view(got, shifted, view_cfg, data)).abs() * to_255).mean())
            # resampling differs at the index stripes' hard edges (torch rounds the box to whole
            # pixels, DALI does not), so the test is: much closer to the right box than to a near one
            assert d_same < 0.5 * d_shifted, (f"video {index} view {v} (box {np.round(params[:4], 3)}): mean |diff| "
                                              f"{d_same:.2f} to the torch reference, {d_shifted:.2f} with the box "
                                              f"shifted by 5 % (0-255 units)")
            same.append(d_same)
    assert np.mean(same) < 3.0, f"mean |diff| to the torch reference per view: {np.round(same, 2)}"
