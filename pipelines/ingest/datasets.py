"""The real datasets the configs in ``pipelines/`` train and evaluate on, and how to get each
from its download to a manifest.

Every dataset lives under one root (``data.root``; each config reads it from an environment
variable first, e.g. ``TIMECLR_UCF101``), laid out as

    ROOT/raw/          the videos as downloaded and extracted
    ROOT/annotations/  the dataset's official annotation files
    ROOT/prepared/     ``python -m timeclr.data prepare ROOT/raw ROOT/prepared`` (constant frame
                       rate, short closed GOPs, short side 256: fast and exact frame selection)
    ROOT/manifests/    ``python -m timeclr.data index ROOT/prepared --layout ... -o ROOT/manifests/NAME.csv``

A config names its dataset in ``data.dataset``; when its manifest is missing, ``missing_message``
says what to download, where to put it and which commands to run, instead of a traceback.
"""
import os
from dataclasses import dataclass

from timeclr.errors import ConfigError


@dataclass(frozen=True)
class Dataset:
    title: str
    env: str  # environment variable that overrides data.root in the configs
    download: str  # where the videos and the annotations come from
    annotations: str  # what ROOT/annotations holds
    annotation_format: str  # `index --layout`: timeclr.pipelines.ingest.annotation_formats
    manifests: dict  # manifest name -> extra `index` arguments


DATASETS = {
    "kinetics400": Dataset(
        title="Kinetics-400",
        env="TIMECLR_KINETICS400",
        download="https://github.com/cvdfoundation/kinetics-dataset (k400 videos and annotations; "
                 "some YouTube videos are always missing: they go to the rejects file)",
        annotations="train.csv, val.csv (or validate.csv), test.csv",
        annotation_format="kinetics",
        manifests={"train": "--subset train", "val": "--subset val"},
    ),
    "ucf101": Dataset(
        title="UCF101",
        env="TIMECLR_UCF101",
        download="https://www.crcv.ucf.edu/data/UCF101.php (UCF101.rar and "
                 "UCF101TrainTestSplits-RecognitionTask.zip)",
        annotations="the ucfTrainTestlist folder: classInd.txt, trainlist0N.txt, testlist0N.txt",
        annotation_format="ucf101",
        manifests={"train1": "--split 1 --subset train", "test1": "--split 1 --subset test"},
    ),
    "hmdb51": Dataset(
        title="HMDB51",
        env="TIMECLR_HMDB51",
        download="https://serre-lab.clps.brown.edu/resource/hmdb-a-large-human-motion-database/ "
                 "(hmdb51_org.rar, one .rar per class inside, and test_train_splits.rar)",
        annotations="the <class>_test_split<N>.txt files of testTrainMulti_7030_splits",
        annotation_format="hmdb51",
        manifests={"train1": "--split 1 --subset train", "test1": "--split 1 --subset test"},
    ),
    "ssv2": Dataset(
        title="Something-Something v2",
        env="TIMECLR_SSV2",
        download="https://developer.qualcomm.com/software/ai-datasets/something-something "
                 "(the 20bn-something-something-v2 video parts and the labels archive)",
        annotations="labels.json, train.json, validation.json",
        annotation_format="ssv2",
        manifests={"train": "--subset train", "val": "--subset val"},
    ),
}


def setup_commands(name: str, root: str, device: str) -> list[str]:
    """The commands that turn ROOT/raw and ROOT/annotations into ROOT/manifests/*.csv."""
    ds = DATASETS[name]
    # CPU: frame archives, the fastest storage measured (docs/results.md, "Storage layouts"); GPU: H.264 for
    # NVDEC, until a GPU run measures nvJPEG on archives against it
    codec = "h264" if device == "gpu" else "jpeg"
    commands = [f"python -m timeclr.data prepare {root}/raw {root}/prepared --codec {codec} --short-side 256"]
    for manifest, args in ds.manifests.items():
        commands.append(f"python -m timeclr.data index {root}/prepared --layout {ds.annotation_format} "
                        f"--annotations {root}/annotations {args} --device {device} "
                        f"-o {root}/manifests/{manifest}.csv")
    return commands


def missing_message(name: str, manifest: str, root: str, device: str) -> str:
    """What to do when ``manifest`` of dataset ``name`` (rooted at ``root``) does not exist."""
    ds = DATASETS[name]
    steps = [f"  1. download {ds.title} from {ds.download}",
             f"     and extract the videos into {root}/raw/ and the annotations ({ds.annotations}) "
             f"into {root}/annotations/",
             f"     (or set {ds.env} to the folder that holds raw/ and annotations/)"]
    steps += [f"  {k}. {command}" for k, command in enumerate(setup_commands(name, root, device), start=2)]
    return (f"data.manifest: {manifest} does not exist: {ds.title} is not set up under "
            f"{os.path.abspath(root)}. To set it up:\n" + "\n".join(steps))


def require_manifest(manifest: str, data, key: str = "data.manifest"):
    """Raise ``ConfigError`` with what to do when ``manifest`` (config key ``key``) does not exist:
    the set-up steps of ``data.dataset`` if the config names one, else the ``index`` command."""
    if os.path.exists(manifest):
        return
    if data.dataset:
        raise ConfigError(missing_message(data.dataset, manifest, data.root, data.device).replace(
            "data.manifest:", f"{key}:", 1))
    raise ConfigError(f"{key}: {manifest} does not exist; make one with "
                      "python -m timeclr.data index ROOT -o MANIFEST")
