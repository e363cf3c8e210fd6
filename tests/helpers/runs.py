"""What the tests of the run commands (timeclr.train, timeclr.finetune) share: a tiny labelled
video set, the losses a run logged, and a kill right after a checkpoint."""
import json

import numpy as np
import torch

from timeclr.data import main as data_main
from tests.helpers.videos import make_video

SIZE = 48  # frame side of the tiny set


def moving_bars_manifest(root) -> str:
    """8 short videos of 2 classes under ``root``: a bright bar moving right, or moving left;
    indexed into a manifest, whose path is returned."""
    xx = np.arange(SIZE)[None, :, None]
    for name in ["left", "right"]:
        (root / "tree" / name).mkdir(parents=True)
        for i in range(4):
            frames = []
            for t in range(24):
                x0 = (5 + 2 * t + 3 * i) % SIZE if name == "right" else (SIZE - 5 - 2 * t - 3 * i) % SIZE
                img = np.full((SIZE, SIZE, 3), 30 + 20 * i, np.uint8)
                img[:, :, :] += ((np.abs(xx - x0) < 4) * 180).astype(np.uint8)
                frames.append(img)
            make_video(root / "tree" / name / f"{name}{i}.webm", 24, SIZE, SIZE, frames=frames)
    path = root / "m.csv"
    assert data_main(["index", str(root / "tree"), "-o", str(path), "--device", "cpu", "--workers", "1"]) == 0
    return str(path)


def losses(out_dir):
    """The losses a run logged in its metrics.jsonl, in order."""
    rows = [json.loads(line) for line in open(out_dir / "metrics.jsonl")]
    return [r["loss"] for r in rows if "loss" in r]  # not the online kNN's rows


def die_after_checkpoint(monkeypatch, step: int):
    """Make ``timeclr.training.checkpoints.save_checkpoint`` (the one name the run loop calls the checkpoint
    writer by) raise KeyboardInterrupt right after writing step ``step``'s checkpoint, as a kill
    there would; returns a function that restores it."""
    from timeclr.training import checkpoints as module

    real_save = module.save_checkpoint

    def save_then_die(path, model, optimizer, at_step, loader, cfg):
        real_save(path, model, optimizer, at_step, loader, cfg)
        if at_step == step:
            raise KeyboardInterrupt

    monkeypatch.setattr(module, "save_checkpoint", save_then_die)
    return lambda: monkeypatch.setattr(module, "save_checkpoint", real_save)


def assert_same_parameters(one_dir, two_dir, tol: float = 1e-5, name: str = "checkpoint.pt"):
    """The final checkpoints of two runs (or the ones before them: ``name="checkpoint.prev.pt"``)
    hold the same parameters, to ``tol``."""
    want = torch.load(one_dir / name, weights_only=True)["model"]
    got = torch.load(two_dir / name, weights_only=True)["model"]
    for key, value in want.items():
        err = (got[key].double() - value.double()).abs().max().item()
        assert err <= tol, f"{key}: the two runs' parameters differ by {err:.2e}"
