"""What the data pipeline benchmark times: each loader as an endless batch iterator, the raw
decode rates it is compared with, and a probe of DALI's decoder alone.

    dali          ``timeclr.pipelines.loader.video.VideoLoader`` as training uses it
    pyav          the DataLoader baseline (``pyav_baseline.PyAVClips``)
    pillow        the same DataLoader over frame archives (``pyav_baseline.PillowClips``)
    dali-decode   the DALI pipeline cut after ``fn.decoders.video``
    dali-whole    ``data.trim_gops=false``: DALI gets the whole file
    dali-cold     the packet-layout cache off: every visit demuxes the file again

(why each is there: ``benchmarks/data_pipeline.py``'s docstring). Every timer also records the
share of the CPUs other processes used meanwhile (``OtherLoad``), so a disturbed window shows.
"""
import copy
import gc
import multiprocessing
import os
import time
from pathlib import Path

import av
import numpy as np
import torch
from tqdm import tqdm

from timeclr.benchmarks.bench_videos import must_decode, no_seek_decode
from timeclr.benchmarks.pyav_baseline import EndlessOrder, PillowClips, PyAVClips
from timeclr.config import load_config
from timeclr.pipelines.loader.clip_source import ClipSource
from timeclr.pipelines.loader.video import VideoLoader

BATCH_SIZE = 8


# ---------------------------------------------------------------------------------------------
# the loaders, as endless batch iterators
# ---------------------------------------------------------------------------------------------


def data_config(config: str, device: str, threads: int):
    """The DataConfig of the two-view setup, 'train' or 'eval'."""
    train = config == "train"
    return load_config(None, [
        "data.manifest=unused", f"data.device={device}", f"data.batch_size={BATCH_SIZE}",
        f"data.num_threads={threads}", f"data.train={train}", "data.augment=true", "data.short_side=128",
        "data.views.0.kind=segment", "data.views.0.frames=8", "data.views.0.crop_size=112",
        "data.views.1.kind=interval", "data.views.1.frames=8", "data.views.1.strides=[2,4]",
        "data.views.1.crop_size=112",
    ]).data


def dali_decode_only(data, videos, gpu):
    """Batches of the DALI pipeline cut after its decode step (the library's source, each distinct
    frame once in file order as the pipeline asks for them, no augmentation): how much of DALI's
    time is decoding."""
    from nvidia.dali import fn, pipeline_def, types

    clip_source = ClipSource(videos, list(data.views), data.train, data.seed, data.batch_size)

    def source(info):  # the library's source (reads and trims the file, selects the frames), less augmentation
        out = clip_source(info)
        return out[0], out[2], out[1], out[-1]  # encoded bytes, frames to decode, frames of the views, video index

    @pipeline_def(batch_size=data.batch_size, num_threads=data.num_threads, device_id=0 if gpu else None,
                  seed=data.seed, prefetch_queue_depth=2)
    def graph():
        encoded, distinct, frames, index = fn.external_source(
            source=source, num_outputs=4, batch=False, dtype=[types.UINT8, types.INT32, types.INT32, types.INT64])
        decoded = fn.decoders.video(encoded, frames=distinct, device="mixed" if gpu else "cpu")
        return decoded.shape(), frames, index  # a tiny output that still needs the decode

    pipe = graph()
    for _ in range(2):  # keep prefetch_queue_depth iterations in flight, as DALIGenericIterator does: the
        pipe.schedule_run()  # Python source then runs while the threads decode
    while True:
        decoded, frames, index = pipe.outputs()
        pipe.schedule_run()
        index = torch.from_numpy(index.as_array()).reshape(-1)
        yield {"views": [decoded], "frame_indices": [torch.from_numpy(frames.as_array())], "label": index, "index": index}


class Loader:
    """An endless iterator of batches from one loader; ``close()`` frees its threads / workers."""

    def __init__(self, kind, data, videos, keyframes, threads, gpu):
        self.kind, self.gpu = kind, gpu
        if kind in ("dali", "dali-whole", "dali-cold"):
            data = copy.deepcopy(data)  # the caller's config serves every loader
            data.trim_gops = kind != "dali-whole"
            self.loader = VideoLoader(data, videos, shard_id=0, num_shards=1, device_id=0 if gpu else None)
            if kind == "dali-cold":  # forget every file's packet layout: demux on every visit
                self.loader.source.layouts.capacity = 0
            self.it = self._epochs()
        elif kind == "dali-decode":
            self.loader = None
            self.it = dali_decode_only(data, videos, gpu)
        else:
            dataset = (PillowClips if kind == "pillow" else PyAVClips)(data, videos, keyframes)
            self.loader = torch.utils.data.DataLoader(
                dataset, batch_size=data.batch_size, sampler=EndlessOrder(dataset.selection),
                num_workers=threads, pin_memory=gpu, prefetch_factor=2)
            self.it = iter(self.loader)

    def _epochs(self):
        while True:
            yield from self.loader

    def __next__(self):
        batch = next(self.it)
        if self.gpu and self.kind in ("pyav", "pillow"):  # the baseline's batches still have to reach the GPU
            batch["views"] = [v.cuda(non_blocking=True) for v in batch["views"]]
        return batch

    def close(self):
        if hasattr(self.it, "close"):
            self.it.close()  # a generator: frees its pipeline
        del self.it, self.loader
        gc.collect()


# ---------------------------------------------------------------------------------------------
# timers
# ---------------------------------------------------------------------------------------------


class OtherLoad:
    """Share of the machine's CPU time that *other* processes used between start() and stop():
    the busy time of all CPUs (/proc/stat) less that of this process and its live descendants
    (DataLoader workers). On a shared machine this tells which numbers were disturbed."""

    TICK = os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _busy():
        v = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return sum(v) - v[3] - v[4]  # all but idle and iowait, in ticks

    @staticmethod
    def _ours():
        stats = {}
        for d in Path("/proc").iterdir():
            if d.name.isdigit():
                try:
                    fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:  # gone meanwhile
                    continue
                stats[int(d.name)] = (int(fields[1]), int(fields[11]) + int(fields[12]))  # ppid, utime + stime
        tree, todo = set(), [os.getpid()]
        while todo:
            pid = todo.pop()
            tree.add(pid)
            todo += [c for c, (ppid, _) in stats.items() if ppid == pid and c not in tree]
        return sum(stats[p][1] for p in tree if p in stats)

    def start(self):
        self.t0, self.busy0, self.ours0 = time.perf_counter(), self._busy(), self._ours()

    def stop(self) -> float:
        ours = self._ours()  # before the processes go
        seconds = time.perf_counter() - self.t0
        others = (self._busy() - self.busy0) - (ours - self.ours0)
        return max(0.0, others / self.TICK / (seconds * os.cpu_count()))


def time_loader(loader: Loader, warmup: int, batches: int, keyframes, desc: str) -> dict:
    """Clips, frames and seconds over ``batches`` batches after ``warmup`` batches."""
    for _ in range(warmup):
        next(loader)
    selections = []  # (video index, all frame indices of the sample), counted after the clock stops
    load = OtherLoad()
    load.start()
    t0 = time.perf_counter()
    for _ in tqdm(range(batches), desc=desc, leave=False, disable=None):
        batch = next(loader)
        frames = torch.cat([f.cpu() for f in batch["frame_indices"]], dim=1).numpy()  # (B, ΣT)
        selections += zip(batch["index"].tolist(), frames)
    if loader.gpu:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    others = load.stop()
    return dict(clips=len(selections), selected=sum(f.size for _, f in selections), seconds=seconds, others=others,
                need=sum(must_decode(f, keyframes[i]) for i, f in selections),
                no_seek=sum(no_seek_decode(f) for _, f in selections))


def _decode_all(job):
    path, rgb = job
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        stream.codec_context.thread_count = 1
        n = 0
        for frame in c.decode(stream):
            if rgb:
                frame.to_ndarray(format="rgb24")
            n += 1
    return n


def raw_decode(paths, threads: int, rgb: bool) -> dict:
    """Every frame of every file, decoded once by N single-threaded PyAV processes: frames/s."""
    with multiprocessing.get_context("fork").Pool(threads) as pool:
        pool.map(_decode_all, [(paths[0], rgb)] * threads)  # start the workers (and warm the cache)
        load = OtherLoad()
        load.start()
        t0 = time.perf_counter()
        frames = sum(pool.map(_decode_all, [(p, rgb) for p in paths], chunksize=1))
        seconds = time.perf_counter() - t0
        others = load.stop()
    return dict(frames=frames, seconds=seconds, fps=frames / seconds, others=others)


PROBE_CASES = ([0], [24], [25], [125], [249], [125, 125], [249, 5])


def probe_dali_decoder(path, threads: int, gpu: bool, reps=2) -> list[dict]:
    """ms per video (per thread) of one ``fn.decoders.video`` call for each list of frames in
    PROBE_CASES, with and without ``build_index``. A decoder that seeks to keyframes costs about the
    same for frames 0, 25 and 125 (keyframes) and one GOP more for 24 or 249; one that decodes from
    frame 0 grows with the position; [125, 125] tells what a repeated frame costs, [249, 5] whether
    the frames are decoded in the order given."""
    from nvidia.dali import fn, pipeline_def, types

    data = np.fromfile(path, dtype=np.uint8)
    rows = []
    for build_index in (True, False):
        for case in PROBE_CASES:
            wanted = np.array(case, np.int32)

            @pipeline_def(batch_size=BATCH_SIZE, num_threads=threads, device_id=0 if gpu else None, seed=0,
                          prefetch_queue_depth=1)
            def graph():
                encoded, frames = fn.external_source(source=lambda info: (data, wanted), num_outputs=2,
                                                     batch=False, dtype=[types.UINT8, types.INT32])
                return fn.decoders.video(encoded, frames=frames, device="mixed" if gpu else "cpu",
                                         build_index=build_index)

            pipe = graph()
            pipe.run()  # warm-up (and the pipeline's first-run allocations)
            t0 = time.perf_counter()
            for _ in range(reps):
                pipe.run()
            ms = 1e3 * (time.perf_counter() - t0) / (reps * BATCH_SIZE) * threads
            rows.append(dict(frames=case, build_index=build_index, ms_per_video=ms))
            del pipe
    return rows


def dali_decode_all(paths, threads: int, gpu: bool) -> dict:
    """Every frame of every file by ``fn.decoders.video`` (no frame selection, RGB output): DALI's
    own decode ceiling (NVDEC's with ``gpu``), frames/s."""
    from nvidia.dali import fn, pipeline_def, types

    batch = threads  # a few whole videos per batch: 250 RGB frames are 65 MB each
    files = [np.fromfile(p, dtype=np.uint8) for p in paths[: batch * (len(paths) // batch)]]

    @pipeline_def(batch_size=batch, num_threads=threads, device_id=0 if gpu else None, seed=0, prefetch_queue_depth=1)
    def graph():
        encoded = fn.external_source(source=lambda info: files[info.idx_in_epoch % len(files)], batch=False,
                                     dtype=types.UINT8)
        return fn.decoders.video(encoded, device="mixed" if gpu else "cpu")

    pipe = graph()
    pipe.run()  # warm-up
    load = OtherLoad()
    load.start()
    t0 = time.perf_counter()
    frames = 0
    for _ in range(len(files) // batch):
        out = pipe.run()[0]
        frames += sum(out[i].shape()[0] for i in range(batch))
    seconds = time.perf_counter() - t0
    others = load.stop()
    del pipe
    return dict(frames=frames, seconds=seconds, fps=frames / seconds, others=others)
