"""python -m timeclr.embed: features of a folder of videos or a manifest, in files numpy, pandas
and csv read as they are. References: the evaluation's own feature extraction of the same
manifest (``extract_features``), one view at a time; the mean and concatenation done here."""
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from timeclr.config import load_config
from timeclr.embed import main as embed_main
from timeclr.evaluation.features import eval_data_config, extract_features
from timeclr.training.run import random_model
from tests.helpers.runs import moving_bars_manifest
from tests.helpers.videos import make_video

SMALL = ["model.backbone=small", "model.proj_hidden=32", "model.proj_dim=16", "data.short_side=40",
         "data.views.0.crop_size=32", "data.views.1.crop_size=32", "eval.batch_size=3"]


@pytest.fixture(scope="module")
def bars(tmp_path_factory):
    return moving_bars_manifest(tmp_path_factory.mktemp("bars"))


def _reference(manifest, views, **view_changes):
    """Evaluation's features of ``manifest`` through each of ``views`` (a data.views index) alone."""
    cfg = load_config("pipelines/debug.yaml", [f"data.manifest={manifest}", "checkpoint=random", *SMALL])
    model = random_model(cfg, torch.device("cpu"))
    out = []
    for v in views:
        cfg.eval.view = v
        data = eval_data_config(cfg)
        data.views[0] = OmegaConf.merge(data.views[0], view_changes)
        out.append(extract_features(model, data, manifest, torch.device("cpu"))[0].numpy())
    return out


def _embed(source, out, *flags):
    assert embed_main(["pipelines/debug.yaml", "checkpoint=random", *SMALL, str(source), "-o", str(out), *flags]) == 0
    return np.load(out / "features.npy"), pd.read_csv(out / "videos.csv"), json.loads((out / "embed.json").read_text())


def test_a_manifest_embeds_as_evaluation_extracts_it_one_view_or_all(tmp_path, bars):
    feats, videos, meta = _embed(bars, tmp_path / "one")
    (want,) = _reference(bars, [0])
    np.testing.assert_allclose(feats, want, rtol=1e-5, atol=1e-6)
    assert list(videos.columns) == ["path", "class_name", "frames", "seconds"], videos.columns
    assert len(videos) == 8 and set(videos.class_name) == {"left", "right"} and (videos.frames == 24).all(), videos
    np.testing.assert_allclose(videos.seconds, 24 / 25, rtol=1e-6)
    assert meta["embedded"] == 8 and meta["skipped"] == 0 and meta["feature_dim"] == feats.shape[1], meta
    feats_all, _, meta = _embed(bars, tmp_path / "all", "--view", "all")
    np.testing.assert_allclose(feats_all, np.concatenate(_reference(bars, [0, 1]), 1), rtol=1e-5, atol=1e-6)
    assert [v["kind"] for v in meta["views"]] == ["segment", "interval"], meta["views"]


def test_clips_are_averaged(tmp_path, bars):
    feats, _, meta = _embed(bars, tmp_path / "clips", "--clips", "3")
    per_clip = [_reference(bars, [0], clip=k, clips=3)[0] for k in range(3)]
    np.testing.assert_allclose(feats, np.mean(per_clip, 0), rtol=1e-5, atol=1e-6)
    assert not np.allclose(per_clip[0], per_clip[2]), "the clips should see different frames"
    assert meta["clips"] == 3


def test_a_folder_is_probed_and_every_video_it_cannot_embed_is_listed(tmp_path, bars):
    src = tmp_path / "videos"
    shutil.copytree(Path(bars).parent / "tree", src)
    make_video(src / "flat.webm", 16)  # no class folder: embedded, class_name empty
    make_video(src / "left" / "h264.mp4", 16, codec="libx264")  # not decodable by DALI's CPU backend
    (src / "right" / "cut.webm").write_bytes((src / "right" / "right0.webm").read_bytes()[:300])
    (src / "notes.txt").write_text("not a video")
    feats, videos, meta = _embed(src, tmp_path / "out")
    skipped = pd.read_csv(tmp_path / "out" / "skipped.csv")
    assert sorted(skipped.path) == ["left/h264.mp4", "right/cut.webm"], skipped
    assert "not decodable on cpu" in skipped.set_index("path").reason["left/h264.mp4"], skipped
    assert len(videos) == len(feats) == 9 and meta["embedded"] == 9 and meta["skipped"] == 2, (videos, meta)
    assert "flat.webm" in set(videos.path) and videos.class_name.isna().sum() == 1, videos
    assert np.isfinite(feats).all()


@pytest.mark.parametrize("args, message", [
    (["checkpoint=random"], "give one folder of videos or manifest (got 0"),
    (["checkpoint=random", "a", "b"], "give one folder of videos or manifest (got 2: a b)"),
    (["checkpoint=random", "SRC", "--clips", "0"], "--clips must be at least 1"),
    (["checkpoint=random", "SRC", "--view", "5"], "--view 5: choose 'eval', 'all' or a view number below 2"),
    (["SRC"], "checkpoint=PATH or checkpoint=random"),
    (["checkpoint=nope.pt", "SRC"], "nope.pt does not exist"),
    (["checkpoint=random", "MISSING"], "no such folder or manifest"),
])
def test_bad_input_is_one_line(tmp_path, bars, capsys, args, message):
    args = [a.replace("SRC", bars).replace("MISSING", str(tmp_path / "missing")) for a in args]
    with pytest.raises(SystemExit) as e:
        embed_main(["pipelines/debug.yaml", *SMALL, *args, "-o", str(tmp_path / "out")])
    text = str(e.value.code) if e.value.code != 2 else capsys.readouterr().err.strip().splitlines()[-1]
    assert message in text and "\n" not in text, text
