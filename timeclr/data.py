"""Dataset command line: ``python -m timeclr.data <command> ...``.

Commands
    prepare SRC DST [--codec h264|vp9|jpeg] [--short-side N] [--gop N] [--fps F] [--crf Q] [--workers N]
            [--timeout SECONDS]
        Re-encode every video under SRC into DST: constant frame rate, a closed keyframe every
        N frames, no B-frames, no audio (``timeclr.pipelines.ingest.prepare``). Resumable. A video still
        being prepared after SECONDS (default 600) fails as ``timed out``; the others go on.
    index ROOT -o MANIFEST.csv [--layout folder|kinetics|ucf101|hmdb51|ssv2] [--annotations PATH]
          [--split 1|2|3] [--subset train|val|test] [--device auto|cpu|gpu] [--workers N] [--allow-vfr]
          [--timeout SECONDS]
        Probe every video of the folder-per-class tree ROOT (or of one split of a dataset whose
        annotation files give classes and splits) with PyAV and write the manifest, its class
        list and its rejects (formats: ``timeclr.pipelines.storage.manifest``; the annotation formats ``--layout``
        reads: ``timeclr.pipelines.ingest.annotation_formats``).
        A video still being probed after SECONDS (default 120) is rejected as ``timed out``.
    preview CONFIG [key=value ...] --out DIR
        Run one batch of the config's pipeline and write DIR/preview.png (contact sheet),
        DIR/preview.npz (uint8 frames) and DIR/preview.json (the frames each view shows).
    shard MANIFEST OUT_DIR [--shard-size 1GB] [--shuffle-seed S]
        Pack the manifest's videos into WebDataset tar shards with a JSON record each and an
        index ``shards.json`` (``timeclr.pipelines.storage.shards``). Resumable.
    synthetic ROOT [--set v1|v2] [--train-per-class N] [--test-per-class N] [--frames N] [--size N] [--seed S]
        Generate (once) the synthetic motion dataset under ROOT and print its manifests
        (``timeclr.synthetic.dataset``).

Each command is one ``add_<command>_parser`` (its arguments) and one ``run_<command>`` (what it
does); a new command adds its pair and registers it in ``build_parser``.
"""
import argparse
import math
import os
import sys

from timeclr.errors import ConfigError, ManifestError
from timeclr.pipelines.ingest.index import PROBE_TIMEOUT_S, index_tree
from timeclr.pipelines.ingest.annotation_formats import ANNOTATION_FORMATS, OFFICIAL_SPLITS, SUBSETS
from timeclr.pipelines.ingest.prepare import PREPARE_TIMEOUT_S, prepare_tree
from timeclr.pipelines.ingest.transcode import DEFAULT_CRF, DEFAULT_GOP
from timeclr.synthetic.dataset import SETS, ensure_dataset


def add_index_parser(subparsers):
    """The ``index`` command's arguments."""
    p = subparsers.add_parser(
        "index", help="scan a folder-per-class tree or an annotated dataset and write a manifest CSV",
        description="Decode every video under ROOT (class = its folder, or with --layout, the videos of "
                    "one split of a dataset's annotations) and write MANIFEST with its .classes.txt and "
                    ".rejects.csv beside it. Paths in them are relative to ROOT. The annotation formats "
                    "--layout reads and their files: the timeclr.pipelines.ingest.annotation_formats module "
                    "docstring.")
    p.add_argument("root", metavar="ROOT", help="folder with one sub-folder of videos per class, or the "
                                                "dataset's videos (any depth) for an annotation format")
    p.add_argument("-o", "--output", metavar="MANIFEST", required=True, help="manifest to write (NAME.csv)")
    p.add_argument("--layout", dest="annotation_format", choices=ANNOTATION_FORMATS, default="folder",
                   help="folder: class = parent folder (default); kinetics, ucf101, hmdb51, ssv2: classes "
                        "and splits from --annotations")
    p.add_argument("--annotations", metavar="PATH",
                   help="the dataset's annotation folder (kinetics: or one CSV file): kinetics train.csv, "
                        "validate.csv, test.csv; ucf101 the ucfTrainTestlist folder; hmdb51 the "
                        "<class>_test_split<N>.txt files; ssv2 labels.json, train.json, validation.json")
    p.add_argument("--split", type=int, choices=OFFICIAL_SPLITS, help="official split (ucf101, hmdb51)")
    p.add_argument("--subset", choices=SUBSETS,
                   help="which videos of the split: train, val or test (kinetics: train, val, test; "
                        "ucf101, hmdb51: train, test; ssv2: train, val)")
    p.add_argument("--device", choices=["auto", "cpu", "gpu"], default="auto",
                   help="where DALI will decode: rejects codecs it cannot decode there "
                        "(auto: gpu if torch sees CUDA, else cpu)")
    p.add_argument("--workers", type=_positive_int, default=min(8, os.cpu_count() or 1),
                   help="probe processes (default: min(8, CPU count))")
    p.add_argument("--allow-vfr", action="store_true",
                   help="keep variable-frame-rate videos (flagged vfr=1) instead of rejecting them")
    p.add_argument("--timeout", type=_positive_float, default=PROBE_TIMEOUT_S, metavar="SECONDS",
                   help="a video still being probed after SECONDS (a decoder that hangs on it?) is "
                        f"rejected as 'timed out' and the others go on (default {PROBE_TIMEOUT_S:g}; "
                        "raise it for videos of more than ~10 minutes)")
    p.set_defaults(run=run_index)


def run_index(args) -> int:
    """Index ``args.root`` into ``args.output``."""
    try:
        index_tree(args.root, args.output, device=args.device, workers=args.workers,
                   allow_vfr=args.allow_vfr, annotation_format=args.annotation_format, annotations=args.annotations,
                   split=args.split, subset=args.subset, timeout_s=args.timeout)
    except ManifestError as e:
        raise SystemExit(f"timeclr.data index: error: {e}") from None
    return 0


def add_prepare_parser(subparsers):
    """The ``prepare`` command's arguments."""
    p = subparsers.add_parser(
        "prepare", help="re-encode a video tree for exact, fast frame selection",
        description="Re-encode every video under SRC into DST (same relative paths): constant frame "
                    "rate (frame k shows the source at time k/fps), short side resized, audio dropped; "
                    "as a frame archive (.tar, one JPEG per frame: the default) or a video with a "
                    "closed keyframe every GOP frames and no B-frames. Resumable: finished outputs are "
                    "skipped. Failures go to DST/prepare.failures.csv. Then index DST.")
    p.add_argument("src", metavar="SRC", help="folder of videos as downloaded (any depth)")
    p.add_argument("dst", metavar="DST", help="folder to write the prepared videos to (not inside SRC)")
    p.add_argument("--codec", choices=["jpeg", "h264", "vp9"], default="jpeg",
                   help="jpeg: a .tar of one JPEG per frame, decoded by DALI on either device, one decode "
                        "per frame shown: the fastest storage measured (docs/results.md, 'Storage layouts'), at 3-5x "
                        "the disk of VP9; h264 (.mp4): NVDEC on a GPU; vp9 (.webm): DALI's CPU video "
                        "decoder (default jpeg)")
    p.add_argument("--short-side", type=_positive_int, default=None, metavar="N",
                   help="resize so the short side is N pixels (default: keep the size)")
    p.add_argument("--gop", type=_positive_int, default=DEFAULT_GOP, metavar="N",
                   help=f"keyframe interval in frames, h264 / vp9 (default {DEFAULT_GOP})")
    p.add_argument("--fps", type=float, default=None, metavar="F",
                   help="output frame rate (default: each source's nominal rate)")
    p.add_argument("--crf", type=int, default=None,
                   help="quality (default: h264 20, vp9 32; for jpeg the JPEG quality 1-95, default "
                        f"{DEFAULT_CRF['jpeg']})")
    p.add_argument("--workers", type=_positive_int, default=min(8, os.cpu_count() or 1),
                   help="encoding processes (default: min(8, CPU count))")
    p.add_argument("--timeout", type=_positive_float, default=PREPARE_TIMEOUT_S, metavar="SECONDS",
                   help="a video still being prepared after SECONDS (a decoder or encoder that hangs on "
                        f"it?) fails as 'timed out' and the others go on (default {PREPARE_TIMEOUT_S:g}: "
                        "some 10 minutes of 1080p video at full size); a rerun redoes only the failures")
    p.set_defaults(run=run_prepare)


def run_prepare(args) -> int:
    """Prepare ``args.src`` into ``args.dst``. Failed sources are listed, not fatal: exit status 0,
    so that ``prepare && index`` goes on (real datasets always hold a few broken files)."""
    try:
        prepare_tree(args.src, args.dst, codec=args.codec, short_side=args.short_side, gop=args.gop,
                     fps=args.fps, workers=args.workers, crf=args.crf, timeout_s=args.timeout)
    except (ValueError, OSError) as e:  # OSError: a full disk (DiskFull), an unwritable DST
        raise SystemExit(f"timeclr.data prepare: error: {e}") from None
    return 0


def add_shard_parser(subparsers):
    """The ``shard`` command's arguments."""
    p = subparsers.add_parser(
        "shard", help="pack a manifest's videos into WebDataset tar shards",
        description="Write MANIFEST's videos in a shuffled order into WebDataset tar shards "
                    "OUT_DIR/shard-NNNNNN.tar (each sample: the video's bytes and a JSON record with "
                    "its label, frame count, size and where its packets or JPEGs sit), an index "
                    "OUT_DIR/shards.json and OUT_DIR/shard.failures.csv. Resumable: finished shards "
                    "are kept.")
    p.add_argument("manifest", metavar="MANIFEST", help="manifest CSV written by index")
    p.add_argument("out_dir", metavar="OUT_DIR", help="folder for the shards")
    p.add_argument("--shard-size", default="1GB", metavar="SIZE",
                   help="largest shard, e.g. 1GB, 500MB, 256MiB (default 1GB; a larger video gets its own)")
    p.add_argument("--shuffle-seed", type=int, default=0, metavar="S",
                   help="seed of the order the videos are packed in (default 0)")
    p.set_defaults(run=run_shard)


def run_shard(args) -> int:
    """Shard ``args.manifest`` into ``args.out_dir``."""
    from timeclr.pipelines.storage.shards import parse_size, write_shards

    try:
        write_shards(args.manifest, args.out_dir, parse_size(args.shard_size), args.shuffle_seed)
    except (ValueError, ManifestError, OSError) as e:
        raise SystemExit(f"timeclr.data shard: error: {e}") from None
    return 0


def add_preview_parser(subparsers):
    """The ``preview`` command's arguments."""
    p = subparsers.add_parser(
        "preview", help="write one batch of a pipeline as a contact sheet, frames and JSON",
        description="Run one batch of CONFIG's data pipeline and write DIR/preview.png, DIR/preview.npz "
                    "(key frames: uint8 (B, V, T, H, W, C), after crop, before normalisation) and "
                    "DIR/preview.json (which frames each view shows).")
    p.add_argument("config", metavar="CONFIG", help="experiment YAML, e.g. pipelines/debug.yaml")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. data.augment=false")
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write the preview to")
    p.set_defaults(run=run_preview)


def run_preview(args) -> int:
    """Write the preview of ``args.config`` to ``args.out``."""
    # Imported here, not at the top: they load torch and DALI, which index and prepare never need.
    from timeclr.config import load_config
    from timeclr.pipelines.ingest.datasets import require_manifest
    from timeclr.pipelines.loader.preview import write_preview
    from timeclr.synthetic.dataset import chosen_manifests, prepare_synthetic

    try:
        cfg = load_config(args.config, args.overrides)
        if cfg.synthetic.enabled:  # the embedded set: generated on first use, as training does
            cfg.data.manifest, cfg.eval.test_manifest = chosen_manifests(cfg, *prepare_synthetic(cfg, rank=0))
        require_manifest(cfg.data.manifest, cfg.data)
    except (ConfigError, OSError) as e:
        raise SystemExit(f"timeclr.data preview: error: {e}") from None
    result = write_preview(cfg, args.out)
    print(f"wrote {args.out}/preview.png, preview.npz and preview.json ({len(result['samples'])} videos, "
          f"{len(cfg.data.views)} views)")
    return 0


def add_synthetic_parser(subparsers):
    p = subparsers.add_parser(
        "synthetic", help="generate the synthetic motion dataset and its manifests",
        description="Generate (once) the synthetic motion dataset under ROOT and print its manifests. "
                    + " ".join(f"Set {name}'s classes: " + "; ".join(f"{c}: {m.DESCRIPTIONS[c]}" for c in m.CLASSES) + "."
                               for name, m in SETS.items()))
    p.add_argument("--set", dest="set_name", choices=list(SETS), default="v1",
                   help="which set: v1 (8 classes) or v2 (14, in groups that need segment or interval views)")
    p.add_argument("root", metavar="ROOT", help="folder to generate into (must not exist, or be empty)")
    p.add_argument("--train-per-class", type=_positive_int, default=40)
    p.add_argument("--test-per-class", type=_positive_int, default=20)
    p.add_argument("--frames", type=_positive_int, default=32)
    p.add_argument("--size", type=_positive_int, default=64, help="frame side in pixels (even)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=_positive_int, default=min(8, os.cpu_count() or 1))
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(run=run_synthetic)


def run_synthetic(args) -> int:
    try:
        train_csv, test_csv = ensure_dataset(
            args.root, train_per_class=args.train_per_class, test_per_class=args.test_per_class,
            frames=args.frames, size=args.size, seed=args.seed, workers=args.workers,
            progress=not args.no_progress, set_name=args.set_name)
    except (ValueError, OSError) as e:
        print(f"timeclr.data synthetic: error: {e}", file=sys.stderr)
        return 2
    print(f"train manifest: {train_csv}")
    print(f"test manifest:  {test_csv}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``timeclr.data`` parser with one sub-parser per command."""
    parser = argparse.ArgumentParser(prog="python -m timeclr.data", description=__doc__.split("\n")[0])
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_prepare_parser(subparsers)
    add_index_parser(subparsers)
    add_preview_parser(subparsers)
    add_shard_parser(subparsers)
    add_synthetic_parser(subparsers)
    return parser


def main(argv=None) -> int:
    """Parse ``argv`` (default: the command line) and run the chosen command."""
    args = build_parser().parse_args(argv)
    return args.run(args)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


if __name__ == "__main__":
    sys.exit(main())
