"""The embedded synthetic dataset as a folder: generated once, recorded, reused.

``ensure_dataset(root)`` generates it once (the main job, ``python -m timeclr.train
pipelines/synthetic.yaml``, calls it through ``prepare_synthetic`` and runs on the manifests
``chosen_manifests`` picks) and ``python -m timeclr.data synthetic ROOT`` does the same from the
shell. What one video shows, and why no single
frame tells its class, is ``timeclr.synthetic.render``'s docstring (v1) and ``render_v2``'s (v2, the main
job's set); this module writes the files.

Files
    ``root/{train,test}/<label>_<name>/<index:04d>.webm``: VP9 (libvpx, crf ``CRF``), yuv420p,
    ``FPS`` fps, a keyframe every ``GOP`` frames; DALI's CPU backend decodes it. Class folders
    sort in label order. ``root/train.csv`` and ``root/test.csv`` are manifests written by
    ``timeclr.pipelines.ingest.index.index_tree`` (with their ``.classes.txt`` and ``.rejects.csv``),
    and ``root/DONE.json`` records the parameters. A video is a pure function of
    ``(seed, split, label, index)`` and the parameters: ``make_sample`` renders it again.

Generation is all or nothing: the tree is built in a hidden sibling folder
``.<root name>.partial-<pid>``, indexed, given its ``DONE.json`` last, and then renamed to ``root``
in one step. An interrupted run leaves no ``root`` (the next call starts over and removes the
dead run's partial folder); two processes racing both generate, the first rename wins and the
other uses it. Existing ``root`` with other parameters is an error (never overwritten), as is a
non-empty ``root`` that is no finished dataset.
"""
import contextlib
import io
import json
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch.distributed as dist
from omegaconf import OmegaConf
from tqdm import tqdm

from timeclr.files.atomic import write_json
from timeclr.files.lock import pid_alive
from timeclr.pipelines.storage.encode import write_video
from timeclr.pipelines.ingest.index import index_tree
from timeclr.pipelines.ingest.pool import WORKERS
from timeclr.files.recorded import differences
from timeclr.synthetic import render, render_v2

SETS = {"v1": render, "v2": render_v2}  # set name -> the module that draws its videos
SPLITS = render.SPLITS

FPS = 25
GOP = 16  # a keyframe every GOP frames
CRF = 15


class DatasetMismatch(ValueError):
    """``root`` holds a finished dataset made with other parameters."""


class NotADataset(ValueError):
    """``root`` exists, is not empty, and is no finished synthetic dataset."""


# ----------------------------------------------------------------------------------------------
# Writing


def write_webm(path, frames) -> str:
    """Encode (F, H, W, 3) uint8 RGB frames (even H and W) as the dataset's files are: VP9 in a
    .webm, crf ``CRF``, ``FPS`` fps, a keyframe every ``GOP`` frames; returns ``str(path)``."""
    # One encoder thread: the frames are tiny and the parallelism is across videos.
    return write_video(path, frames, codec="vp9", fps=FPS, gop=GOP, crf=CRF, threads=1)


def video_path(root, split: str, label: int, index: int, set_name: str = "v1") -> Path:
    """Where video ``index`` of class ``label`` in ``split`` lies under ``root``."""
    return Path(root) / split / SETS[set_name].CLASSES[label] / f"{index:04d}.webm"


def _make_one(job):
    """Worker: render and write one video. job = (root, seed, split, label, index, frames, size, set name)."""
    root, seed, split, label, index, frames, size, set_name = job
    video, _ = SETS[set_name].make_sample(seed, split, label, index, frames, size)
    write_webm(video_path(root, split, label, index, set_name), video)
    return label


# ----------------------------------------------------------------------------------------------
# The dataset


def dataset_params(train_per_class=40, test_per_class=20, frames=32, size=64, seed=0, set_name="v1") -> dict:
    """What DONE.json records and ``ensure_dataset`` compares (workers and progress excluded).
    ``v1``'s record has no ``set`` key, so the folders generated before v2 existed still match."""
    if set_name not in SETS:
        raise ValueError(f"synthetic set must be one of {', '.join(SETS)}, got {set_name!r}")
    module = SETS[set_name]
    return {**({} if set_name == "v1" else {"set": set_name}),
            "version": module.VERSION, "classes": list(module.CLASSES), "train_per_class": int(train_per_class),
            "test_per_class": int(test_per_class), "frames": int(frames), "size": int(size),
            "seed": int(seed), "fps": FPS, "gop": GOP, "crf": CRF, "codec": "vp9"}


def _check_args(train_per_class, test_per_class, frames, size):
    if train_per_class < 1 or test_per_class < 1:
        raise ValueError(f"train_per_class and test_per_class must be >= 1, got {train_per_class}, {test_per_class}")
    if frames < 8:
        raise ValueError(f"frames must be >= 8 (a flash lasts frames // 4 within one half), got {frames}")
    if size < 16 or size % 2:
        raise ValueError(f"size must be an even number >= 16 (VP9 yuv420p), got {size}")


def _manifests(root: Path) -> tuple[str, str]:
    return str(root / "train.csv"), str(root / "test.csv")


def _read_done(root: Path, params: dict):
    """The manifests' paths if ``root`` is a finished dataset with ``params``; None if there is no
    DONE.json; raises DatasetMismatch for other parameters."""
    done = root / "DONE.json"
    if not done.is_file():
        return None
    recorded = json.loads(done.read_text(encoding="utf-8")).get("params")
    diff = differences(recorded, params)
    if diff:
        raise DatasetMismatch(
            f"{root} holds a synthetic dataset made with other parameters (differing: {'; '.join(diff)}).\n"
            f"  on disk:   {json.dumps(recorded, sort_keys=True)}\n"
            f"  requested: {json.dumps(params, sort_keys=True)}\n"
            f"Use another folder (data.root), request the parameters on disk, or delete {root} to regenerate.")
    paths = _manifests(root)
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise NotADataset(f"{root}: DONE.json is there but {', '.join(missing)} is missing; "
                          f"delete {root} to regenerate")
    return paths


def _remove_dead_partials(root: Path):
    for partial in root.parent.glob(f".{root.name}.partial-*"):
        pid = partial.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            shutil.rmtree(partial, ignore_errors=True)


def ensure_dataset(root, train_per_class: int = 40, test_per_class: int = 20, frames: int = 32,
                   size: int = 64, seed: int = 0, workers: int = 2, progress: bool = True,
                   set_name: str = "v1") -> tuple[str, str]:
    """Generate the synthetic dataset under ``root`` unless it is already there; returns the paths
    of its train and test manifests (``root/train.csv``, ``root/test.csv``).

    A finished dataset (``root/DONE.json``) with the same parameters is returned at once,
    untouched. Raises DatasetMismatch if it was made with other parameters, NotADataset if
    ``root`` is a non-empty folder without DONE.json. Otherwise renders every video in
    ``workers`` processes, indexes both splits for DALI's CPU decoder and moves the finished
    folder into place (see the module docstring).
    """
    root = Path(root).absolute()
    _check_args(train_per_class, test_per_class, frames, size)
    params = dataset_params(train_per_class, test_per_class, frames, size, seed, set_name)
    classes = SETS[set_name].CLASSES
    found = _read_done(root, params)
    if found:
        return found
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise NotADataset(f"{root} exists and is not a finished synthetic dataset (no DONE.json); "
                          f"choose an empty or new folder, or delete it to generate there")

    root.parent.mkdir(parents=True, exist_ok=True)
    _remove_dead_partials(root)
    partial = root.parent / f".{root.name}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    began = time.perf_counter()
    try:
        counts = {"train": train_per_class, "test": test_per_class}
        jobs = [(str(partial), seed, split, label, index, frames, size, set_name)
                for split in SPLITS for label in range(len(classes)) for index in range(counts[split])]
        for split in SPLITS:
            for name in classes:
                (partial / split / name).mkdir(parents=True)
        with tqdm(total=len(jobs), desc="generating synthetic videos", unit="video", disable=not progress) as bar:
            if workers <= 1:
                for job in jobs:
                    _make_one(job)
                    bar.update()
            else:
                with ProcessPoolExecutor(workers, mp_context=WORKERS) as pool:
                    for _ in pool.map(_make_one, jobs, chunksize=4):
                        bar.update()
        generated = time.perf_counter() - began
        for split in SPLITS:
            report = io.StringIO()  # index_tree's summary names the partial folder: keep it quiet
            with contextlib.redirect_stdout(report):
                n_ok, n_rejected = index_tree(partial / split, partial / f"{split}.csv", device="cpu",
                                              workers=workers, progress=progress)
            expected = counts[split] * len(classes)
            if n_ok != expected or n_rejected:
                rejects = (partial / f"{split}.rejects.csv").read_text(encoding="utf-8")
                raise RuntimeError(f"indexing the generated {split} split accepted {n_ok} of {expected} "
                                   f"videos:\n{report.getvalue()}{rejects}")
        done = {"params": params, "train_manifest": "train.csv", "test_manifest": "test.csv",
                "videos": {s: counts[s] * len(classes) for s in SPLITS},
                "seconds": {"render_and_encode": round(generated, 2),
                            "total": round(time.perf_counter() - began, 2)}}
        write_json(partial / "DONE.json", done)  # last: its presence says the folder is complete
        try:
            os.rename(partial, root)  # also replaces an empty root folder
        except OSError:
            if _read_done(root, params) is None:  # another process finished first: use its copy
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)  # gone after the rename; else a failed run's
    if progress:
        print(f"synthetic dataset: {root} ({sum(counts.values()) * len(classes)} videos, "
              f"{time.perf_counter() - began:.1f} s)")
    return _manifests(root)


def prepare_synthetic(cfg, rank) -> tuple[str, str]:
    """Generate the embedded dataset once (rank 0); returns the paths of its (train, test) manifests.

    Reads ``cfg.synthetic`` (set, train_per_class, test_per_class, frames, size) and ``cfg.data.root``
    and leaves the config as it is: which manifests the run uses is for the caller to say
    (``chosen_manifests``). The other ranks wait at a barrier, so they never race rank 0's
    generation, then find it done.
    """
    s = cfg.synthetic
    args = dict(train_per_class=s.train_per_class, test_per_class=s.test_per_class, frames=s.frames, size=s.size,
                set_name=s.get("set", "v1"))  # a run folder's config.yaml from before v2 has no set
    if rank == 0:
        train_csv, test_csv = ensure_dataset(cfg.data.root, **args)
    if dist.is_initialized():
        dist.barrier()
    if rank != 0:
        train_csv, test_csv = ensure_dataset(cfg.data.root, **args)  # present now: returns at once
    return train_csv, test_csv


def chosen_manifests(cfg, train_csv, test_csv) -> tuple[str, str]:
    """(data.manifest, eval.test_manifest) of a run on the embedded dataset whose manifests are
    ``train_csv`` and ``test_csv``: each the config's own where it names one (a labelled subset of
    the train split, say), else the dataset's. The commands set them in the config, so the run
    folder's config.yaml and the checkpoint record the manifests used."""
    missing = OmegaConf.is_config(cfg.data) and OmegaConf.is_missing(cfg.data, "manifest")  # '???': none given
    train = str(train_csv) if missing or not cfg.data.manifest else cfg.data.manifest
    return train, cfg.eval.test_manifest or str(test_csv)


# ----------------------------------------------------------------------------------------------
# Command line
