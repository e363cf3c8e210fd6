"""Fine-tuning (timeclr.finetune) on CPU: loading a pretraining checkpoint, the architecture check,
multi-view scores on toy numbers with a known answer, the test views the pipeline produces, learning,
and resume."""
import json

import numpy as np
import pytest
import torch

from timeclr.evaluation.classifier import build_classifier, param_groups
from timeclr.config import load_config
from timeclr.finetune import main as finetune_main
from timeclr.evaluation.finetuning import multiview_data_config
from timeclr.evaluation.metrics import average_views, confusion_matrix, summarise, topk_accuracy
from timeclr.pipelines.loader.clip_source import Video
from timeclr.pipelines.loader.frame_selection import segment_indices
from timeclr.pipelines.loader.video import VideoLoader
from timeclr.train import main as train_main
from tests.helpers.runs import assert_same_parameters, die_after_checkpoint, losses, moving_bars_manifest
from tests.helpers.videos import make_video



@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return moving_bars_manifest(tmp_path_factory.mktemp("tiny"))


def overrides(manifest, out_dir, *extra):
    """Fine-tune pipelines/debug.yaml's segment view (view 0) on the tiny set, tested on the same set."""
    return [f"data.manifest={manifest}", f"eval.test_manifest={manifest}", f"out_dir={out_dir}",
            "data.batch_size=4", "data.drop_last=true", "data.views.0.crop_size=32", "data.views.1.crop_size=32",
            "data.short_side=32", "model.proj_hidden=64", "model.proj_dim=32", "train.warmup_steps=2",
            "train.lr=0.003", "finetune.test_clips=2", "finetune.test_crops=3", "eval.batch_size=8", *extra]


@pytest.fixture(scope="module")
def pretrained(manifest, tmp_path_factory):
    """A TimeCLR pretraining checkpoint (2 steps) of the architecture ``overrides`` asks for."""
    out = tmp_path_factory.mktemp("pretrain")
    train_main(["pipelines/debug.yaml", *overrides(manifest, out, "train.epochs=1", "train.evaluate=false")])
    return str(out / "checkpoint.pt")


def test_classifier_holds_the_checkpoints_encoder_without_its_head(manifest, pretrained):
    cfg = load_config("pipelines/debug.yaml", overrides(manifest, "unused", f"checkpoint={pretrained}"))
    model = build_classifier(cfg, num_classes=2, device=torch.device("cpu"))
    saved = torch.load(pretrained, weights_only=True)["model"]
    got = model.state_dict()
    backbone = {k: v for k, v in saved.items() if k.startswith("backbone.")}
    assert backbone and set(backbone) == {k for k in got if k.startswith("backbone.")}, \
        f"backbone keys differ: {sorted(set(backbone) ^ {k for k in got if k.startswith('backbone.')})[:5]}"
    for key, value in backbone.items():
        assert torch.equal(got[key], value), f"{key}: the classifier's backbone differs from the checkpoint's"
    assert any(k.startswith("head.") for k in saved), "the pretraining checkpoint should hold a projection head"
    assert not any(k.startswith("head.") for k in got), f"projection head kept: {[k for k in got if 'head' in k]}"
    assert set(got) - set(backbone) == {"fc.weight", "fc.bias"} and got["fc.weight"].shape == (2, 128)
    assert model(torch.randn(2, 3, 4, 32, 32)).shape == (2, 2)


def test_architecture_mismatch_names_both_and_missing_checkpoint_is_named(manifest, pretrained, tmp_path):
    with pytest.raises(SystemExit) as e:
        finetune_main(["pipelines/debug.yaml", *overrides(manifest, tmp_path / "x", f"checkpoint={pretrained}",
                                                           "model.proj_dim=16")])
    message = str(e.value)
    assert pretrained in message and "'proj_dim': 32" in message and "'proj_dim': 16" in message, message
    with pytest.raises(SystemExit, match="checkpoint=PATH"):
        finetune_main(["pipelines/debug.yaml", *overrides(manifest, tmp_path / "x")])
    with pytest.raises(SystemExit, match="finetune.view"):
        finetune_main(["pipelines/debug.yaml", *overrides(manifest, tmp_path / "x", "checkpoint=random",
                                                           "finetune.view=2")])


@pytest.mark.parametrize("input", ["rgb", "difference"])
def test_layerwise_learning_rates_cover_every_parameter_once(manifest, input):
    cfg = load_config("pipelines/debug.yaml", overrides(manifest, "unused", "checkpoint=random", f"model.input={input}",
                                                        "finetune.backbone_lr=0.1", "finetune.layer_decay=0.5"))
    model = build_classifier(cfg, num_classes=2, device=torch.device("cpu"))
    groups = param_groups(model, cfg.finetune)
    ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters()) and len(ids) == len(set(ids))
    # the small CNN: 4 conv stages, input side first, then the classifier
    assert [g["lr_scale"] for g in groups] == pytest.approx([0.1 * 0.5 ** 4, 0.1 * 0.5 ** 3, 0.1 * 0.5 ** 2,
                                                             0.1 * 0.5, 1.0])
    convs = model.backbone.net if input == "difference" else model.backbone  # FrameDifference wraps the CNN
    assert groups[0]["params"][0] is convs.features[0].weight


def test_view_averaging_on_a_toy_case_with_a_known_answer():
    """Logits built as log-probabilities, so each view's softmax is known exactly."""
    k = 8
    order = lambda *first: list(first) + [c for c in range(k) if c not in first]  # noqa: E731
    ranked = np.array([0.40, 0.20, 0.13, 0.10, 0.07, 0.05, 0.03, 0.02])  # probabilities by rank

    def by_rank(classes):
        p = np.zeros(k)
        p[classes] = ranked
        return p

    probs = np.zeros((3, 4, k))  # (views, videos, classes)
    # video 0, label 1: one view all but certain of class 0 (class 1 at 1e-6), two views for class 1.
    # The mean of the softmax picks 1 (0.5 vs 0.46); a mean of the logits would pick 0.
    probs[0, 0] = [0.98, 1e-6, 0.02 - 1e-6, 0, 0, 0, 0, 0]
    probs[1, 0] = probs[2, 0] = [0.20, 0.75, 0.05, 0, 0, 0, 0, 0]
    probs[:, 1] = by_rank(order(0, 1, 2, 3, 4))  # video 1, label 4: ranked 5th -> top-5 only
    probs[:, 2] = by_rank(order(0, 1, 2, 3, 4, 5))  # video 2, label 5: ranked 6th -> neither
    probs[:, 3] = by_rank(order(7))  # video 3, label 7: first in every view
    labels = torch.tensor([1, 4, 5, 7])
    logits = torch.tensor(np.log(np.maximum(probs, 1e-30)) + np.arange(3)[:, None, None])  # + a per-view shift

    mean = average_views(logits)
    assert torch.allclose(mean.double(), torch.tensor(probs.mean(0)), atol=1e-6), (mean, probs.mean(0))
    assert mean.argmax(1).tolist() == [1, 0, 0, 7]
    assert logits.mean(0).argmax(1)[0].item() == 0, "the toy case should separate softmax from logit averaging"
    assert topk_accuracy(mean, labels, 1) == pytest.approx(50.0)
    assert topk_accuracy(mean, labels, 5) == pytest.approx(75.0)
    result = summarise(logits.float(), labels, [f"c{i}" for i in range(k)])
    assert (result["top1"], result["top5"]) == pytest.approx((50.0, 75.0)), result
    assert result["single_view_top1"] == pytest.approx((25.0 + 50.0 + 50.0) / 3)  # view 0 misses video 0
    cm = np.zeros((k, k), int)
    for y, p in zip([1, 4, 5, 7], [1, 0, 0, 7]):
        cm[y, p] += 1
    assert confusion_matrix(mean.argmax(1), labels, k).tolist() == cm.tolist()
    want = {f"c{c}": (None if c not in (1, 4, 5, 7) else 100.0 * cm[c, c]) for c in range(k)}
    assert result["per_class"] == want, result["per_class"]
    assert result["mean_class_accuracy"] == pytest.approx(50.0)


def test_test_views_are_clip_k_and_crops_along_the_long_side(tmp_path):
    """C x S test views of a landscape and a portrait video whose thirds along the long side are
    red, green and blue: crop s shows third s, and view k·S + s shows the frames of clip k."""
    colours = np.array([[220, 30, 30], [30, 220, 30], [30, 30, 220]], np.uint8)
    landscape = np.repeat(np.repeat(colours[None, :, :], 32, 0), 32, 1)  # (32, 96, 3): thirds left to right
    portrait = landscape.transpose(1, 0, 2).copy()  # (96, 32, 3): thirds top to bottom
    videos = [Video(make_video(tmp_path / "wide.webm", 30, 96, 32, frames=[landscape] * 30), 0, 30, 96, 32),
              Video(make_video(tmp_path / "tall.webm", 30, 32, 96, frames=[portrait] * 30), 1, 30, 32, 96)]
    cfg = load_config("pipelines/debug.yaml", ["data.manifest=unused", "data.short_side=32",
                                               "data.views.0.crop_size=32", "finetune.test_clips=3",
                                               "finetune.test_crops=3", "eval.batch_size=2"])
    data = multiview_data_config(cfg)
    (batch,) = list(VideoLoader(data, videos, uint8=True))
    assert len(batch["views"]) == 9
    for v, (view, frames) in enumerate(zip(batch["views"], batch["frame_indices"])):
        clip, crop = divmod(v, 3)
        want = segment_indices(30, 4, False, clip=clip, clips=3).tolist()
        for b in range(2):
            assert frames[b].tolist() == want, f"view {v} (clip {clip}): frames {frames[b].tolist()}, want {want}"
            mean = view[b, :, 4:-4, 4:-4].numpy().reshape(-1, 3).astype(float).mean(0)  # inside: chroma bleeds at edges
            assert np.abs(mean - colours[crop]).max() < 12, (
                f"{['landscape', 'portrait'][b]} crop {crop}: mean colour {mean.round()}, want {colours[crop]}")
    # the default eval view (1 clip, 1 crop) is the centre crop, as before
    data = multiview_data_config(load_config("pipelines/debug.yaml", [
        "data.manifest=unused", "data.short_side=32", "data.views.0.crop_size=32", "finetune.test_clips=1",
        "finetune.test_crops=1", "eval.batch_size=2"]))
    (batch,) = list(VideoLoader(data, videos, uint8=True))
    for b in range(2):
        mean = batch["views"][0][b, :, 4:-4, 4:-4].numpy().reshape(-1, 3).astype(float).mean(0)
        assert np.abs(mean - colours[1]).max() < 12, f"centre crop of video {b}: {mean.round()}"


def test_a_few_steps_lower_the_loss_and_the_run_writes_its_outputs(manifest, pretrained, tmp_path):
    out = tmp_path / "run"
    # batch = the whole set, so each step sees the same 8 videos (other frames): a learnable task
    finetune_main(["pipelines/debug.yaml", *overrides(manifest, out, f"checkpoint={pretrained}", "train.epochs=12",
                                                       "data.batch_size=8", "data.augment=false")])
    seen = losses(out)
    assert len(seen) == 12 and seen[0] == pytest.approx(np.log(2), abs=0.05), seen  # small classifier init
    assert np.mean(seen[-3:]) < 0.7 * np.mean(seen[:3]), f"loss did not fall: {np.round(seen, 3)}"
    for name in ("config.yaml", "loss.png", "metrics.jsonl", "checkpoint.pt", "confusion.png", "finetune.json"):
        assert (out / name).exists(), name
    result = json.loads((out / "finetune.json").read_text())
    assert result["protocol"]["clips"] == 2 and result["protocol"]["crops"] == 3 and result["protocol"]["videos"] == 8
    assert 0 <= result["top1"] <= result["top5"] <= 100 and set(result["per_class"]) == {"left", "right"}


def test_resume_reproduces_the_uninterrupted_losses(manifest, pretrained, tmp_path, monkeypatch):
    args = [f"checkpoint={pretrained}", "train.epochs=3", "train.ckpt_every=2", "train.evaluate=false",
            "finetune.dropout=0.5", "finetune.label_smoothing=0.1", "finetune.backbone_lr=0.5"]
    whole = tmp_path / "whole"
    finetune_main(["pipelines/debug.yaml", *overrides(manifest, whole, *args)])

    cut = tmp_path / "cut"
    restore = die_after_checkpoint(monkeypatch, step=4)
    with pytest.raises(SystemExit, match="interrupted; the last checkpoint is .*checkpoint.pt; the same command resumes"):
        finetune_main(["pipelines/debug.yaml", *overrides(manifest, cut, *args)])
    assert len(losses(cut)) == 4
    restore()
    finetune_main(["pipelines/debug.yaml", *overrides(manifest, cut, *args)])  # the same command resumes
    assert losses(cut) == pytest.approx(losses(whole), rel=1e-5), (losses(cut), losses(whole))
    # the run directory belongs to that encoder: another one is refused, not resumed
    with pytest.raises(SystemExit, match="fine-tuned from checkpoint="):
        finetune_main(["pipelines/debug.yaml", *overrides(manifest, cut, *args[1:], "checkpoint=random")])


def _ddp_worker(rank, port, manifest, out_dir):
    from tests.helpers.spawn import torchrun_env

    torchrun_env(rank, 2, port)
    finetune_main(["pipelines/debug.yaml", *_ddp_args(manifest, out_dir, batch_size=2)])


def _ddp_args(manifest, out_dir, batch_size):
    # GroupNorm and SGD: per-rank BatchNorm statistics would differ from the global batch's, Adam amplifies float noise
    return overrides(manifest, out_dir, "checkpoint=random", "train.epochs=2", f"data.batch_size={batch_size}",
                     "model.norm=group", "train.optimizer=sgd", "train.lr=0.05", "eval.batch_size=3")


def test_ddp_two_cpu_ranks_equal_one_process_and_the_test_gathers_every_video(manifest, tmp_path):
    """2 gloo ranks with batch B each fine-tune to the parameters and logged (global) losses of one
    process with batch 2B, and the sharded test scores every video once."""
    from tests.helpers.spawn import free_port, spawn_with_deadline

    one = tmp_path / "one"
    finetune_main(["pipelines/debug.yaml", *_ddp_args(manifest, one, batch_size=4)])
    two = tmp_path / "two"
    spawn_with_deadline(_ddp_worker, (free_port(), manifest, str(two)), 2)

    assert losses(two) == pytest.approx(losses(one), rel=1e-4), (losses(two), losses(one))
    assert_same_parameters(one, two, tol=1e-5)
    a, b = (json.loads((d / "finetune.json").read_text()) for d in (one, two))
    assert b["protocol"]["videos"] == 8 and b["confusion"] == a["confusion"], (a["confusion"], b["confusion"])
