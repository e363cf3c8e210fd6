"""The run library's pieces on their own: the metrics log (jsonl and TensorBoard, fresh and
resumed), atomic writes, the optimizer registry, the record comparison."""
import json
import os
import time

import pytest
import torch

from timeclr.files.atomic import atomic_open, atomic_path, write_json
from timeclr.errors import ConfigError
from timeclr.training.optim import LARS, OPTIMIZERS, build_optimizer
from timeclr.files.recorded import differences
from timeclr.training.run import MetricsLog, RunDir


def rows(out_dir):
    return [json.loads(line) for line in open(RunDir(out_dir).metrics)]


def test_metrics_log_is_fresh_for_step_0_and_cut_back_on_resume(tmp_path):
    log = MetricsLog(str(tmp_path), 0)
    for s in range(1, 6):
        log.log({"step": s, "loss": 10.0 - s})
    log.close()
    resumed = MetricsLog(str(tmp_path), 3)  # a checkpoint at step 3: steps 4, 5 are redone
    assert [r["step"] for r in rows(tmp_path)] == [1, 2, 3], rows(tmp_path)
    resumed.log({"step": 4, "loss": 0.5})
    resumed.close()
    assert [(r["step"], r["loss"]) for r in rows(tmp_path)] == [(1, 9.0), (2, 8.0), (3, 7.0), (4, 0.5)]
    MetricsLog(str(tmp_path), 0).close()  # a fresh run in the same folder: nothing stale survives
    assert not os.path.exists(RunDir(tmp_path).metrics)


def test_metrics_log_writes_tensorboard_events_that_resume_cleanly(tmp_path):
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    log = MetricsLog(str(tmp_path), 0)
    for s in range(1, 6):
        log.log({"step": s, "loss": 10.0 - s, "lr": 0.1, "note": "not a number"})
    log.close()
    # TensorBoard orders event files by the whole second in their names, as a real restart would
    # differ; two writers within one second of each other may be read in either order
    time.sleep(1.1)
    log = MetricsLog(str(tmp_path), 3)
    for s in (4, 5, 6):
        log.log({"step": s, "loss": 100.0 + s, "lr": 0.1})
    log.log_eval({"pretrained": {"knn_top1": 73.8}, "random_init": {"knn_top1": 56.9}}, 6)
    log.close()
    ea = event_accumulator.EventAccumulator(str(tmp_path))
    ea.Reload()
    tags = set(ea.Tags()["scalars"])
    assert {"train/loss", "train/lr", "eval/pretrained/knn_top1", "eval/random_init/knn_top1"} <= tags, tags
    assert not any("note" in t for t in tags), tags
    got = [(e.step, e.value) for e in ea.Scalars("train/loss")]
    # the first run's steps 4 and 5 are purged: each step appears once, with the resumed values
    assert got == [(1, 9.0), (2, 8.0), (3, 7.0), (4, 104.0), (5, 105.0), (6, 106.0)], got
    assert ea.Scalars("eval/pretrained/knn_top1")[0].value == pytest.approx(73.8)


def test_atomic_writes_appear_whole_or_not_at_all(tmp_path):
    path = tmp_path / "out.json"
    write_json(path, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_open(path) as f:
            f.write('{"half": ')
            raise RuntimeError("killed mid-write")
    assert json.loads(path.read_text()) == {"a": 1}, "a failed write must leave the old file"
    assert sorted(os.listdir(tmp_path)) == ["out.json"], f"temporary files left: {os.listdir(tmp_path)}"
    with atomic_path(tmp_path / "clip.webm") as tmp:
        assert tmp.suffix == ".webm" and tmp.name.startswith("."), tmp  # writers pick formats by suffix
        tmp.write_bytes(b"x")
    assert (tmp_path / "clip.webm").read_bytes() == b"x"


def test_optimizer_names_come_from_one_registry_and_unknown_ones_are_errors():
    model = torch.nn.Linear(3, 2)

    class Cfg:
        lr, momentum, weight_decay = 0.1, 0.9, 0.0
        optimizer = "lars"

    assert isinstance(build_optimizer(model, Cfg), LARS)
    for name, cls in (("adamw", torch.optim.AdamW), ("sgd", torch.optim.SGD)):
        Cfg.optimizer = name
        assert isinstance(build_optimizer(model, Cfg), cls)
    Cfg.optimizer = "adam"
    with pytest.raises(ConfigError, match=r"train.optimizer must be one of \('adamw', 'sgd', 'lars'\), got 'adam'"):
        build_optimizer(model, Cfg)
    assert set(OPTIMIZERS) == {"adamw", "sgd", "lars"}


def test_differences_name_each_differing_key():
    assert differences({"a": 1, "b": {"c": 2}}, {"a": 1, "b": {"c": 3}}, ["a", "b.c"]) == ["b.c: 2 there, 3 now"]
    assert differences({"a": 1}, {"a": 1, "x": 2}) == ["x: None there, 2 now"]
    assert differences({"a": [1, 2]}, {"a": [1, 2]}) == []


def test_to_device_pins_host_tensors_bound_for_a_gpu_and_never_blocks():
    from timeclr.training.distributed import to_device

    class HostTensor:  # stands in for a DALI CPU output; CUDA copies cannot run on this machine
        device = torch.device("cpu")
        pinned = False

        def pin_memory(self):
            self.pinned = True
            return self

        def to(self, device, non_blocking=False):
            self.moved = (torch.device(device), non_blocking)
            return self

    t = to_device(HostTensor(), torch.device("cuda", 0))
    assert t.pinned and t.moved == (torch.device("cuda", 0), True), vars(t)
    t = to_device(HostTensor(), "cpu")  # CPU training: no pinning (it needs a GPU), no copy
    assert not t.pinned and t.moved == (torch.device("cpu"), True), vars(t)
    x = torch.ones(3)
    assert to_device(x, torch.device("cpu")) is x


@pytest.mark.filterwarnings("ignore:CUDA is not available")
def test_the_contrastive_loss_takes_bf16_embeddings_on_a_gpu_and_fp32_on_cpu(monkeypatch):
    """On CUDA with train.bf16 the embeddings go into the loss in bf16 (the kernel's tensor-core
    path, fp32 accumulation inside); on CPU, or with bf16 off, in fp32."""
    from types import SimpleNamespace

    from timeclr.training import objectives

    seen = []
    monkeypatch.setattr(objectives, "nt_xent", lambda z, **kw: seen.append(z.dtype) or z.float().sum())
    monkeypatch.setattr(objectives, "to_device", lambda t, device: t)  # no CUDA copies here
    net = torch.nn.Linear(3, 4)
    batch = {"views": [torch.randn(5, 3), torch.randn(5, 3)]}
    for device, bf16, want in (("cuda", True, torch.bfloat16), ("cuda", False, torch.float32),
                               ("cpu", True, torch.float32)):
        cfg = SimpleNamespace(bf16=bf16, temperature=0.1, loss_backend="auto")
        objectives.contrastive(cfg, torch.device(device))(net, batch)
        assert seen[-1] == want, f"device={device} bf16={bf16}: loss got {seen[-1]}, want {want}"


def test_a_damaged_checkpoint_is_a_one_line_error_naming_the_file(tmp_path):
    from timeclr.training.checkpoints import load_checkpoint

    path = tmp_path / "checkpoint.pt"
    torch.save({"model": {"w": torch.ones(1000)}, "step": 3}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # cut short, as by a full disk
    with pytest.raises(ConfigError, match="checkpoint.pt is not a readable checkpoint") as e:
        load_checkpoint(path)
    assert "\n" not in str(e.value)
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ConfigError, match="delete it to start over"):
        load_checkpoint(path)


def test_ctrl_c_ends_in_one_line_saying_where_the_checkpoint_is(tmp_path):
    from timeclr.training.command import command_main
    from timeclr.training.run import RunDir

    def interrupted(cfg):
        os.makedirs(cfg.out_dir, exist_ok=True)
        open(RunDir(cfg.out_dir).checkpoint, "wb").close()
        raise KeyboardInterrupt

    with pytest.raises(SystemExit) as e:
        command_main("train", "test", interrupted, ["pipelines/debug.yaml", f"out_dir={tmp_path}"])
    msg = str(e.value.code)
    assert msg == f"timeclr.train: interrupted; the last checkpoint is {tmp_path}/checkpoint.pt; the same command " \
                  "resumes from it", msg


def test_cpu_threads_leave_the_cores_other_jobs_use(monkeypatch):
    """cores - busy, at least 1, split between this machine's ranks; OMP_NUM_THREADS wins; busy
    cores are measured now, not from the lagging load average."""
    from timeclr.training import threads

    assert threads.free_cores(2, 0.05) == 2  # quiet: every core
    assert threads.free_cores(2, 1.0) == 1  # one busy process beside the run (2x faster, measured)
    assert threads.free_cores(2, 3.7) == 1  # never 0
    assert threads.free_cores(16, 0.0, local_ranks=4) == 4
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.choose_cpu_threads(verbose=False) is None
    monkeypatch.delenv("OMP_NUM_THREADS")
    saved = torch.get_num_threads()
    monkeypatch.setattr(threads, "busy_cores", lambda: 99.0)
    try:
        assert threads.choose_cpu_threads(verbose=False) == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(saved)
    import subprocess
    import sys

    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:  # one process spinning: about one core busy (the rest of the machine may add to it)
        time.sleep(0.5)
        assert threads.busy_cores() >= 0.7, threads.busy_cores()
    finally:
        busy.kill()
