"""Checkpoints are data (issue #25): a checkpoint that would run code when unpickled is refused in
one line by every command that loads one, and none of its code runs; an old checkpoint converts
on the user's explicit word; a full disk while checkpointing stops the run in one line and leaves
the previous checkpoint loadable."""
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from timeclr.files import atomic
from timeclr.training import checkpoints
from timeclr.benchmarks.experiments import ablation
from timeclr.config import load_config
from timeclr.convert import main as convert_main
from timeclr.errors import UnsafeCheckpoint
from timeclr.evaluate import main as evaluate_main
from timeclr.finetune import main as finetune_main
from timeclr.training.run import load_model
from timeclr.train import main as train_main
from tests.helpers.runs import losses, moving_bars_manifest
from tests.test_train import overrides


ARGS = ("train.epochs=2", "train.ckpt_every=2")  # 2 steps an epoch: checkpoints at steps 2 and 4


class Hostile:
    """What an attacker's pickle holds: unpickling calls ``__reduce__``'s callable with its
    arguments, here a shell command that leaves a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return moving_bars_manifest(tmp_path_factory.mktemp("bars"))


@pytest.fixture(scope="module")
def trained(manifest, tmp_path_factory):
    """A finished 4-step run's folder."""
    out = tmp_path_factory.mktemp("run") / "run"
    train_main(["pipelines/debug.yaml", *overrides(manifest, out, *ARGS)])
    return out


def hostile_copy(good: Path, path: Path, marker: Path) -> Path:
    """A real checkpoint with one value swapped for a ``Hostile``: it loads as a checkpoint would,
    but for that one value."""
    ckpt = torch.load(good, weights_only=True)
    ckpt["config"] = Hostile(marker)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, path)
    return path


def one_line(e) -> str:
    message = str(e.value)
    assert message.strip() and "\n" not in message.strip(), f"not one line: {message!r}"
    return message


def test_torch_would_run_the_hostile_checkpoint_without_weights_only(trained, tmp_path):
    """The hostile file is a working attack: the test below would pass for nothing otherwise."""
    marker = tmp_path / "ran"
    torch.load(hostile_copy(trained / "checkpoint.pt", tmp_path / "h.pt", marker), weights_only=False)
    assert marker.exists(), "the hostile checkpoint did not run its command under weights_only=False"


def _train(manifest, out, ckpt):
    os.replace(ckpt, out / "checkpoint.pt")
    train_main(["pipelines/debug.yaml", *overrides(manifest, out, "train.epochs=3", "train.ckpt_every=2")])


def _finetune_resume(manifest, out, ckpt, good):
    os.replace(ckpt, out / "checkpoint.pt")
    finetune_main(["pipelines/debug.yaml", *overrides(manifest, out, f"checkpoint={good}")])


def _ablation(manifest, out, ckpt):
    ablation.load_trained(load_config("pipelines/debug.yaml", overrides(manifest, out)), ckpt)


COMMANDS = {  # every command (and benchmark) that loads a checkpoint, given the hostile one
    "train resuming": lambda manifest, out, ckpt, good: _train(manifest, out, ckpt),
    "evaluate": lambda manifest, out, ckpt, good: evaluate_main(
        ["pipelines/debug.yaml", *overrides(manifest, out, f"eval.test_manifest={manifest}", f"checkpoint={ckpt}")]),
    "finetune": lambda manifest, out, ckpt, good: finetune_main(
        ["pipelines/debug.yaml", *overrides(manifest, out, f"eval.test_manifest={manifest}", f"checkpoint={ckpt}")]),
    "finetune resuming": _finetune_resume,
    "ablation benchmark": lambda manifest, out, ckpt, good: _ablation(manifest, out, ckpt),
    "convert without --trusted": lambda manifest, out, ckpt, good: convert_main([str(ckpt), str(out / "new.pt")]),
}


@pytest.mark.parametrize("command", COMMANDS)
def test_a_hostile_checkpoint_runs_nothing_and_is_refused_in_one_line(manifest, trained, tmp_path, command):
    marker = tmp_path / "ran"
    out = tmp_path / "out"
    out.mkdir()
    ckpt = hostile_copy(trained / "checkpoint.pt", tmp_path / "hostile.pt", marker)
    with pytest.raises((SystemExit, UnsafeCheckpoint)) as e:
        COMMANDS[command](manifest, out, ckpt, trained / "checkpoint.pt")
    message = one_line(e)
    assert not marker.exists(), f"{command}: the checkpoint's command ran"
    if command == "convert without --trusted":
        assert "--trusted" in message and not (out / "new.pt").exists(), message
    else:
        assert "hostile.pt" in message or "checkpoint.pt" in message, f"{command}: the file is not named: {message}"
        assert "refused" in message and "posix.system" in message, message
        assert not (out / "metrics.jsonl").exists(), f"{command}: it trained anyway"


def test_a_hostile_latest_checkpoint_is_not_passed_over_for_the_previous_one(trained, tmp_path):
    shutil.copy(trained / "checkpoint.prev.pt", tmp_path / "checkpoint.prev.pt")
    marker = tmp_path / "ran"
    hostile_copy(trained / "checkpoint.pt", tmp_path / "checkpoint.pt", marker)
    with pytest.raises(UnsafeCheckpoint, match="refused"):
        checkpoints.latest_good_checkpoint(tmp_path / "checkpoint.pt")
    assert not marker.exists()


def test_an_old_checkpoint_is_refused_with_how_to_convert_and_converts_on_request(manifest, trained, tmp_path):
    """What older versions could hold harmlessly: the config as an OmegaConf object, numpy numbers."""
    good = torch.load(trained / "checkpoint.pt", weights_only=True)
    old = dict(good, config=OmegaConf.create(good["config"]),
               loader={**good["loader"], "position": np.int64(good["loader"]["position"])})
    torch.save(old, tmp_path / "old.pt")
    with pytest.raises(UnsafeCheckpoint) as e:
        checkpoints.load_checkpoint(tmp_path / "old.pt")
    assert f"python -m timeclr.convert {tmp_path / 'old.pt'} NEW.pt --trusted" in one_line(e), str(e.value)

    assert convert_main([str(tmp_path / "old.pt"), str(tmp_path / "new.pt"), "--trusted"]) == 0
    new = checkpoints.load_checkpoint(tmp_path / "new.pt")
    assert new["config"] == good["config"] and new["loader"] == good["loader"], (new["config"], new["loader"])
    for key, value in good["model"].items():
        assert torch.equal(new["model"][key], value), key
    cfg = load_config("pipelines/debug.yaml", overrides(manifest, tmp_path, f"checkpoint={tmp_path / 'new.pt'}"))
    load_model(cfg, torch.device("cpu"))  # the converted file is usable as it was


def test_convert_names_a_file_that_is_no_checkpoint_in_one_line(tmp_path):
    (tmp_path / "cut.pt").write_bytes(b"PK\x03\x04 not a whole file")
    with pytest.raises(SystemExit) as e:
        convert_main([str(tmp_path / "cut.pt"), str(tmp_path / "new.pt"), "--trusted"])
    assert f"{tmp_path / 'cut.pt'} is not a readable checkpoint" in one_line(e), str(e.value)
    assert not (tmp_path / "new.pt").exists()


def test_convert_names_what_has_no_plain_form(tmp_path):
    torch.save({"model": {}, "odd": {"x": [1, Path("a")]}}, tmp_path / "odd.pt")
    with pytest.raises(SystemExit) as e:
        convert_main([str(tmp_path / "odd.pt"), str(tmp_path / "new.pt"), "--trusted"])
    assert "['odd']['x'][1]" in one_line(e) and "PosixPath" in str(e.value), str(e.value)
    assert not (tmp_path / "new.pt").exists()


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full, whose writes fail with ENOSPC")
def test_a_full_disk_stops_training_in_one_line_and_keeps_the_previous_checkpoint(manifest, tmp_path, monkeypatch):
    """The step-4 checkpoint's temporary file is a link to /dev/full: every write to it fails with
    ENOSPC, as on a full disk. The run stops in one line; checkpoint.pt is still step 2's and loads;
    no temporary file is left; rerunning after "freeing space" resumes and ends as an uninterrupted run."""
    whole, out = tmp_path / "whole", tmp_path / "full"
    train_main(["pipelines/debug.yaml", *overrides(manifest, whole, *ARGS)])
    real = atomic.temp_path
    saves = []

    def full_at_second_checkpoint(path):
        tmp = real(path)
        if Path(path).name == "checkpoint.pt":
            saves.append(path)
            if len(saves) == 2:
                os.symlink("/dev/full", tmp)
        return tmp

    monkeypatch.setattr(atomic, "temp_path", full_at_second_checkpoint)
    with pytest.raises(SystemExit) as e:
        train_main(["pipelines/debug.yaml", *overrides(manifest, out, *ARGS)])
    message = one_line(e)
    assert "No space left on device" in message and "checkpoint of step 4 was not written" in message, message
    assert str(out / "checkpoint.pt") in message, message
    assert checkpoints.load_checkpoint(out / "checkpoint.pt")["step"] == 2, "the previous checkpoint is gone"
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".checkpoint")) == [], list(out.iterdir())

    monkeypatch.setattr(atomic, "temp_path", real)
    train_main(["pipelines/debug.yaml", *overrides(manifest, out, *ARGS)])
    assert losses(out) == pytest.approx(losses(whole), rel=1e-5), (losses(out), losses(whole))
