"""The training loop on CPU: config errors, learning, checkpoints and resume, evaluation output."""
import json

import numpy as np
import pytest
import torch

from timeclr.training import objectives, run
from timeclr.config import load_config
from timeclr.evaluate import main as evaluate_main
from timeclr.training.optim import lr_at
from timeclr.train import main as train_main
from tests.helpers.runs import assert_same_parameters, die_after_checkpoint, losses, moving_bars_manifest



@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return moving_bars_manifest(tmp_path_factory.mktemp("tiny"))


def overrides(manifest, out_dir, *extra):
    return [f"data.manifest={manifest}", f"out_dir={out_dir}", "data.batch_size=4", "data.drop_last=true",
            "data.views.0.crop_size=32", "data.views.1.crop_size=32", "data.short_side=32",
            "model.proj_hidden=64", "model.proj_dim=32", "train.warmup_steps=2", "train.lr=0.003",
            "train.evaluate=false", *extra]


def test_config_errors_name_the_key(tmp_path):
    with pytest.raises(SystemExit, match="train.lrr"):
        train_main(["pipelines/debug.yaml", "train.lrr=0.1"])
    with pytest.raises(SystemExit, match="train.epochs"):
        train_main(["pipelines/debug.yaml", "train.epochs=many"])
    with pytest.raises(SystemExit, match="model.backbone"):
        train_main(["pipelines/debug.yaml", "model.backbone=vit"])
    with pytest.raises(SystemExit, match="data.manifest"):
        train_main(["pipelines/debug.yaml", f"data.manifest={tmp_path}/missing.csv", f"out_dir={tmp_path}"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("data:\n  batch_sise: 4\n")
    with pytest.raises(SystemExit, match="batch_sise"):
        train_main([str(bad)])


def test_schedule_warms_up_then_decays():
    cfg = load_config(None, ["train.lr=1.0", "train.min_lr=0.0", "train.warmup_steps=10"]).train
    lrs = [lr_at(s, 110, cfg) for s in range(110)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[60] == pytest.approx(0.5, abs=1e-9)  # half-way through the cosine
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:])) and lrs[-1] < 0.01


def test_a_few_steps_lower_the_loss_and_change_the_parameters(manifest, tmp_path):
    out = tmp_path / "run"
    # batch = the whole set, so each step sees the same 8 videos (other frames): a learnable task
    train_main(["pipelines/debug.yaml", *overrides(manifest, out, "train.epochs=16", "data.batch_size=8",
                                                    "data.augment=false")])
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    torch.manual_seed(0)  # the same seed train.seed gives the initial weights
    from timeclr.models import TimeCLRModel

    init = TimeCLRModel("small", 64, 32).state_dict()
    changed = [k for k, v in ckpt["model"].items() if v.dtype.is_floating_point and not torch.equal(v, init[k])]
    assert len(changed) > 0.8 * sum(v.dtype.is_floating_point for v in init.values()), "most weights should move"
    seen = losses(out)
    assert len(seen) == 16 and ckpt["step"] == 16
    assert np.mean(seen[-4:]) < 0.7 * np.mean(seen[:4]), f"loss did not fall: {np.round(seen, 3)}"
    for name in ("config.yaml", "loss.png", "metrics.jsonl"):
        assert (out / name).exists(), name
    try:  # TensorBoard, when installed: the same losses as metrics.jsonl, no extra flag
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError:
        return
    ea = EventAccumulator(str(out))
    ea.Reload()
    tb = [e.value for e in ea.Scalars("train/loss")]
    assert np.allclose(tb, seen, rtol=1e-6), f"TensorBoard {tb} vs metrics.jsonl {seen}"
    assert "train/lr" in ea.Tags()["scalars"]


def test_resume_reproduces_the_uninterrupted_losses(manifest, tmp_path, monkeypatch):
    args = ["train.epochs=3", "train.ckpt_every=2"]
    whole = tmp_path / "whole"
    train_main(["pipelines/debug.yaml", *overrides(manifest, whole, *args)])

    cut = tmp_path / "cut"
    restore = die_after_checkpoint(monkeypatch, step=4)
    with pytest.raises(SystemExit, match="interrupted; the last checkpoint is .*checkpoint.pt; the same command resumes"):
        train_main(["pipelines/debug.yaml", *overrides(manifest, cut, *args)])
    assert len(losses(cut)) == 4
    restore()
    train_main(["pipelines/debug.yaml", *overrides(manifest, cut, *args)])  # the same command resumes
    assert losses(cut) == pytest.approx(losses(whole), rel=1e-5), (losses(cut), losses(whole))


def test_evaluate_command_writes_eval_json(manifest, tmp_path):
    out = tmp_path / "ev"
    assert evaluate_main(["pipelines/debug.yaml", *overrides(manifest, out, f"eval.test_manifest={manifest}",
                                                               "eval.knn_k=3", "checkpoint=random")]) == 0
    result = json.loads((out / "eval.json").read_text())
    assert set(result) == {"linear_top1", "knn_top1", "retrieval_r1", "retrieval_r5", "retrieval_r10", "retrieval_r20"}
    assert all(0 <= v <= 100 for v in result.values())
    with pytest.raises(SystemExit, match="checkpoint"):
        evaluate_main(["pipelines/debug.yaml", *overrides(manifest, out, f"eval.test_manifest={manifest}")])


def _ddp_worker(rank, port, manifest, out_dir):
    from tests.helpers.spawn import torchrun_env

    torchrun_env(rank, 2, port)
    # 2 ranks x 2 videos per step = the one-process run's 4 videos per step (SGD: Adam would amplify float noise)
    train_main(["pipelines/debug.yaml", *overrides(manifest, out_dir, "train.epochs=2", "data.batch_size=2",
                                                     "model.norm=group", "train.loss_backend=torch", "train.optimizer=sgd", "train.lr=0.05")])


def test_ddp_two_cpu_ranks_equal_one_process_with_the_doubled_batch(manifest, tmp_path):
    """torchrun-style DDP with gloo: sharded data, negatives gathered from both ranks, DDP's
    gradient averaging; the parameters after training equal one process with batch 2B.
    (GroupNorm: per-rank BatchNorm statistics would differ from the global batch's, and torch's
    SyncBatchNorm does not run on CPU.)"""
    from tests.helpers.spawn import free_port, spawn_with_deadline

    one = tmp_path / "one"
    train_main(["pipelines/debug.yaml", *overrides(manifest, one, "train.epochs=2", "data.batch_size=4",
                                                     "model.norm=group", "train.loss_backend=torch", "train.optimizer=sgd", "train.lr=0.05")])
    two = tmp_path / "two"
    spawn_with_deadline(_ddp_worker, (free_port(), manifest, str(two)), 2)

    assert losses(two) == pytest.approx(losses(one), rel=1e-4), (losses(two), losses(one))
    assert_same_parameters(one, two, tol=1e-5)


def test_evaluate_accepts_checkpoints_written_before_a_model_key_existed(manifest, tmp_path):
    out = tmp_path / "old"
    train_main(["pipelines/debug.yaml", *overrides(manifest, out, "train.epochs=1")])
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    del ckpt["config"]["model"]["norm"]  # as saved before model.norm was added
    torch.save(ckpt, out / "checkpoint.pt")
    assert evaluate_main(["pipelines/debug.yaml", *overrides(manifest, tmp_path / "ev", f"eval.test_manifest={manifest}",
                                                               "eval.knn_k=3", f"checkpoint={out}/checkpoint.pt")]) == 0
    with pytest.raises(SystemExit, match="holds model"):  # a real architecture mismatch is still an error
        evaluate_main(["pipelines/debug.yaml", *overrides(manifest, tmp_path / "ev2", f"eval.test_manifest={manifest}",
                                                            "model.proj_dim=16", f"checkpoint={out}/checkpoint.pt")])


def test_non_finite_loss_stops_naming_the_step_and_the_videos():
    from timeclr.errors import NonFiniteLoss
    from timeclr.pipelines.loader.clip_source import Video

    videos = [Video("a/first.webm", 0, 10), Video("b/second.webm", 1, 10), Video("c/third.webm", 0, 10)]
    for bad in (float("nan"), float("inf")):
        check = run.FiniteCheck(videos)
        # steps 5 and 6 fine, 7 bad, 8 bad too: the first bad one is named, with its own batch's videos
        check.add(5, 0.1, torch.tensor(1.0), {"index": torch.tensor([1, 1])})
        check.add(6, 0.1, torch.tensor(2.0), {"index": torch.tensor([1, 0])})
        check.add(7, 0.2, torch.tensor(bad), {"index": torch.tensor([2, 0])})
        check.add(8, 0.3, torch.tensor(bad), {"index": torch.tensor([1, 1])})
        with pytest.raises(NonFiniteLoss, match=r"at step 7 \(lr 0.2\).*\['c/third.webm', 'a/first.webm'\]$"):
            check.check()
    check = run.FiniteCheck(videos)
    check.add(7, 0.1, torch.tensor(2.5), {"index": torch.tensor([2, 0])})
    check.check()  # finite: no error
    assert check.pending == [], "a check must start the next window empty"


def test_train_command_turns_a_non_finite_loss_into_an_exit_message(manifest, tmp_path, monkeypatch):
    monkeypatch.setattr(objectives, "nt_xent", lambda z, **kw: z.sum() * float("nan"))
    with pytest.raises(SystemExit, match=r"non-finite loss nan at step 0 .*the batch's videos: \["):
        train_main(["pipelines/debug.yaml", *overrides(manifest, tmp_path / "nan", "train.epochs=1")])


def _features_worker(rank, port, manifest, out_path):
    import torch.distributed as dist

    from timeclr.evaluation.features import eval_data_config, extract_features
    from timeclr.training.run import random_model
    from tests.helpers.spawn import torchrun_env

    torchrun_env(rank, 2, port)
    dist.init_process_group("gloo")
    try:
        cfg = load_config("pipelines/debug.yaml", overrides(manifest, "unused", "eval.batch_size=3"))
        model, seen = random_model(cfg, torch.device("cpu")), []
        features = model.features
        model.features = lambda x: (seen.append(len(x)), features(x))[1]  # count the clips this rank encodes
        feats, labels = extract_features(model, eval_data_config(cfg), manifest, torch.device("cpu"))
        torch.save({"feats": feats, "labels": labels, "encoded": sum(seen)}, f"{out_path}.rank{rank}")
    finally:
        dist.destroy_process_group()


def test_ddp_ranks_share_the_feature_extraction_and_all_get_every_video(manifest, tmp_path):
    """Under DDP each rank extracts the features of its shard of the split (none idles at a
    barrier while rank 0 does it all, which NCCL's timeout would end), and every rank gets all of
    them in manifest order: the same features and labels as one process."""
    from timeclr.evaluation.features import eval_data_config, extract_features
    from timeclr.pipelines.storage.manifest import read_manifest
    from timeclr.training.run import random_model
    from tests.helpers.spawn import free_port, spawn_with_deadline

    cfg = load_config("pipelines/debug.yaml", overrides(manifest, "unused", "eval.batch_size=3"))
    want_x, want_y = extract_features(random_model(cfg, torch.device("cpu")), eval_data_config(cfg), manifest,
                                      torch.device("cpu"))
    rows, _ = read_manifest(manifest)
    assert want_y.tolist() == [r["label"] for r in rows]
    out = tmp_path / "feats.pt"
    spawn_with_deadline(_features_worker, (free_port(), manifest, str(out)), 2)
    encoded = [torch.load(f"{out}.rank{rank}", weights_only=True)["encoded"] for rank in (0, 1)]
    assert sorted(encoded) == [len(rows) // 2] * 2, f"each rank should encode its half of {len(rows)}: {encoded}"
    for rank in (0, 1):
        got = torch.load(f"{out}.rank{rank}", weights_only=True)
        assert torch.equal(got["labels"], want_y), (rank, got["labels"], want_y)
        err = (got["feats"] - want_x).abs().max().item()
        assert err < 1e-5, f"rank {rank}: features differ from one process's by {err:.2e}"


def test_a_run_folder_of_another_experiment_is_refused_not_resumed(manifest, tmp_path):
    """A rerun in a folder holding another model's run (runs/synthetic from before the main job
    moved to v2) ends in one line naming what differs, instead of going on from those weights."""
    out = tmp_path / "run"
    train_main(["pipelines/debug.yaml", *overrides(manifest, out, "train.epochs=1")])
    with pytest.raises(SystemExit) as e:
        train_main(["pipelines/debug.yaml", *overrides(manifest, out, "train.epochs=1", "model.input=difference")])
    message = str(e.value.code)
    assert "holds a run of another experiment (model.input: 'rgb' there, 'difference' now)" in message, message
    assert "\n" not in message, message
