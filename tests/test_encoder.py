"""timeclr.load_encoder and python -m timeclr.export: a trained encoder used outside the project.

References: torchvision's own state-dict names and shapes (recorded from torchvision 0.28.0 in
tests/data/torchvision_video_resnets.json, since torchvision may not import here; the live model
is used as well where it does), the project's model's features for the same clip, and the DALI
eval pipeline's clip for the same video."""
import json
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from timeclr import load_encoder
from timeclr.config import Config
from timeclr.encoder import export_encoder
from timeclr.evaluation.features import eval_data_config
from timeclr.export import main as export_main
from timeclr.models import _torchvision_video, build_model, r2plus1d_18, r3d_18
from timeclr.pipelines.loader.clip_source import read_videos
from timeclr.pipelines.loader.video import VideoLoader
from tests.helpers.runs import moving_bars_manifest

TORCHVISION = json.loads((Path(__file__).parent / "data" / "torchvision_video_resnets.json").read_text())


def _config(**model) -> dict:
    cfg = OmegaConf.structured(Config)
    cfg.model = OmegaConf.merge(cfg.model, model)
    cfg.data.manifest, cfg.data.short_side = "videos.csv", 40
    cfg.data.views[0].crop_size = 32
    return OmegaConf.to_container(cfg)


def _checkpoint(path, backbone: str, norm: str = "batch", seed: int = 0, input: str = "rgb") -> torch.nn.Module:
    """A pretraining checkpoint of ``backbone`` as ``timeclr.train`` writes it (model + resolved
    config), with batch-norm statistics that are not the initial ones (so a lost buffer shows)."""
    config = _config(backbone=backbone, norm=norm, proj_hidden=64, proj_dim=16, input=input)
    torch.manual_seed(seed)
    model = build_model(OmegaConf.create(config["model"]))
    with torch.no_grad():
        for name, buf in model.named_buffers():
            if name.endswith(("running_mean", "running_var")):
                buf.copy_(torch.rand_like(buf) + 0.5)
    torch.save({"model": model.state_dict(), "config": config, "step": 3}, path)
    return model.eval()


@pytest.mark.parametrize("name, make", [("r2plus1d_18", r2plus1d_18), ("r3d_18", r3d_18)])
def test_exported_weights_are_torchvisions_and_give_the_models_features(tmp_path, name, make):
    model = _checkpoint(tmp_path / "checkpoint.pt", name)
    assert export_main([f"checkpoint={tmp_path / 'checkpoint.pt'}", "-o", str(tmp_path / "enc.pt")]) == 0
    state = torch.load(tmp_path / "enc.pt", weights_only=True)
    shapes = {k: list(v.shape) for k, v in state.items()}
    assert shapes == TORCHVISION[name], (sorted(set(shapes) ^ set(TORCHVISION[name]))[:5],
                                         [k for k in shapes if shapes[k] != TORCHVISION[name].get(k)][:5])
    meta = json.loads((tmp_path / "enc.json").read_text())
    assert meta["torchvision"] == name and meta["feature_dim"] == 512, meta
    # the reference model: torchvision's where it imports, else the project's own definition
    tv = _torchvision_video()
    ref = getattr(tv, name)() if tv is not None else make(use_torchvision=False)
    if tv is not None:
        ref.fc = torch.nn.Identity()
    ref.load_state_dict(state, strict=True)
    clip = torch.randn(1, 3, 4, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = model.features(clip)
        got = ref.eval()(clip)
        backbone, _ = load_encoder(str(tmp_path / "checkpoint.pt"))
        loaded = backbone(clip)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(loaded, want, rtol=1e-5, atol=1e-5)
    assert not backbone.training


def test_group_norm_and_small_encoders_export_but_say_they_are_not_torchvisions(tmp_path):
    _checkpoint(tmp_path / "gn.pt", "r3d_18", norm="group")
    _checkpoint(tmp_path / "small.pt", "small")
    for src in ("gn", "small"):
        export_encoder(tmp_path / f"{src}.pt", str(tmp_path / f"{src}_enc.pt"))
        meta = json.loads((tmp_path / f"{src}_enc.json").read_text())
        assert meta["torchvision"] is None, meta


def test_a_difference_encoder_exports_weights_that_take_frame_differences(tmp_path):
    """An r3d_18 with model.input=difference: not torchvision's (keys net.*), and the exported
    weights in a plain r3d_18 give the model's features when fed the clip's differences."""
    model = _checkpoint(tmp_path / "diff.pt", "r3d_18", input="difference")
    export_encoder(tmp_path / "diff.pt", str(tmp_path / "diff_enc.pt"))
    meta = json.loads((tmp_path / "diff_enc.json").read_text())
    assert meta["torchvision"] is None and "differences" in meta["input"], meta
    state = torch.load(tmp_path / "diff_enc.pt", weights_only=True)
    assert all(k.startswith("net.") for k in state), sorted(state)[:3]
    ref = r3d_18(use_torchvision=False)
    ref.load_state_dict({k[len("net."):]: v for k, v in state.items()}, strict=True)
    clip = torch.randn(1, 3, 5, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(ref.eval()(clip[:, :, 1:] - clip[:, :, :-1]), model.features(clip), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "missing.pt", "missing.pt does not exist"),
    (lambda d: (d / "junk.pt").write_bytes(b"not a checkpoint") and d / "junk.pt", "junk.pt is not a readable checkpoint"),
    (lambda d: torch.save({"a": torch.zeros(2)}, d / "weights.pt") or d / "weights.pt",
     "weights.pt: not a TimeCLR training checkpoint"),
    (lambda d: torch.save({"model": {}, "config": _config(backbone="small")}, d / "empty.pt") or d / "empty.pt",
     "empty.pt: its weights do not fit its own model config"),
])
def test_a_bad_checkpoint_is_one_line_naming_it(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(SystemExit) as e:
        export_main([f"checkpoint={path}", "-o", str(tmp_path / "out.pt")])
    text = str(e.value.code)
    assert text.startswith("timeclr.export: ") and message in text and "\n" not in text, text
    assert not (tmp_path / "out.pt").exists()


def test_the_preprocessing_gives_the_eval_pipelines_clip(tmp_path):
    """Frames decoded with PyAV through ``Preprocessing`` against the DALI eval pipeline's clip of
    the same video: same frames, same crop, resampling filters apart (DALI's vs torch's)."""
    manifest = moving_bars_manifest(tmp_path / "bars")
    config = _config(backbone="small")
    config["data"].update(manifest=manifest)
    config["data"]["views"][0].update(kind="interval", frames=4, strides=[2])
    torch.save({"model": build_model(OmegaConf.create(config["model"])).state_dict(), "config": config},
               tmp_path / "ck.pt")
    _, prep = load_encoder(str(tmp_path / "ck.pt"))
    cfg = OmegaConf.create(config)
    videos = read_videos(manifest)[:2]
    batch = next(iter(VideoLoader(eval_data_config(cfg), videos)))
    for i, video in enumerate(videos):
        with av.open(video.path) as f:
            frames = np.stack([fr.to_ndarray(format="rgb24") for fr in f.decode(video=0)])
        got = prep(frames[prep.indices(len(frames))])
        want = batch["views"][0][i:i + 1].float()
        assert got.shape == want.shape, (got.shape, want.shape)
        err = (got - want).abs()
        # normalised units (std 0.225: 0.02 is one grey level of 255). Measured here: mean 0.003,
        # max 0.03; the neighbouring frames instead give mean 0.33, max 3.2, a mirrored crop 0.89
        assert err.mean() < 0.02 and err.max() < 0.2, (float(err.mean()), float(err.max()))
