"""Dataset annotation formats for ``python -m timeclr.data index --layout FORMAT``: read a
dataset's official annotation files into the videos of one split and the dataset's class list.

A folder-per-class tree says a video's class by where it sits; the public action datasets say it
in annotation files instead, and those files also say which videos form the train, val and test
splits. This module only reads annotations: each ``read_<format>`` function returns an
``Annotations`` (entries ``(key, class_name, where)`` and the ordered class list), and
``index.index_tree`` matches the entries against the files under ROOT, probes the matched
files and writes the manifest. One call reads one subset (and split), so one manifest each.

Keys and matching
    An entry's ``key`` is the video's path without its extension, as the annotations give it:
    ``<class folder>/<name>`` for UCF101 and HMDB51, the bare file name for Kinetics and SSv2.
    It matches the video file under ROOT whose path relative to ROOT, without its extension,
    is the key or ends with ``/<key>``: so a prepared tree (``prepare`` re-encodes ``.avi`` to
    ``.webm`` or ``.mp4`` under the same relative paths) indexes with the original annotation
    files, ROOT may be a folder above the dataset's own (``ROOT/UCF-101/<class>/...``), and
    Kinetics videos may sit in per-split or per-class folders at any depth. Matching is exact,
    except for formats with ``ignore_case`` (UCF101, HMDB51), where a key that matches no file
    exactly matches the one file that agrees with it but for case. An entry that matches no file
    is rejected as ``missing``; an entry that matches several is ambiguous and each of them is
    rejected as ``duplicate``. Files under ROOT that no entry names belong to another split (or
    to no split) and are left out of this manifest without being rejected.

Labels
    ``classes`` lists every class of the dataset, whether or not the chosen split has a video of
    it, in label order (label i = ``classes[i]``), so manifests of the train and test splits of
    one dataset agree on labels. A subset whose annotations carry no labels (a Kinetics
    ``test.csv`` without a ``label`` column, as some releases ship it, or with empty labels;
    SSv2's ``test.json``) cannot make a manifest: every row needs a label in 0..C-1, which
    ``read_manifest`` and the pipelines rely on, so reading it raises ``ManifestError`` saying
    so (and pointing to the val subset) instead of inventing a label.

Formats (the values of ``--layout``; ``--annotations`` is the file or folder named below; a folder
that lacks the expected files but has exactly one sub-folder holding them, as an extracted archive
does, is used through that sub-folder)

``folder``
    No annotations: class = parent folder (``index`` module docstring). Takes no
    ``annotations``, ``split`` or ``subset``.

``kinetics`` (Kinetics-400/600/700): subsets train, val, test
    CSV files with a header naming at least ``label,youtube_id,time_start,time_end`` (a ``split``
    column and others may follow): ``train.csv``, ``validate.csv`` (or ``val.csv``), ``test.csv``.
    ``annotations`` is the folder holding them (``subset`` picks the file; val reads
    ``validate.csv``) or one CSV file (all its rows, or with ``subset`` only the rows whose
    ``split`` column names it, if it has one). A row's video is
    ``{youtube_id}_{time_start:06d}_{time_end:06d}.<ext>`` anywhere under ROOT. Labels: the
    sorted class names of all the standard CSVs in the folder (those of them with labels), so
    that a train and a val manifest agree even when one is given as a file.

``ucf101`` (UCF101): splits 1-3, subsets train, test
    The ``ucfTrainTestlist`` folder: ``classInd.txt`` (``1 ApplyEyeMakeup``: labels are the
    1-based indices minus one, in classInd order), ``trainlist0N.txt``
    (``ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1``) and ``testlist0N.txt`` (the path only).
    CRLF line ends, as shipped, read like LF. A line's class is its path's folder, looked up in
    classInd.txt ignoring case; a train line's index must agree with it. Case is ignored in
    matching too: UCF101 writes one class ``HandstandPushups`` in some places and
    ``HandStandPushups`` in others (class name vs. its files' names), so a list, a download or
    anything that rebuilds file names from class names may disagree with the files on disk in
    the case of that ``S`` alone.

``hmdb51`` (HMDB51): splits 1-3, subsets train, test
    The folder of ``<class>_test_split<N>.txt`` files (``testTrainMulti_7030_splits``), one per
    class and split, lines ``<video file name> <tag>``: tag 1 train, 2 test, 0 in neither. The
    key is ``<class>/<name>``. Labels: the class names of all the split files, sorted.

``ssv2`` (Something-Something v2): subsets train, val
    The folder holding ``labels.json`` (``{"Holding something next to something": "0", ...}``:
    class name -> label) and ``train.json`` / ``validation.json`` / ``test.json`` (lists of
    ``{"id": "78687", "template": "Holding [something] next to [something]", ...}``). An entry's
    class is its template with the brackets removed, looked up in labels.json exactly; its video
    is ``<id>.<ext>`` (``.webm`` as shipped). ``test.json`` holds ids only: no labels, see above.
"""
import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from timeclr.errors import ManifestError
from timeclr.pipelines.ingest.annotation_files import dataset_folder, lines, open_text, read_json, strip_extension

ANNOTATION_FORMATS = ("folder", "kinetics", "ucf101", "hmdb51", "ssv2")  # the values of --layout
SUBSETS = ("train", "val", "test")
OFFICIAL_SPLITS = (1, 2, 3)  # UCF101's and HMDB51's numbered splits (--split)

# What each annotation format accepts; None: the option does not apply to the format.
FORMAT_SPLITS = {"kinetics": None, "ucf101": OFFICIAL_SPLITS, "hmdb51": OFFICIAL_SPLITS, "ssv2": None}
FORMAT_SUBSETS = {"kinetics": ("train", "val", "test"), "ucf101": ("train", "test"),
                  "hmdb51": ("train", "test"), "ssv2": ("train", "val", "test")}

KINETICS_FILES = {"train": ("train.csv",), "val": ("validate.csv", "val.csv"), "test": ("test.csv",)}
KINETICS_SPLIT_NAMES = {"train": {"train"}, "val": {"val", "validate", "validation"}, "test": {"test"}}
KINETICS_COLUMNS = ("youtube_id", "time_start", "time_end")
SSV2_FILES = {"train": "train.json", "val": "validation.json", "test": "test.json"}
HMDB51_TAGS = {"train": "1", "test": "2"}


class Entry(NamedTuple):
    """One video of the annotations: its ``key`` (path without extension, ``/`` separators),
    its class and ``where`` it is listed (``file:line``), for messages."""
    key: str
    class_name: str
    where: str


@dataclass
class Annotations:
    """The videos of one subset (and split) of a dataset, and all the dataset's classes."""
    annotation_format: str  # one of ANNOTATION_FORMATS
    entries: list  # of Entry, one per key
    classes: list  # class names, label i = classes[i]
    source: str  # what was read, e.g. "ucf101 split 1 train (.../trainlist01.txt)"
    ignore_case: bool = False  # whether a key may match a file that differs only in case
    files: list = field(default_factory=list)  # the annotation files read


def read_annotations(annotation_format: str, annotations=None, split=None, subset=None) -> Annotations | None:
    """The annotations in ``annotation_format`` (one of ``ANNOTATION_FORMATS``) for ``split`` and
    ``subset``, or None for ``folder``. Raises ManifestError for an unknown format, an option the
    format does not take or lacks, or unreadable annotations. Messages name the options as the
    command line spells them (``--layout``, ``--split``, ``--subset``, ``--annotations``)."""
    fmt = annotation_format
    if fmt not in ANNOTATION_FORMATS:
        raise ManifestError(f"unknown layout {fmt!r}: choose one of {', '.join(ANNOTATION_FORMATS)}")
    given = [name for name, value in (("--annotations", annotations), ("--split", split),
                                      ("--subset", subset)) if value is not None]
    if fmt == "folder":
        if given:
            raise ManifestError(f"{', '.join(given)}: only for an annotated layout "
                                f"(--layout {'|'.join(ANNOTATION_FORMATS[1:])}); --layout folder takes classes "
                                f"from the folders")
        return None
    if annotations is None:
        raise ManifestError(f"--layout {fmt} needs --annotations: the dataset's annotation "
                            f"{'file or folder' if fmt == 'kinetics' else 'folder'}")
    split = _check_split(fmt, split)
    if subset is not None and subset not in FORMAT_SUBSETS[fmt]:
        raise ManifestError(f"--subset {subset}: {fmt} has no {subset} subset "
                            f"(choose from {', '.join(FORMAT_SUBSETS[fmt])})")
    annotations = Path(annotations)
    if not annotations.exists():
        raise ManifestError(f"{annotations}: no such file or folder (the --annotations of --layout {fmt})")
    if fmt == "kinetics":
        return read_kinetics(annotations, subset)
    if subset is None:
        raise ManifestError(f"--layout {fmt} needs --subset ({', '.join(FORMAT_SUBSETS[fmt])})")
    if fmt == "ucf101":
        return read_ucf101(annotations, split, subset)
    if fmt == "hmdb51":
        return read_hmdb51(annotations, split, subset)
    return read_ssv2(annotations, subset)


def _check_split(fmt: str, split) -> int | None:
    splits = FORMAT_SPLITS[fmt]
    if splits is None:
        if split is not None:
            raise ManifestError(f"--split {split}: {fmt} has a single official split; "
                                f"--split is for {', '.join(k for k, v in FORMAT_SPLITS.items() if v)}")
        return None
    if split is None:
        raise ManifestError(f"--layout {fmt} needs --split ({', '.join(map(str, splits))}: its official splits)")
    try:
        value = int(split)
    except (TypeError, ValueError):
        value = None
    if value not in splits:
        raise ManifestError(f"--split {split}: {fmt} has splits {', '.join(map(str, splits))}")
    return value


# ----------------------------------------------------------------------------------------------
# Kinetics


def read_kinetics(annotations, subset: str | None = None) -> Annotations:
    """Kinetics CSV annotations: ``annotations`` is the folder of ``train.csv``, ``validate.csv``,
    ``test.csv`` (``subset`` required) or one CSV file (``subset`` optional: filters on its
    ``split`` column). See the module docstring."""
    annotations = Path(annotations)
    if annotations.is_dir():
        if subset is None:
            raise ManifestError(f"{annotations}: a Kinetics annotation folder needs --subset "
                                f"({', '.join(KINETICS_FILES)}), or give the CSV file itself")
        folder = dataset_folder(annotations, [n for names in KINETICS_FILES.values() for n in names],
                                 "Kinetics", "train.csv, validate.csv, test.csv")
        path = next((folder / n for n in KINETICS_FILES[subset] if (folder / n).is_file()), None)
        if path is None:
            raise ManifestError(f"{folder}: no {' or '.join(KINETICS_FILES[subset])} "
                                f"(the Kinetics {subset} annotations)")
    else:
        path, folder = annotations, annotations.parent
    header, rows = _read_kinetics_csv(path)
    if "label" not in header:
        raise ManifestError(f"{path}: no 'label' column (header: {','.join(header)}): this subset's "
                            "annotations are unlabelled, and every manifest row needs a label; "
                            "index a labelled subset (val) to evaluate")
    if subset is not None and "split" in header:
        wanted = KINETICS_SPLIT_NAMES[subset]
        seen = sorted({row["split"] for _, row in rows})
        rows = [(line, row) for line, row in rows if row["split"] in wanted]
        if not rows:
            raise ManifestError(f"{path}: no row of subset {subset} (split column values: {', '.join(seen)})")
    entries = []
    for line, row in rows:
        where = f"{path}:{line}"
        if not row["label"]:
            raise ManifestError(f"{where}: no label (an unlabelled row cannot go in a manifest)")
        start, end = (_whole_seconds(row[k], k, where) for k in ("time_start", "time_end"))
        entries.append(Entry(f"{row['youtube_id']}_{start:06d}_{end:06d}", row["label"], where))

    classes, files = {e.class_name for e in entries}, [path]
    for name in (n for names in KINETICS_FILES.values() for n in names):
        sibling = folder / name
        if sibling.is_file() and sibling.resolve() != path.resolve():
            sibling_header, sibling_rows = _read_kinetics_csv(sibling)
            if "label" in sibling_header:
                classes.update(row["label"] for _, row in sibling_rows if row["label"])
                files.append(sibling)
    what = f"subset {subset}" if subset else "all rows"
    return Annotations("kinetics", _unique(entries), sorted(classes), f"kinetics {what} ({path})",
                       files=files)


def _read_kinetics_csv(path: Path) -> tuple[list, list]:
    """(header, [(line number, row dict)]) of a Kinetics CSV, checked for the key columns."""
    with open_text(path) as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in reader.fieldnames or []]
        missing = [c for c in KINETICS_COLUMNS if c not in header]
        if missing:
            raise ManifestError(f"{path}:1: not a Kinetics annotation CSV: no {', '.join(missing)} column "
                                f"(header: {','.join(header) or 'none'}; expected "
                                "label,youtube_id,time_start,time_end,split)")
        reader.fieldnames = header
        rows = []
        try:
            for row in reader:
                if None in row or any(row[c] is None for c in KINETICS_COLUMNS):
                    raise ManifestError(f"{path}:{reader.line_num}: {len(header)} columns expected "
                                        f"({','.join(header)})")
                rows.append((reader.line_num, {k: (v or "").strip() for k, v in row.items()}))
        except csv.Error as e:
            raise ManifestError(f"{path}:{reader.line_num}: not valid CSV ({e})") from None
    return header, rows


def _whole_seconds(text: str, column: str, where: str) -> int:
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not math.isfinite(value) or value < 0 or value != int(value):
        raise ManifestError(f"{where}: {column} {text!r} is not a whole number of seconds")
    return int(value)


# ----------------------------------------------------------------------------------------------
# UCF101


def read_ucf101(annotations, split: int, subset: str) -> Annotations:
    """UCF101's ``ucfTrainTestlist`` folder: ``classInd.txt`` and ``{train,test}list0{split}.txt``."""
    folder = dataset_folder(Path(annotations), ["classInd.txt"], "UCF101",
                             "classInd.txt, trainlist0N.txt, testlist0N.txt: the ucfTrainTestlist folder")
    class_file = folder / "classInd.txt"
    indexed = {}
    for line, text in lines(class_file):
        fields = text.split()
        if len(fields) != 2 or not fields[0].isdigit():
            raise ManifestError(f"{class_file}:{line}: expected '<index> <class name>', got {text!r}")
        if int(fields[0]) in indexed:
            raise ManifestError(f"{class_file}:{line}: index {fields[0]} listed twice")
        indexed[int(fields[0])] = fields[1]
    if sorted(indexed) != list(range(1, len(indexed) + 1)):
        raise ManifestError(f"{class_file}: the class indices are not 1..{len(indexed)}")
    classes = [indexed[i] for i in range(1, len(indexed) + 1)]
    by_folded = {c.casefold(): c for c in classes}
    if len(by_folded) != len(classes):
        raise ManifestError(f"{class_file}: two class names differ only in case")

    path = folder / f"{subset}list{split:02d}.txt"
    if not path.is_file():
        raise ManifestError(f"{folder}: no {path.name} (UCF101's split {split} {subset} list)")
    entries = []
    for line, text in lines(path):
        where, fields = f"{path}:{line}", text.split()
        if len(fields) not in (1, 2) or "/" not in fields[0]:
            raise ManifestError(f"{where}: expected '<class>/<video file>{' <index>' if subset == 'train' else ''}'"
                                f", got {text!r}")
        folder_name = fields[0].split("/")[0]
        class_name = by_folded.get(folder_name.casefold())
        if class_name is None:
            raise ManifestError(f"{where}: class {folder_name!r} is not in {class_file}")
        if len(fields) == 2 and fields[1] != str(classes.index(class_name) + 1):
            raise ManifestError(f"{where}: index {fields[1]} disagrees with {class_file}, where "
                                f"{class_name} is {classes.index(class_name) + 1}")
        entries.append(Entry(strip_extension(fields[0]), class_name, where))
    return Annotations("ucf101", _unique(entries), classes, f"ucf101 split {split} {subset} ({path})",
                       ignore_case=True, files=[class_file, path])


# ----------------------------------------------------------------------------------------------
# HMDB51


def read_hmdb51(annotations, split: int, subset: str) -> Annotations:
    """HMDB51's folder of ``<class>_test_split<N>.txt`` files."""
    folder = dataset_folder(Path(annotations), ["*_test_split[123].txt"], "HMDB51",
                             "<class>_test_split<N>.txt files: the testTrainMulti_7030_splits folder")
    classes = sorted({p.name[:-len("_test_splitN.txt")] for p in folder.glob("*_test_split[123].txt")})
    entries, files = [], []
    for class_name in classes:
        path = folder / f"{class_name}_test_split{split}.txt"
        if not path.is_file():
            raise ManifestError(f"{folder}: no {path.name}, though other splits of class {class_name} are there")
        files.append(path)
        for line, text in lines(path):
            where, fields = f"{path}:{line}", text.split()
            if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
                raise ManifestError(f"{where}: expected '<video file> <tag>' with tag 0, 1 or 2, got {text!r}")
            if fields[1] == HMDB51_TAGS[subset]:
                entries.append(Entry(f"{class_name}/{strip_extension(fields[0])}", class_name, where))
    if not entries:
        raise ManifestError(f"{folder}: the split {split} files tag no video {HMDB51_TAGS[subset]} ({subset})")
    return Annotations("hmdb51", _unique(entries), classes, f"hmdb51 split {split} {subset} ({folder})",
                       ignore_case=True, files=files)


# ----------------------------------------------------------------------------------------------
# Something-Something v2


def read_ssv2(annotations, subset: str) -> Annotations:
    """Something-Something v2's ``labels.json`` and ``train.json`` / ``validation.json``."""
    folder = dataset_folder(Path(annotations), ["labels.json"], "SSv2",
                             "labels.json, train.json, validation.json")
    labels_path = folder / "labels.json"
    labels = read_json(labels_path)
    if not isinstance(labels, dict) or not labels:
        raise ManifestError(f"{labels_path}: expected an object {{\"class name\": \"label\", ...}}")
    by_label = {}
    for name, value in labels.items():
        try:
            label = int(value)
        except (TypeError, ValueError):
            label = None
        if label is None or label in by_label:
            raise ManifestError(f"{labels_path}: class {name!r} has label {value!r}, "
                                + ("not a whole number" if label is None else f"as has {by_label[label]!r}"))
        by_label[label] = name
    if sorted(by_label) != list(range(len(by_label))):
        raise ManifestError(f"{labels_path}: the labels are not 0..{len(by_label) - 1}")
    classes = [by_label[i] for i in range(len(by_label))]

    path = folder / SSV2_FILES[subset]
    if not path.is_file():
        raise ManifestError(f"{folder}: no {path.name} (the SSv2 {subset} annotations)")
    items = read_json(path)
    if not isinstance(items, list):
        raise ManifestError(f"{path}: expected a list of {{\"id\": ..., \"template\": ...}} objects")
    entries = []
    for i, item in enumerate(items):
        where = f"{path} entry {i}" + (f" (id {item['id']})" if isinstance(item, dict) and "id" in item else "")
        if not isinstance(item, dict) or "id" not in item:
            raise ManifestError(f"{where}: expected an object with an 'id'")
        if "template" not in item:
            raise ManifestError(f"{where}: no 'template' (no label): the {subset} annotations are "
                                "unlabelled, and every manifest row needs a label; index --subset val to evaluate")
        class_name = str(item["template"]).replace("[", "").replace("]", "")
        if class_name not in labels:
            raise ManifestError(f"{where}: class {class_name!r} (its template without brackets) "
                                f"is not in {labels_path}")
        entries.append(Entry(str(item["id"]), class_name, where))
    if not entries:
        raise ManifestError(f"{path}: lists no video")
    return Annotations("ssv2", _unique(entries), classes, f"ssv2 {subset} ({path})", files=[labels_path, path])


# ----------------------------------------------------------------------------------------------
# Helpers


def _unique(entries: list) -> list:
    """``entries`` with repeats of a key dropped; a key listed with two classes is an error,
    since a manifest row has one label."""
    first = {}
    for entry in entries:
        seen = first.setdefault(entry.key, entry)
        if seen.class_name != entry.class_name:
            raise ManifestError(f"{entry.where}: {entry.key} is listed as {entry.class_name!r}, but "
                                f"{seen.where} lists it as {seen.class_name!r}")
    return list(first.values())
