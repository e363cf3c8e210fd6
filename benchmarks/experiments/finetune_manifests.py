"""The manifests finetune_synthetic.py fine-tunes and tests on: class-balanced labelled subsets of a
train manifest, one per subset seed, and the train-minus-validation / validation manifests of the
library's validation split (issue #30).

Each is a plain CSV with the source manifest's columns and rows (``path`` and ``root`` as they
were, so it sits beside its source and finds the same videos), and a copy of its class list, so
labels keep their meaning and ``timeclr.finetune`` accepts the pair (its train and test class lists
must agree).

    labelled_manifest(train.csv, 0.1, 101)     -> train_labels0.1_s101.csv
    validation_manifests(train.csv, 0.2, 0)    -> train_minus_val0.2_valseed0.csv, train_val0.2_valseed0.csv
"""
import csv
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from timeclr.evaluation.features import validation_split
from timeclr.files.atomic import atomic_open

# The subsets below 100 % labels, fixed for issue #30 before any result with them was seen, so no
# seed is kept for its outcome. Subset seed 0 draws the one subset of the runs before #30.
SUBSET_SEEDS = (101, 102, 103)


def read_rows(manifest) -> tuple[list[str], list[dict]]:
    """(header, rows as dicts of strings) of a plain-CSV manifest, in file order."""
    with open(manifest, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        return reader.fieldnames, list(reader)


def write_rows(out: Path, header, rows, source: Path):
    """``rows`` as a manifest at ``out`` with ``source``'s class list beside it, each file whole or
    not at all, the class list first: a manifest that exists always has its class list."""
    with atomic_open(out.with_suffix(".classes.txt"), "wb") as f:
        f.write(source.with_suffix(".classes.txt").read_bytes())
    with atomic_open(out, newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)


def labelled_manifest(manifest, fraction: float, subset_seed: int = SUBSET_SEEDS[0]) -> str:
    """The manifest of a class-balanced ``fraction`` of ``manifest``'s videos, ``max(1, round(fraction
    * n))`` of each class's n drawn by ``subset_seed``, written beside it as
    ``<name>_labels<fraction>_s<subset_seed>.csv``; ``manifest`` itself at 1. The chosen videos are
    repeated to the full manifest's length, so an epoch takes as many steps as at 100 %."""
    if fraction >= 1:
        return str(manifest)
    manifest = Path(manifest)
    out = manifest.with_name(f"{manifest.stem}_labels{fraction:g}_s{subset_seed}.csv")
    header, rows = read_rows(manifest)
    chosen = []
    for label in sorted({r["label"] for r in rows}, key=int):
        members = [r for r in rows if r["label"] == label]
        k = max(1, round(fraction * len(members)))
        # by (subset seed, class) alone: the same videos for every seed, init and budget
        picks = np.random.default_rng([subset_seed, int(label)]).permutation(len(members))[:k]
        chosen += [members[i] for i in sorted(picks.tolist())]
    repeated = [chosen[i % len(chosen)] for i in range(len(rows))]  # the full length: the same steps per epoch
    write_rows(out, header, repeated, manifest)
    return str(out)


def validation_manifests(manifest, val_fraction: float, val_seed: int) -> tuple[str, str]:
    """(train less validation, validation): ``manifest``'s rows as the library's ``validation_split``
    carves its videos (``EvalSplits.validation``: ``eval.val_fraction`` of each class, drawn by
    ``eval.val_seed``), each part in the manifest's order, written beside it as
    ``<name>_minus_val<fraction>_valseed<seed>.csv`` and ``<name>_val<fraction>_valseed<seed>.csv``."""
    manifest = Path(manifest)
    header, rows = read_rows(manifest)
    # the split reads only each video's label and place in the list: the rows stand in for the videos
    parts = validation_split([SimpleNamespace(label=int(r["label"]), row=r) for r in rows], val_fraction, val_seed)
    name = f"val{val_fraction:g}_valseed{val_seed}.csv"
    out = manifest.with_name(f"{manifest.stem}_minus_{name}"), manifest.with_name(f"{manifest.stem}_{name}")
    for path, part in zip(out, parts):
        write_rows(path, header, [v.row for v in part], manifest)
    return str(out[0]), str(out[1])
