"""Multi-node training on real torchrun agents: two "nodes" on this machine (two agents on
localhost meeting through the c10d rendezvous, 2 gloo ranks each).

References: one process with the global batch (4 ranks x 2 videos = 8), uninterrupted. The
restart test needs TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 (set by run_agents): with it unset the
restarted workers fail in gloo's connectFullMesh, reading the first attempt's addresses.
"""
import os

import pytest

from tests.helpers.runs import assert_same_parameters, losses, moving_bars_manifest
from tests.helpers.torchrun import logs, run_agents
from timeclr.train import main as train_main


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return moving_bars_manifest(tmp_path_factory.mktemp("bars"))


def overrides(manifest, out_dir, *extra):
    # GroupNorm and SGD: per-rank BatchNorm statistics and Adam's amplification of float noise
    # would make "the same parameters" a tolerance question
    return [f"data.manifest={manifest}", f"out_dir={out_dir}", "data.drop_last=true", "data.views.0.crop_size=32",
            "data.views.1.crop_size=32", "data.short_side=32", "model.proj_hidden=64", "model.proj_dim=32",
            "model.norm=group", "train.loss_backend=torch", "train.optimizer=sgd", "train.lr=0.05",
            "train.warmup_steps=2", "train.evaluate=false", *extra]


def test_two_torchrun_agents_train_as_one_process_with_the_global_batch(manifest, tmp_path):
    one = tmp_path / "one"
    train_main(["pipelines/debug.yaml", *overrides(manifest, one, "train.epochs=3", "data.batch_size=8")])
    two = tmp_path / "nodes"
    codes = run_agents(2, 2, ["-m", "timeclr.train"],
                       ["pipelines/debug.yaml", *overrides(manifest, two, "train.epochs=3", "data.batch_size=2")],
                       tmp_path)
    assert codes == [0, 0], f"agents exited {codes}:\n{logs(tmp_path, 2)}"
    assert losses(two) == pytest.approx(losses(one), rel=1e-4), (losses(two), losses(one))
    assert_same_parameters(one, two, tol=1e-5)


@pytest.mark.skipif(os.environ.get("TIMECLR_RESTART_TEST") != "1", reason=(
    "opt-in (TIMECLR_RESTART_TEST=1): in 1 of 8 runs the restarted job hung at its last step and run_agents' "
    "deadline did not end it, which would hang CI; not understood yet"))
def test_a_rank_killed_mid_run_restarts_from_the_last_checkpoint_and_ends_as_an_uninterrupted_run(manifest, tmp_path):
    # the reference is the uninterrupted job in one process; the job under test is two agents x
    # 2 ranks whose rank 0 is killed right after the checkpoint of step 4 (of 6, one per epoch): torchrun restarts
    # every worker of both agents (--max-restarts=1), and they resume from that checkpoint
    whole = tmp_path / "whole"
    train_main(["pipelines/debug.yaml", *overrides(manifest, whole, "train.epochs=6", "data.batch_size=8",
                                                   "train.ckpt_every=2")])
    killed = tmp_path / "killed"
    codes = run_agents(2, 2, ["-m", "tests.helpers.torchrun_die_once"],
                       ["pipelines/debug.yaml", *overrides(manifest, killed, "train.epochs=6", "data.batch_size=2",
                                                           "train.ckpt_every=2")],
                       tmp_path, max_restarts=1, env={"TIMECLR_TEST_DIE_AT_STEP": "4"})
    log = logs(tmp_path, 2)
    assert codes == [0, 0], f"agents exited {codes}:\n{log}"
    assert "resuming" in log and "at step 4/6" in log, log
    assert losses(killed) == pytest.approx(losses(whole), rel=1e-4), (losses(killed), losses(whole))
    assert_same_parameters(whole, killed, tol=1e-5)


@pytest.mark.parametrize("env, warns", [
    ({"TORCHELASTIC_USE_AGENT_STORE": "True", "TORCHELASTIC_MAX_RESTARTS": "1"}, True),
    ({"TORCHELASTIC_USE_AGENT_STORE": "False", "TORCHELASTIC_MAX_RESTARTS": "1"}, False),  # the variable is set
    ({"TORCHELASTIC_USE_AGENT_STORE": "True", "TORCHELASTIC_MAX_RESTARTS": "0"}, False),  # nothing restarts
    ({}, False),  # not under torchrun
])
def test_restarts_with_the_shared_agent_store_are_detected(monkeypatch, env, warns):
    from timeclr import run

    for k in ("TORCHELASTIC_USE_AGENT_STORE", "TORCHELASTIC_MAX_RESTARTS"):
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert run.restarts_share_the_agent_store() is warns, env
