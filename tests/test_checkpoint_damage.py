"""Checkpoints that survive a bad write (issue #18): the previous one is kept, a damaged latest
one makes the run resume from it with a warning, and the commands name a damaged file in one line."""
import pytest
import torch

from timeclr.evaluate import main as evaluate_main
from timeclr.finetune import main as finetune_main
from timeclr.train import main as train_main
from tests.helpers.runs import die_after_checkpoint, losses, moving_bars_manifest
from tests.test_train import overrides


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return moving_bars_manifest(tmp_path_factory.mktemp("bars"))


def damage(path, how):
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 3])
    elif how == "zeroed":  # the same size, a range of zeros in the middle
        path.write_bytes(data[: len(data) // 2] + bytes(4096) + data[len(data) // 2 + 4096:])
    elif how == "empty":
        path.write_bytes(b"")


@pytest.mark.parametrize("how", ["truncated", "zeroed", "empty"])
def test_a_damaged_latest_checkpoint_resumes_from_the_previous_one_and_ends_as_an_uninterrupted_run(
        manifest, tmp_path, monkeypatch, capsys, how):
    args = ["train.epochs=4", "train.ckpt_every=2"]  # 2 steps an epoch: checkpoints at 2, 4, 6, 8
    whole = tmp_path / "whole"
    train_main(["pipelines/debug.yaml", *overrides(manifest, whole, *args)])
    assert torch.load(whole / "checkpoint.prev.pt", weights_only=True)["step"] == 6, "the previous one is kept"

    cut = tmp_path / "cut"
    restore = die_after_checkpoint(monkeypatch, step=6)
    with pytest.raises(SystemExit):
        train_main(["pipelines/debug.yaml", *overrides(manifest, cut, *args)])
    restore()
    damage(cut / "checkpoint.pt", how)  # the step-6 checkpoint; step 4's is checkpoint.prev.pt
    capsys.readouterr()
    train_main(["pipelines/debug.yaml", *overrides(manifest, cut, *args)])
    err = capsys.readouterr()
    assert "checkpoint.pt is not a readable checkpoint" in err.err and "checkpoint.prev.pt (step 4)" in err.err, err.err
    assert "resuming" in err.out and "at step 4/8" in err.out, err.out
    assert losses(cut) == pytest.approx(losses(whole), rel=1e-5), (losses(cut), losses(whole))


def test_two_damaged_checkpoints_and_damaged_checkpoints_given_to_commands_are_one_line_errors(manifest, tmp_path):
    out = tmp_path / "run"
    train_main(["pipelines/debug.yaml", *overrides(manifest, out, "train.epochs=2", "train.ckpt_every=2")])
    for name in ("checkpoint.pt", "checkpoint.prev.pt"):
        damage(out / name, "truncated")
    with pytest.raises(SystemExit) as e:
        train_main(["pipelines/debug.yaml", *overrides(manifest, out, "train.epochs=2", "train.ckpt_every=2")])
    message = str(e.value)
    assert "checkpoint.pt is not a readable checkpoint" in message and "checkpoint.prev.pt" in message, message
    assert "\n" not in message.strip(), message
    for command in (evaluate_main, finetune_main):
        with pytest.raises(SystemExit) as e:
            command(["pipelines/debug.yaml", *overrides(manifest, tmp_path / "x", f"eval.test_manifest={manifest}",
                                                        f"checkpoint={out / 'checkpoint.pt'}")])
        assert "is not a readable checkpoint" in str(e.value) and "\n" not in str(e.value).strip(), str(e.value)
