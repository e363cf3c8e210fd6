"""A trained encoder for use outside this project: ``load_encoder`` and ``export_encoder``.

    backbone, prep = timeclr.load_encoder("runs/synthetic/checkpoint.pt")
    idx = prep.indices(len(frames))             # which frames the eval view takes
    clip = prep(frames[idx])                     # (T, H, W, 3) uint8 -> (1, 3, T, crop, crop)
    features = backbone(clip)                    # (1, feature_dim)

``python -m timeclr.export checkpoint=PATH -o encoder.pt`` writes the backbone's plain state dict
(tensors only) and ``encoder.json`` beside it (architecture and preprocessing, plain JSON). The
backbone drops the projection head, as SimCLR does after pretraining. For ``r3d_18`` and
``r2plus1d_18`` trained with ``model.norm=batch`` the names and shapes are torchvision's, so::

    m = torchvision.models.video.r2plus1d_18(); m.fc = torch.nn.Identity()
    m.load_state_dict(torch.load("encoder.pt", weights_only=True), strict=True)

Preprocessing is the eval pipeline's, step for step: the view's deterministic frame selection
(``pipelines/loader/frame_selection.py``), short side resized to ``short_side`` (bilinear,
antialiased), the centre ``crop_size`` square, then ``(x / 255 - mean) / std``. DALI resamples
with its own filter, so pixels differ from the pipeline's by a little (tests/test_encoder.py
bounds it); features computed through ``python -m timeclr.embed`` use the pipeline itself.
"""
import json
import os
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from timeclr.config import ModelConfig
from timeclr.errors import ConfigError
from timeclr.files.atomic import atomic_path
from timeclr.models import build_model
from timeclr.pipelines.loader.frame_selection import view_indices
from timeclr.training.checkpoints import load_checkpoint

TORCHVISION_NAMES = ("r3d_18", "r2plus1d_18")  # backbones whose state dict is torchvision's


@dataclass(frozen=True)
class Preprocessing:
    """What a clip must look like for the encoder: the eval view of the run's config.

    Args:
        view: the eval view (``kind`` 'segment' | 'interval', ``frames``, ``strides``).
        short_side: the short side frames are resized to before the centre crop.
        crop_size: the side of the square centre crop.
        mean, std: per RGB channel, in [0, 1] units.

    Shape: ``__call__``: (T, H, W, 3) uint8 frames (numpy or torch) -> (1, 3, T, crop_size, crop_size) float.
    """

    view: dict
    short_side: int
    crop_size: int
    mean: tuple
    std: tuple

    def indices(self, num_frames: int) -> np.ndarray:
        """The frames (int64 indices into a video of ``num_frames``) the eval view takes."""
        return view_indices(self.view, num_frames, train=False)

    def __call__(self, frames) -> torch.Tensor:
        x = torch.as_tensor(np.asarray(frames))
        if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"frames: expected (T, H, W, 3) uint8, got {tuple(x.shape)} {x.dtype}")
        x = x.permute(0, 3, 1, 2).float()  # (T, 3, H, W)
        h, w = x.shape[-2:]
        size = (self.short_side, round(w * self.short_side / h)) if h <= w else (round(h * self.short_side / w), self.short_side)
        x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
        top, left = (size[0] - self.crop_size) // 2, (size[1] - self.crop_size) // 2
        if top < 0 or left < 0:
            raise ValueError(f"short_side {self.short_side} is smaller than crop_size {self.crop_size}")
        x = x[..., top:top + self.crop_size, left:left + self.crop_size].clamp(0, 255)
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        x = (x / 255.0 - mean) / std
        return x.permute(1, 0, 2, 3).unsqueeze(0).contiguous()  # (1, 3, T, crop, crop)


def _run_config(ckpt: dict, path) -> dict:
    config = ckpt.get("config") if isinstance(ckpt, dict) else None
    if not isinstance(config, dict) or "model" not in config or "data" not in config:
        raise ConfigError(f"{path}: not a TimeCLR training checkpoint (it has no run config with model and data)")
    return config


def preprocessing_of(config: dict) -> Preprocessing:
    """The eval view's preprocessing of a run's saved (plain) config."""
    data, view_i = config["data"], config.get("eval", {}).get("view", 0)
    view = dict(data["views"][view_i])
    view = {k: view[k] for k in ("kind", "frames", "strides") if k in view}
    return Preprocessing(view=view, short_side=int(data["short_side"]), crop_size=int(data["views"][view_i]["crop_size"]),
                         mean=tuple(data["mean"]), std=tuple(data["std"]))


def _load(checkpoint) -> tuple:
    """(backbone on the CPU in eval mode, preprocessing, the model config as plain data) of a
    pretraining checkpoint; the errors of ``load_encoder``."""
    if not os.path.isfile(checkpoint):
        raise ConfigError(f"checkpoint: {checkpoint} does not exist")
    ckpt = load_checkpoint(checkpoint, map_location="cpu")
    config = _run_config(ckpt, checkpoint)
    model_cfg = OmegaConf.merge(OmegaConf.structured(ModelConfig), config["model"])
    model = build_model(model_cfg)
    try:
        model.load_state_dict(ckpt["model"])
    except (KeyError, RuntimeError) as e:
        raise ConfigError(f"{checkpoint}: its weights do not fit its own model config "
                          f"{OmegaConf.to_container(model_cfg)}: {str(e).splitlines()[0]}") from None
    backbone = model.backbone.eval()
    backbone.feature_dim = model.feature_dim
    return backbone, preprocessing_of(config), OmegaConf.to_container(model_cfg)


def load_encoder(checkpoint, device="cpu"):
    """The backbone of a TimeCLR pretraining checkpoint, in eval mode, and its preprocessing.

    Args:
        checkpoint: a ``checkpoint.pt`` of ``python -m timeclr.train`` (loaded data-only).
        device: where the backbone goes.

    Returns:
        (backbone, Preprocessing): ``backbone(clip)`` maps (B, 3, T, H, W) to (B, feature_dim).

    Raises:
        ConfigError: no such file, a damaged or unsafe file, or not a pretraining checkpoint
            (the message names the file).
    """
    backbone, prep, _ = _load(checkpoint)
    return backbone.to(device), prep


def export_encoder(checkpoint, out) -> tuple[str, str]:
    """Write the backbone's plain state dict to ``out`` and its description to ``out``'s ``.json``.

    Returns (weights path, description path). The description holds ``backbone``, ``feature_dim``,
    ``norm``, ``torchvision`` (the torchvision model the weights load into strictly, or null) and
    ``preprocessing`` (as :class:`Preprocessing`).
    """
    backbone, prep, model_cfg = _load(checkpoint)
    state = {k: v.detach().cpu().clone() for k, v in backbone.state_dict().items()}
    plain_bn = model_cfg["norm"] == "batch"
    meta = {"source": os.path.abspath(checkpoint), "backbone": model_cfg["backbone"],
            "feature_dim": backbone.feature_dim, "norm": model_cfg["norm"],
            "torchvision": (model_cfg["backbone"] if model_cfg["backbone"] in TORCHVISION_NAMES and plain_bn
                            and model_cfg["input"] == "rgb" else None),
            "input": "(B, 3, T, H, W) float, normalised as preprocessing says" + (
                "; the weights (keys net.*) take the T-1 differences x[:, :, 1:] - x[:, :, :-1] of such a clip"
                if model_cfg["input"] == "difference" else ""),
            "preprocessing": asdict(prep)}
    json_path = os.path.splitext(out)[0] + ".json"
    with atomic_path(out) as tmp:
        torch.save(state, tmp)
    with atomic_path(json_path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=2)
    return out, json_path
