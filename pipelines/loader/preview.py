"""One batch of the pipeline, written out so a person can look at it.

``python -m timeclr.data preview CONFIG [key=value ...] --out DIR`` writes

- ``DIR/preview.png``: a contact sheet, one row per view of each video (titled with its class),
  frames left to right;
- ``DIR/preview.npz``: key ``frames``, uint8 (B, V, T, H, W, C), after crop and before
  normalisation (views with fewer frames or smaller crops are zero-padded to the largest);
- ``DIR/preview.json``: ``{"samples": [{"index", "path", "label", "class", "num_frames",
  "views": [{"kind", "frame_indices"}]}]}`` — which frames each view shows.

With ``data.augment=false`` the frames are exactly the decoded selected frames (resized and
centre-cropped only).
"""
import json
import os

import numpy as np

from timeclr.pipelines.loader.clip_source import read_videos
from timeclr.pipelines.storage.manifest import read_manifest
from timeclr.pipelines.loader.video import VideoLoader


def _stack_views(views):
    """List of V (B, T, H, W, C) arrays -> (B, V, T, H, W, C), zero-padding smaller views."""
    shape = np.max([v.shape for v in views], axis=0)
    out = np.zeros((shape[0], len(views), *shape[1:]), np.uint8)
    for i, v in enumerate(views):
        out[:, i, : v.shape[1], : v.shape[2], : v.shape[3]] = v
    return out


def contact_sheet(frames, titles, path):
    """Save (B, V, T, H, W, C) uint8 frames as a grid: one row per (video, view), titled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    B, V, T = frames.shape[:3]
    fig, axes = plt.subplots(B * V, T, figsize=(1.3 * T + 1.5, 1.3 * B * V), squeeze=False)
    for b in range(B):
        for v in range(V):
            row = b * V + v
            for t in range(T):
                ax = axes[row, t]
                ax.imshow(frames[b, v, t])
                ax.set_xticks([])
                ax.set_yticks([])
            axes[row, 0].set_ylabel(titles[row], rotation=0, ha="right", va="center", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def write_preview(cfg, out_dir) -> dict:
    """Run one batch of ``cfg.data`` and write preview.png / .npz / .json to ``out_dir``."""
    os.makedirs(out_dir, exist_ok=True)
    videos = read_videos(cfg.data.manifest)
    _, classes = read_manifest(cfg.data.manifest)
    loader = VideoLoader(cfg.data, videos, shard_id=0, num_shards=1, uint8=True)
    batch = next(iter(loader))
    frames = _stack_views([v.cpu().numpy() for v in batch["views"]])
    samples, titles = [], []
    for b, index in enumerate(batch["index"].tolist()):
        video = videos[index]
        views = [{"kind": view.kind, "frame_indices": batch["frame_indices"][v][b].tolist()} for v, view in enumerate(cfg.data.views)]
        label = int(batch["label"][b])
        name = classes[label] if 0 <= label < len(classes) else f"label {label}"
        samples.append({"index": index, "path": video.path, "label": label, "class": name,
                        "num_frames": video.num_frames, "views": views})
        titles += [f"#{index} {name}: {os.path.basename(video.path)}\n{v['kind']} {v['frame_indices']}" for v in views]
    np.savez_compressed(os.path.join(out_dir, "preview.npz"), frames=frames)
    with open(os.path.join(out_dir, "preview.json"), "w") as f:
        json.dump({"samples": samples}, f, indent=1)
    contact_sheet(frames, titles, os.path.join(out_dir, "preview.png"))
    return {"samples": samples, "frames": frames}
