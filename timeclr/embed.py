"""Features of any videos from a trained encoder: ``python -m timeclr.embed CONFIG checkpoint=PATH|random VIDEOS -o OUT``.

VIDEOS is a folder of videos (any tree; a folder per class is kept as ``class_name``) or a
manifest of ``python -m timeclr.data index``. The clips are the config's eval clips, from the
eval pipeline (deterministic frame selection, short side resized, centre crop): the eval view
(``eval.view``), a view by number (``--view 1``) or every view of ``data.views`` side by side
(``--view all``); ``--clips C`` averages C clips spread over each video. Writes, in OUT:

    features.npy   (N, F) float32, row i = row i of videos.csv   numpy.load
    videos.csv     path, class_name, frames, seconds               pandas.read_csv / csv
    skipped.csv    path, reason: every video not embedded, none dropped silently
    embed.json     what made them: checkpoint, views, clips, feature size, counts

A folder is probed first (``manifest.csv`` and its sidecars are left in OUT): a video the
device's decoder cannot take (on CPU, DALI decodes VP8, VP9 and MJPEG only) is skipped with the
reason and the command that prepares it; so is one found damaged while decoding.
"""
import argparse
import copy
import csv
import os
import sys
from pathlib import Path

from timeclr.config import ViewConfig, load_config
from timeclr.errors import ConfigError, ManifestError, NonFiniteLoss


def _parse(argv):
    parser = argparse.ArgumentParser(prog="python -m timeclr.embed", description=__doc__.split("\n")[0])
    parser.add_argument("config", help="experiment YAML, e.g. pipelines/synthetic.yaml")
    parser.add_argument("items", nargs="+", metavar="key=value | VIDEOS",
                        help="config overrides (checkpoint=PATH|random, eval.batch_size=8 ...) and one folder of videos or manifest")
    parser.add_argument("-o", "--out", required=True, help="folder to write features.npy, videos.csv, skipped.csv into")
    parser.add_argument("--view", default="eval", help="'eval' (eval.view, default), a view number, or 'all'")
    parser.add_argument("--clips", type=int, default=1, help="clips per video, spread over it, features averaged (default 1)")
    parser.add_argument("--workers", type=int, default=None, help="probe processes for a folder (default min(8, CPUs))")
    args = parser.parse_args(argv)
    sources = [a for a in args.items if "=" not in a]
    if len(sources) != 1:
        parser.error(f"give one folder of videos or manifest (got {len(sources)}: {' '.join(sources) or 'none'})")
    if args.clips < 1:
        parser.error(f"--clips must be at least 1, got {args.clips}")
    return args, sources[0], [a for a in args.items if "=" in a]


def _views(cfg, which: str) -> list[int]:
    n = len(cfg.data.views)
    if which == "eval":
        return [int(cfg.eval.view)]
    if which == "all":
        return list(range(n))
    if which.isdigit() and int(which) < n:
        return [int(which)]
    raise ConfigError(f"--view {which}: choose 'eval', 'all' or a view number below {n} (data.views has {n})")


def _index_folder(root: Path, out: Path, device: str, workers) -> tuple[Path, list[dict]]:
    """Probe every video under ``root`` into ``out/manifest.csv``: (manifest, rejected rows).
    Videos with a variable frame rate are kept: one embedding does not need index = time."""
    from timeclr.pipelines.ingest.index import class_of, find_videos, manifest_row, probe_all
    from timeclr.pipelines.ingest.probe import resolve_device
    from timeclr.pipelines.storage.manifest import write_manifest

    device = resolve_device(device)
    paths = find_videos(root)
    classes = sorted({class_of(root, p) or "" for p in paths})
    labels = {c: i for i, c in enumerate(classes)}
    rows, rejects = [], []
    for path, (status, result) in sorted(probe_all(paths, device, workers or min(8, os.cpu_count() or 1)).items()):
        rel = path.relative_to(root).as_posix()
        if status == "rejected":
            rejects.append({"path": rel, "reason": result})
            continue
        name = class_of(root, path) or ""
        rows.append(manifest_row(result, rel, labels[name], name))
    if not rows:
        _write_skipped(out, rejects)
        raise ManifestError(f"{root}: none of its {len(paths)} videos can be decoded on {device} "
                            f"(reasons in {out / 'skipped.csv'})")
    manifest = out / "manifest.csv"
    write_manifest(manifest, root, classes, rows, rejects)
    return manifest, rejects


def _write_skipped(out: Path, rows: list[dict]):
    from timeclr.files.atomic import atomic_open

    with atomic_open(out / "skipped.csv", newline="") as f:
        writer = csv.DictWriter(f, ("path", "reason"))
        writer.writeheader()
        writer.writerows(rows)


def embed(cfg, source: str, out: str, view: str = "eval", clips: int = 1, workers=None) -> dict:
    """Write OUT's four files (module docstring) for the videos at ``source``; returns embed.json's dict."""
    import numpy as np
    import torch
    from omegaconf import OmegaConf
    from tqdm import tqdm

    from timeclr.files.atomic import atomic_open, atomic_path, write_json
    from timeclr.pipelines.loader.clip_source import videos_of
    from timeclr.pipelines.loader.video import VideoLoader
    from timeclr.pipelines.storage.manifest import read_manifest
    from timeclr.training.distributed import to_device
    from timeclr.training.run import load_model

    if not cfg.checkpoint:
        raise ConfigError("say which encoder to embed with: checkpoint=PATH or checkpoint=random")
    chosen = _views(cfg, view)
    src, out = Path(source), Path(out)
    if not src.exists():
        raise ManifestError(f"{src}: no such folder or manifest")
    out.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        manifest, skipped = _index_folder(src, out, cfg.data.device, workers)
    else:
        manifest, skipped = src, []
    rows, _ = read_manifest(manifest)
    videos = videos_of(rows)
    data = copy.deepcopy(cfg.data)
    data.views = [ViewConfig(**{**dict(cfg.data.views[v]), "clip": k, "clips": clips}) for v in chosen for k in range(clips)]
    data.train, data.augment, data.drop_last, data.batch_size = False, False, False, cfg.eval.batch_size
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = load_model(cfg, device).eval()
    loader = VideoLoader(data, videos)
    feats, seen = None, np.zeros(len(videos), bool)
    with torch.no_grad():
        for batch in tqdm(loader, desc="embedding", unit="batch", dynamic_ncols=True):
            per_clip = [model.features(to_device(x, device)).float() for x in batch["views"]]
            f = torch.cat([torch.stack(per_clip[i * clips:(i + 1) * clips]).mean(0) for i in range(len(chosen))], 1)
            if feats is None:
                feats = np.zeros((len(videos), f.shape[1]), np.float32)
            index = batch["index"].cpu().numpy()
            feats[index], seen[index] = f.cpu().numpy(), True
    # a video found damaged while decoding is skipped by the loader, which says so here
    decode_skips = {os.path.abspath(p): reason for p, reason in loader.skipped}
    embedded = seen & np.array([os.path.abspath(v.path) not in decode_skips for v in videos], bool)
    kept = np.flatnonzero(embedded).tolist()
    base = src if src.is_dir() else Path(manifest).parent
    skipped += [{"path": os.path.relpath(v.path, base),
                 "reason": decode_skips.get(os.path.abspath(v.path), "not decoded (no batch held it)")}
                for v, ok in zip(videos, embedded) if not ok]
    _write_skipped(out, skipped)
    with atomic_path(out / "features.npy") as tmp:
        with open(tmp, "wb") as f:
            np.save(f, feats[kept] if feats is not None else np.zeros((0, 0), np.float32))
    with atomic_open(out / "videos.csv", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(("path", "class_name", "frames", "seconds"))
        for i in kept:
            writer.writerow((os.path.relpath(videos[i].path, base), rows[i]["class_name"], rows[i]["num_frames"],
                             rows[i]["duration"]))
    summary = {"checkpoint": str(cfg.checkpoint), "source": str(src.resolve()), "root": str(base.resolve()),
               "views": [OmegaConf.to_container(cfg.data.views[v]) for v in chosen], "clips": clips,
               "feature_dim": int(feats.shape[1]) if feats is not None else 0,
               "embedded": len(kept), "skipped": len(skipped), "config": OmegaConf.to_container(cfg, resolve=True)}
    write_json(out / "embed.json", summary)
    print(f"embedded {len(kept)} videos ({summary['feature_dim']} features each) into {out / 'features.npy'}; "
          f"{len(skipped)} skipped" + (f", reasons in {out / 'skipped.csv'}" if skipped else ""))
    return summary


def main(argv=None) -> int:
    args, source, overrides = _parse(argv)
    try:
        cfg = load_config(args.config, overrides)
        embed(cfg, source, args.out, args.view, args.clips, args.workers)
    except (ConfigError, ManifestError, OSError, NonFiniteLoss) as e:
        raise SystemExit(f"timeclr.embed: {e}") from None
    except KeyboardInterrupt:
        raise SystemExit("timeclr.embed: interrupted; nothing of this run's features was written") from None
    return 0


if __name__ == "__main__":
    sys.exit(main())
