"""Benchmark: TimeCLR's DALI video pipeline against the PyTorch DataLoader a user would write.

What is measured
----------------
Both loaders deliver the same thing: batches of 8 videos, each as two views of 8 frames
(view 0: segment selection, K = 8; view 1: interval selection, T = 8, stride 2 or 4), augmented
and normalised to float (C, T, 112, 112):

    dali   ``timeclr.pipelines.loader.video.VideoLoader``: one ``fn.decoders.video`` call per video on
           all the frames of both views, then DALI's augmentation ops; ``num_threads = N``. The
           source hands DALI only the GOPs the views need (``pipelines/storage/gop.py``: VP9 remuxed to
           IVF, frame indices renumbered), since DALI 2.4's CPU decoder does not seek (below)
    pyav   (``benchmarks/pyav_baseline.py``) a ``torch.utils.data.DataLoader``, ``num_workers = N``, over a Dataset whose
           ``__getitem__`` takes the same frames and augmentation parameters (the library's
           ``ClipSource.frames`` / ``.params``: same numpy code, same seeds), opens the file with
           PyAV and decodes the sorted union of the frames with keyframe seeking: it seeks to the
           keyframe at or before the next wanted frame only when that keyframe lies beyond the
           decoder's position, so it decodes exactly the frames in [keyframe(f), f] for the wanted
           f, each once. It converts the wanted frames to RGB and applies the same operations as
           the DALI graph with torch (crop + resize with antialiasing, flip, brightness / contrast /
           saturation / hue), or the eval resize + centre crop
    dali-decode   (diagnostic) the DALI pipeline cut after ``fn.decoders.video``: the library's
           source, each distinct frame once in file order as the pipeline asks for them, no
           augmentation; how much of DALI's time the decode step takes
    dali-whole    (diagnostic) the same pipeline with ``data.trim_gops=false``: DALI gets the
           whole file, as before GOP trimming; what the trimming is worth
    dali-cold     (diagnostic) dali with the packet-layout cache off: every visit demuxes the
           file again (~3 ms in the Python source), as on a dataset larger than the cache
           (``gop.LayoutCache``, 10,000 files): what Kinetics-scale training sees on the CPU.
           The dali row (cache warm after the warm-up batches) is what a set of up to 10,000
           videos sees from its second epoch on

in two configurations:

    train  random frame positions, random resized crop 112 + flip + colour jitter (the training config)
    eval   deterministic positions, resize short side 128, centre crop 112

Both sides get the same N threads (default: the CPU cores): DALI's thread pool vs N worker
processes, each decoding with a single-threaded PyAV codec context.

Per (loader, config): **clips/s** (videos per second, each with both views) and **selected frames/s**
(16 per clip), timed over a fixed number of batches after a warm-up of N batches (the
DataLoader's N workers deliver their first batches together, so the timed window starts with
every worker on a fresh batch), in alternating rounds so that a change in the machine's load hits
every loader alike. Each timing window also records the share of the CPUs that *other* processes
used meanwhile ("others' CPU", from /proc): the pooled numbers leave out the rounds in which that
share exceeded 10% whenever an undisturbed round of the same loader and config exists ("rounds
used"); the per-round column shows every round.

The codec's ceiling, **raw decode**: every frame of every file decoded once by PyAV in N
processes, frames/s (also reported: with RGB conversion of every frame, and DALI decoding every
frame). **decode efficiency** = (frames a loader *must* decode per second) / (raw PyAV decode
rate), where a clip must decode, for each selected frame f, the frames from its keyframe: the size
of the union over f of [keyframe(f), f]. 1.0 would be a loader as fast as a decoder doing nothing
else; the rest goes to demuxing, seeking, colour conversion, augmentation, overheads and to
decoding frames that are not needed. Since both loaders must decode the same frames, the ratio of
their clips/s equals the ratio of their efficiencies.

**no-seek decode** is what a decoder decodes that never seeks forward, given each distinct frame
once in file order (as the pipeline asks): frames 0 to max f. The probe (below) shows that this is
DALI 2.4's CPU decoder; for dali-whole "no-seek eff." is then how close to the raw rate DALI
decodes the frames it actually decodes (for dali and pyav, which decode only what they must, it
means nothing).

A cheap probe times one ``fn.decoders.video`` call per video alone, for a few frame lists
([0], [24], [25], [125], [249], [125, 125], [249, 5]) with ``build_index`` True and False: does
the decoder seek to the keyframe, what does a repeated frame cost, what does the index cost?

On ``--device gpu`` DALI decodes with NVDEC ('mixed') and augments on the GPU; the baseline still
decodes on the CPU (its batches are copied to the GPU in the timed loop), and DALI's efficiency is
against its own all-frames NVDEC rate instead of PyAV's.

Data
----
A Kinetics-like set generated once and cached in ``data/bench_videos/`` (git-ignored;
``benchmarks/bench_videos.py``): 10 s clips at 25 fps (250 frames), 340x256, a panning textured
background with a few moving ellipses and per-frame sensor noise (so it compresses like footage,
not like flat colour: ~1.1 Mbit/s), random but deterministic per video. VP9 (.webm, libvpx
realtime, crf 32) with a keyframe every 25 frames; ``--device gpu`` writes H.264 copies (.mp4,
libx264, GOP 25, no B-frames) and measures on those. Before timing, the benchmark asserts that
every video has that keyframe structure (the efficiency model rests on it). That the baseline's
seeking returns exactly the wanted frames, decodes exactly the frames counted as "must decode" and
gives the pixels of a plain decode of every frame is ``tests/test_pyav_baseline.py``'s job; that
GOP trimming changes no pixel of the pipeline's output is ``tests/test_gop.py``'s.

How to run
----------
    python benchmarks/data_pipeline.py --quick           # ~2 min on 2 cores, generation included
    python benchmarks/data_pipeline.py                   # ~6 min on 2 cores (+20 s to generate)
    python benchmarks/data_pipeline.py --device gpu      # NVDEC + GPU augmentation vs PyAV workers
    python benchmarks/data_pipeline.py --threads 1 --json /tmp/dp.json

Writes ``benchmarks/results/data_pipeline_<device>.csv`` (a plain CSV: the table, the raw decode
rates and the probe as rows), ``.json`` (the run's metadata and a summary: ``dali_over_pyav``,
training config clips/s, DALI / PyAV; ``decode_efficiency``, DALI, training config; and the raw
numbers) and ``.png`` (clips/s; frames/s with the efficiencies), and prints the same; ``--json
PATH`` writes the summary there too. ``--quick`` writes ``data_pipeline_<device>_quick.*`` into
``benchmarks/results/quick/`` (git-ignored).
On a small shared machine other processes skew the numbers: see "others' CPU", the per-round
columns and the load averages in the metadata; the numbers of an undisturbed run are the ones to quote.
"""
import argparse
import os
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from timeclr.files.atomic import write_json
from timeclr.benchmarks.bench_videos import FPS, GOP, HEIGHT, NUM_FRAMES, WIDTH, ensure_videos, keyframe_index
from timeclr.benchmarks.harness import (finish_metadata, print_meta, print_table, results_dir, run_metadata,
                                        save_figure, write_results)
from timeclr.training.plots import pyplot
from timeclr.benchmarks.pipeline_timing import (BATCH_SIZE, PROBE_CASES, Loader, dali_decode_all, data_config,
                                                probe_dali_decoder, raw_decode, time_loader)
from timeclr.pipelines.loader.clip_source import Video

# size of a run: (videos, rounds, timed batches per loader and round)
SIZES = {False: (32, 3, 20), True: (16, 2, 6)}
CONFIGS = ("train", "eval")
LOADERS = ("dali", "pyav", "dali-decode", "dali-whole", "dali-cold")  # the last three: diagnostics (see the docstring)


def loaders(gpu: bool) -> tuple:
    """GOP trimming is CPU-only, so on a GPU dali-whole and dali-cold would repeat dali."""
    return LOADERS[:3] if gpu else LOADERS


# ---------------------------------------------------------------------------------------------
# measurement
# ---------------------------------------------------------------------------------------------


def run_rounds(args, videos, keyframes, paths) -> tuple[dict, dict]:
    """Alternate raw decode and every (loader, config) for ``args.rounds`` rounds."""
    gpu = args.device == "gpu"
    totals = {(l, c): [] for c in CONFIGS for l in loaders(gpu)}
    raw = {"pyav decode": [], "pyav decode+rgb": [], "dali decode+rgb": []}
    for r in range(args.rounds):
        for rgb in (False, True):
            raw["pyav decode+rgb" if rgb else "pyav decode"].append(raw_decode(paths, args.threads, rgb))
        raw["dali decode+rgb"].append(dali_decode_all(paths, args.threads, gpu))
        for config in CONFIGS:
            data = data_config(config, args.device, args.threads)
            for kind in loaders(gpu):
                loader = Loader(kind, data, videos, keyframes, args.threads, gpu)
                try:
                    m = time_loader(loader, args.warmup, args.batches, keyframes,
                                    desc=f"round {r + 1}/{args.rounds} {kind} {config}")
                finally:
                    loader.close()
                totals[(kind, config)].append(m)
                print(f"  round {r + 1}: {kind:11s} {config:5s} {m['clips'] / m['seconds']:6.2f} clips/s "
                      f"(other processes: {m['others']:.0%} of the CPUs)", flush=True)
    return totals, raw


DISTURBED = 0.10  # a timing window in which other processes took more than this share of the CPUs


def undisturbed(windows: list[dict]) -> list[dict]:
    """The windows that other processes left alone, or all of them when none was."""
    return [m for m in windows if m["others"] <= DISTURBED] or windows


def summarise(totals, raw, gpu) -> tuple[list[dict], dict, dict]:
    """Rows of the table; the raw decode rates (frames/s) pooled over rounds, and per round.
    Pooled numbers leave out the rounds that other processes disturbed (see ``DISTURBED``) when
    an undisturbed round exists; the per-round columns show every round."""
    rates = {k: sum(m["frames"] for m in undisturbed(v)) / sum(m["seconds"] for m in undisturbed(v))
             for k, v in raw.items()}
    rates_per_round = {k: [m["fps"] for m in v] for k, v in raw.items()}
    rows = []
    for (kind, config), all_rounds in totals.items():
        ms = undisturbed(all_rounds)
        # the decoder's ceiling: PyAV's (libavcodec on the CPU cores); NVDEC's for DALI on a GPU
        ceiling = rates["dali decode+rgb" if gpu and kind.startswith("dali") else "pyav decode"]
        clips, seconds = sum(m["clips"] for m in ms), sum(m["seconds"] for m in ms)
        need, no_seek, selected = (sum(m[k] for m in ms) for k in ("need", "no_seek", "selected"))
        rows.append(dict(
            loader=kind, config=config, clips_per_s=clips / seconds, frames_per_s=selected / seconds,
            must_decode_per_clip=need / clips, no_seek_decode_per_clip=no_seek / clips,
            must_decode_fps=need / seconds, decode_efficiency=need / seconds / ceiling,
            no_seek_efficiency=no_seek / seconds / ceiling,
            clips=clips, seconds=seconds, others=max(m["others"] for m in ms),
            rounds=f"{len(ms)}/{len(all_rounds)}",
            per_round=" ".join(f"{m['clips'] / m['seconds']:.2f} [{m['others']:.0%}]" for m in all_rounds)))
    return rows, rates, rates_per_round


# ---------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------

COLUMNS = [  # field, header, format
    ("loader", "loader", "{}"), ("config", "config", "{}"), ("clips_per_s", "clips/s", "{:.2f}"),
    ("frames_per_s", "sel. frames/s", "{:.0f}"), ("must_decode_per_clip", "must decode/clip", "{:.1f}"),
    ("must_decode_fps", "must decode/s", "{:.0f}"), ("decode_efficiency", "decode eff.", "{:.2f}"),
    ("no_seek_decode_per_clip", "no-seek decode/clip", "{:.1f}"), ("no_seek_efficiency", "no-seek eff.", "{:.2f}"),
    ("clips", "clips", "{}"), ("seconds", "s", "{:.1f}"), ("others", "others' CPU", "{:.0%}"),
    ("rounds", "rounds used", "{}"),
    ("per_round", "clips/s per round [others' CPU]", "{}"),
]


def report(rows, rates, rates_per_round, probe, meta, summary, args):
    """Print the table, the raw rates and the probe; write the CSV, the PNG and (``--json``) the
    summary, each file whole or not at all."""
    print()
    print_meta(meta)
    print()
    print_table([h for _, h, _ in COLUMNS], [[fmt.format(r[f]) for f, _, fmt in COLUMNS] for r in rows])
    print(f"\nraw decode of every frame, {args.threads} threads: PyAV {rates['pyav decode']:.0f} frames/s "
          f"(per round: {' '.join(f'{x:.0f}' for x in rates_per_round['pyav decode'])}), "
          f"{rates['pyav decode+rgb']:.0f} with RGB conversion; DALI (RGB) {rates['dali decode+rgb']:.0f}")
    print(f"DALI / PyAV, train clips/s: {summary['dali_over_pyav']:.2f}x; decode efficiency "
          f"DALI {summary['decode_efficiency']:.2f}, PyAV {summary['pyav_decode_efficiency']:.2f}"
          + (f"; without GOP trimming (dali-whole): {summary['dali_whole_over_pyav']:.2f}x, efficiency "
             f"{summary['dali_whole_decode_efficiency']:.2f}; layouts demuxed on every visit (dali-cold): "
             f"{summary['dali_cold_over_pyav']:.2f}x, efficiency {summary['dali_cold_decode_efficiency']:.2f}"
             if "dali_cold_over_pyav" in summary else ""))
    print("\nfn.decoders.video alone, ms per video per thread:")
    print_table(["frames", "build_index=True", "build_index=False"],
                [[str(case), *(f"{p['ms_per_video']:.1f}" for p in probe if p["frames"] == case)]
                 for case in PROBE_CASES])

    stem = results_dir(args.out, args.quick) / f"data_pipeline_{args.device}{'_quick' if args.quick else ''}"
    fields = [c for c, _, _ in COLUMNS] + ["ms_per_video"]
    extra = [{"loader": f"raw {name}", "config": "all frames", "frames_per_s": f"{fps:.6g}",
              "per_round": " ".join(f"{x:.0f}" for x in rates_per_round[name])}
             for name, fps in rates.items()]  # the codec's ceiling, as rows of their own
    extra += [{"loader": "dali fn.decoders.video", "config": f"frames={p['frames']} build_index={p['build_index']}",
               "ms_per_video": f"{p['ms_per_video']:.4g}"} for p in probe]
    write_results(stem, meta, fields, rows + extra, sidecar=summary)
    plot(rows, rates, meta, f"{stem}.png", args.device == "gpu")
    print(f"\nwrote {stem}.csv, {stem}.json and {stem}.png")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        write_json(args.json, summary)
        print(f"wrote {args.json}")


def plot(rows, rates, meta, path, gpu):
    """Left: clips/s per config and loader. Right: per loader, the selected frames it delivers, the
    frames it must decode (with its decode efficiency) and, as a marker, the frames from frame 0 to
    the last selected one, against the raw decode rates."""
    plt = pyplot()

    def row(kind, config):
        return next(r for r in rows if r["loader"] == kind and r["config"] == config)

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 5))
    x = np.arange(len(CONFIGS))
    style = {"dali": dict(color="C2"), "pyav": dict(color="C0"),
             "dali-decode": dict(color="C2", alpha=0.4, hatch="//", label="dali, decode step only (diagnostic)"),
             "dali-whole": dict(color="C1", label="dali-whole: the whole file to DALI (no GOP trimming)"),
             "dali-cold": dict(color="C2", alpha=0.7, hatch="..", label="dali-cold: every file demuxed on every visit")}
    kinds = loaders(gpu)
    width = 0.8 / len(kinds)
    for j, kind in enumerate(kinds):
        kw = {"label": kind, **style[kind]}
        bars = ax1.bar(x + (j - (len(kinds) - 1) / 2) * width, [row(kind, c)["clips_per_s"] for c in CONFIGS],
                       width, **kw)
        ax1.bar_label(bars, fmt="%.1f", fontsize=8)
    shown = ("dali", "pyav") if gpu else ("dali", "dali-whole", "pyav")
    width = 0.8 / len(shown)
    for j, kind in enumerate(shown):
        r, xs = [row(kind, c) for c in CONFIGS], x + (j - (len(shown) - 1) / 2) * width
        color = style[kind]["color"]
        ax2.bar(xs, [q["must_decode_fps"] for q in r], width, color=color, alpha=0.35,
                label=f"{kind}: frames it must decode")
        ax2.bar(xs, [q["frames_per_s"] for q in r], width, color=color, label=f"{kind}: selected frames delivered")
        if kind == "dali-whole" and not gpu:  # what DALI's CPU decoder really decodes (see the probe)
            ax2.plot(xs, [q["no_seek_decode_per_clip"] * q["clips_per_s"] for q in r], "v", color=color, ms=9,
                     markeredgecolor="k", label="dali-whole: frames it decodes (no-seek model)")
        for xi, q in zip(xs, r):
            ax2.annotate(f"eff {q['decode_efficiency']:.2f}", (xi, q["must_decode_fps"]), ha="center",
                         va="bottom", fontsize=8)
    for (name, fps), (color, ls) in zip(rates.items(), [("0.2", "--"), ("0.5", ":"), ("C2", "-.")]):
        ax2.axhline(fps, color=color, ls=ls, label=f"raw {name}, every frame ({fps:.0f}/s)")
    ax1.set(title=f"clips/s (2 views x 8 frames, batch {BATCH_SIZE})", ylabel="clips/s",
            ylim=(0, 1.5 * max(r["clips_per_s"] for r in rows)))
    ax2.set(title="frames/s", ylabel="frames/s", ylim=(0, 1.45 * max(rates.values())))
    for ax in (ax1, ax2):
        ax.set_xticks(x, CONFIGS)
        ax.grid(True, axis="y", alpha=0.3)
    ax1.legend(fontsize=7, loc="upper left")
    ax2.legend(fontsize=7, loc="upper left", ncol=2)
    save_figure(fig, "data pipeline", meta, path)


# ---------------------------------------------------------------------------------------------
# metadata and main
# ---------------------------------------------------------------------------------------------


def metadata(args, paths, keyframes) -> dict:
    sizes = [p.stat().st_size for p in paths]
    gops = sorted({b - a for kf in keyframes for a, b in zip(kf.index, kf.index[1:])})
    kbits = 8 * sum(sizes) / len(sizes) / (NUM_FRAMES / FPS) / 1e3
    return run_metadata({
        "threads": args.threads,
        "videos": f"{len(paths)} x {NUM_FRAMES} frames {WIDTH}x{HEIGHT} {FPS} fps {args.codec}, keyframe every "
                  f"{'/'.join(map(str, gops))} frames, {kbits:.0f} kbit/s",
        "timing": f"{args.rounds} rounds x {args.batches} batches of {BATCH_SIZE} after {args.warmup} warm-up batches",
    }, cuda=args.device == "gpu", libs=("torch", "DALI", "PyAV"))


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu",
                   help="cpu: DALI's CPU decoder on VP9; gpu: NVDEC ('mixed') + GPU augmentation on H.264")
    p.add_argument("--quick", action="store_true", help="16 videos, 2 rounds of 6 batches (< 3 min on 2 cores), "
                   "into benchmarks/results/quick/ (git-ignored)")
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                   help="DALI num_threads = DataLoader num_workers = raw decode processes (default: the cores)")
    p.add_argument("--videos", type=int, help="number of videos (default 32, --quick 16)")
    p.add_argument("--rounds", type=int, help="alternating rounds over all loaders (default 3, --quick 2)")
    p.add_argument("--batches", type=int, help="timed batches per loader and round (default 20, --quick 6)")
    p.add_argument("--warmup", type=int, help="untimed batches first (default: --threads)")
    p.add_argument("--json", help="write the summary here too (it is always in the results' .json)")
    p.add_argument("--out", help="output folder (default benchmarks/results/, --quick: benchmarks/results/quick/)")
    args = p.parse_args()
    n, rounds, batches = SIZES[args.quick]
    args.videos, args.rounds, args.batches = args.videos or n, args.rounds or rounds, args.batches or batches
    args.warmup = args.warmup if args.warmup is not None else args.threads
    args.codec = "h264" if args.device == "gpu" else "vp9"
    if args.device == "gpu" and not torch.cuda.is_available():
        p.error("--device gpu but torch.cuda.is_available() is False")
    return args


def main():
    args = parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", module="nvidia.dali")  # deprecation notes on every pipeline build
    t_start = time.perf_counter()

    paths = ensure_videos(args.videos, "vp9", args.threads)
    if args.codec != "vp9":
        paths = ensure_videos(args.videos, args.codec, args.threads)
    keyframes = [keyframe_index(p) for p in paths]
    for p, kf in zip(paths, keyframes):  # the efficiency model assumes this structure
        if kf.num_frames != NUM_FRAMES or kf.index != list(range(0, NUM_FRAMES, GOP)):
            raise RuntimeError(f"{p}: {kf.num_frames} frames, keyframes at {kf.index}; expected {NUM_FRAMES} "
                               f"frames, a keyframe every {GOP} (delete {p.parent} to regenerate)")
    videos = [Video(str(p), label=i % 10, num_frames=kf.num_frames, width=WIDTH, height=HEIGHT, codec=args.codec)
              for i, (p, kf) in enumerate(zip(paths, keyframes))]
    meta = metadata(args, paths, keyframes)
    print(f"data pipeline benchmark on {meta['device']}: {meta['videos']}; {args.threads} threads; "
          f"setup {time.perf_counter() - t_start:.0f} s", flush=True)

    probe = probe_dali_decoder(paths[0], args.threads, args.device == "gpu")
    totals, raw = run_rounds(args, videos, keyframes, paths)
    rows, rates, rates_per_round = summarise(totals, raw, args.device == "gpu")

    finish_metadata(meta, t_start)
    by = {(r["loader"], r["config"]): r for r in rows}
    summary = {
        "dali_over_pyav": by[("dali", "train")]["clips_per_s"] / by[("pyav", "train")]["clips_per_s"],
        "decode_efficiency": by[("dali", "train")]["decode_efficiency"],
        "pyav_decode_efficiency": by[("pyav", "train")]["decode_efficiency"],
        "dali_over_pyav_eval": by[("dali", "eval")]["clips_per_s"] / by[("pyav", "eval")]["clips_per_s"],
        "dali_decode_step_share": by[("dali", "train")]["clips_per_s"] / by[("dali-decode", "train")]["clips_per_s"],
    }
    if args.device == "cpu":
        summary.update({
            "dali_whole_over_pyav": by[("dali-whole", "train")]["clips_per_s"] / by[("pyav", "train")]["clips_per_s"],
            "dali_whole_decode_efficiency": by[("dali-whole", "train")]["decode_efficiency"],
            "dali_cold_over_pyav": by[("dali-cold", "train")]["clips_per_s"] / by[("pyav", "train")]["clips_per_s"],
            "dali_cold_decode_efficiency": by[("dali-cold", "train")]["decode_efficiency"],
        })
    summary.update({
        "raw_decode_fps": rates["pyav decode"],
        "raw_decode_rgb_fps": rates["pyav decode+rgb"],
        "dali_decode_all_fps": rates["dali decode+rgb"],
        "rows": rows,
        "raw_decode_fps_per_round": rates_per_round,
        "max_other_processes_cpu_share": max(r["others"] for r in rows),
        "dali_decoder_probe": probe,
        "meta": meta,
    })
    report(rows, rates, rates_per_round, probe, meta, summary, args)


if __name__ == "__main__":
    main()