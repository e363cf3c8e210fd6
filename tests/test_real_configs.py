"""Every shipped real-dataset config (pipelines/kinetics.yaml, ucf101.yaml, hmdb51.yaml, ssv2.yaml,
ucf101_finetune.yaml, hmdb51_finetune.yaml) end to end on a CPU, on a tiny download of each
dataset in its official layout (issue #28): the set-up commands (``datasets.setup_commands``: what a
config prints when its dataset is missing, and what docs/datasets.md shows), prepare and index with
the official annotation files, then the config itself with size overrides only and its own
R(2+1)D-18: training killed right after a checkpoint, the same command resuming, evaluation, and
fine-tuning from a pretraining checkpoint. A config that drifts from the code (a key renamed, a
manifest name the set-up commands do not write, a model the fine-tuning configs cannot load) fails
here.

The downloads are re-encoded from the real clips in shared/data/real-clips (each class's videos
are consecutive stretches of one clip, small and short) in the container and codec each dataset
ships (Kinetics H.264 .mp4 named ``<youtube_id>_<start>_<end>``, UCF101 and HMDB51 MPEG-4 .avi,
Something-Something v2 VP9 .webm at 12 fps), beside annotation files written as the datasets ship
them (``timeclr.pipelines.ingest.annotation_formats``). Expected manifests are written out per
dataset, not derived from the annotation files. The pretraining runs are made once per module
(``pretrained``) and shared by the evaluation and fine-tuning tests."""
import bisect
import contextlib
import csv
import io
import json
import math
import re
import shlex
import sys
from pathlib import Path

import av
import pytest
from av.video.reformatter import VideoReformatter
from omegaconf import OmegaConf

from timeclr import data
from timeclr.config import load_config
from timeclr.evaluate import main as evaluate_main
from timeclr.finetune import main as finetune_main
from timeclr.pipelines.ingest.datasets import DATASETS, setup_commands
from timeclr.pipelines.storage.manifest import sidecar_paths
from timeclr.pipelines.storage.encode import write_video
from timeclr.train import main as train_main
from tests.helpers.runs import die_after_checkpoint, losses

pytestmark = pytest.mark.heavy

REPO = Path(__file__).resolve().parents[1]
REAL_CLIPS = REPO.parent / "shared" / "data" / "real-clips"

RAW_SHORT_SIDE = 64  # the downloads' frames
SHORT_SIDE = 32  # prepare --short-side (the set-up commands: 256), data.short_side and every crop
FRAMES = 4  # every view's frames (the configs: 16)
SECONDS = 1.2  # each video's length
BATCH = 2

# Size overrides only: steps, batch, clip length, resolution, threads. data.device=cpu is the
# documented switch for a machine without a GPU (docs/datasets.md); the model is the config's own.
SIZE = ["data.device=cpu", "data.num_threads=2", f"data.batch_size={BATCH}", f"data.short_side={SHORT_SIDE}",
        "train.epochs=1", "train.ckpt_every=1", "train.log_every=1"]
PRETRAIN_SIZE = SIZE + [f"data.views.{v}.{key}={value}" for v in (0, 1)
                        for key, value in (("frames", FRAMES), ("crop_size", SHORT_SIDE))]
FINETUNE_SIZE = SIZE + [f"data.views.0.frames={FRAMES}", f"data.views.0.crop_size={SHORT_SIDE}",
                        "finetune.test_clips=2"]  # x the config's 3 crops
METRICS = {"linear_top1", "knn_top1", "retrieval_r1", "retrieval_r5", "retrieval_r10", "retrieval_r20"}


# ----------------------------------------------------------------------------------------------
# The downloads


class Download:
    """One dataset's tiny download: its videos (``raw``: path under ROOT/raw without extension ->
    (real clip, start second)), their codec, extension and frame rate, its annotation files (path
    under ROOT/annotations -> bytes), and what indexing must make of them: the class list in label
    order and each manifest's videos (path under ROOT/prepared without extension -> class)."""

    def __init__(self, dataset, codec, ext, fps, classes):
        self.dataset, self.codec, self.ext, self.fps, self.classes = dataset, codec, ext, fps, classes
        self.raw, self.annotations, self.manifests = {}, {}, {}
        self.rejects = {}  # manifest name -> {path: reason keyword}

    @property
    def env(self):
        return DATASETS[self.dataset].env


def kinetics() -> Download:
    """cvdfoundation's k400: ``<youtube_id>_<start:06d>_<end:06d>.mp4`` under train/ and val/;
    annotations train.csv, val.csv, test.csv (label,youtube_id,time_start,time_end,split). Labels:
    the sorted class names."""
    ds = Download("kinetics400", "h264", ".mp4", 25, ["arm wrestling", "cleaning pool"])
    clips = {"arm wrestling": ("k400_arm_wrestling.mp4", ["-5Mc5NNfXYk", "0Xa9CDk2qs8", "TmCYmMh9xAc"]),
             "cleaning pool": ("k400_cleaning_pool.mp4", ["5bc8gxIWP1Y", "pd_aQxjzRRc", "w2kLsDnxEJU"])}
    rows = {"train": [], "val": [], "test": [["cleaning pool", "Qy7Zc6VnQbE", 0, 10, "test"]]}
    ds.manifests = {"train": {}, "val": {}}
    for label, (clip, ids) in clips.items():
        for k, yt_id in enumerate(ids):
            subset, start = ("val" if k == 2 else "train"), 10 * k + 3  # whole seconds of the YouTube video
            key = f"{subset}/{yt_id}_{start:06d}_{start + 10:06d}"
            ds.raw[key] = clip, k * SECONDS
            rows[subset].append([label, yt_id, start, start + 10, subset])
            ds.manifests[subset][key] = label
    rows["train"].append(["arm wrestling", "zzNoLongrUp", 40, 50, "train"])  # taken down: never downloaded
    ds.rejects = {"train": {"zzNoLongrUp_000040_000050": "missing"}}
    for subset in rows:
        ds.annotations[f"{subset}.csv"] = "".join(
            ",".join(map(str, row)) + "\n" for row in [["label", "youtube_id", "time_start", "time_end", "split"],
                                                       *rows[subset]]).encode()
    return ds


def ucf101() -> Download:
    """UCF101.rar (``UCF-101/<Class>/v_<Class>_gGG_cCC.avi``, XviD) and the ucfTrainTestlist folder
    of the splits zip (classInd.txt, trainlist01.txt, testlist01.txt; CRLF): split 1 tests groups
    1-7. Labels: classInd's order."""
    ds = Download("ucf101", "mpeg4", ".avi", 25, ["Biking", "ApplyEyeMakeup"])  # not sorted: classInd decides
    clips = {"Biking": "bikes.mp4", "ApplyEyeMakeup": "ucf101_apply_eye_makeup.avi"}
    lines = {"classInd.txt": [], "trainlist01.txt": [], "testlist01.txt": []}
    ds.manifests = {"train1": {}, "test1": {}}
    for index, (cls, clip) in enumerate(clips.items(), start=1):
        lines["classInd.txt"].append(f"{index} {cls}")
        for k, group in enumerate((8, 9, 1)):
            rel = f"{cls}/v_{cls}_g{group:02d}_c01"
            ds.raw[f"UCF-101/{rel}"] = clip, k * SECONDS
            subset = "train" if group >= 8 else "test"
            lines[f"{subset}list01.txt"].append(f"{rel}.avi {index}" if subset == "train" else f"{rel}.avi")
            ds.manifests[f"{subset}1"][f"UCF-101/{rel}"] = cls
    for name, text in lines.items():
        ds.annotations[f"ucfTrainTestlist/{name}"] = "".join(line + "\r\n" for line in text).encode()
    return ds


def hmdb51() -> Download:
    """hmdb51_org.rar's per-class archives extracted (``<class>/<name>.avi``, names as odd as
    HMDB51's) and test_train_splits.rar (testTrainMulti_7030_splits/``<class>_test_split<N>.txt``,
    lines ``<name>.avi <tag> ``: 1 train, 2 test, 0 neither). Labels: the sorted class names."""
    ds = Download("hmdb51", "mpeg4", ".avi", 30, ["talk", "walk"])
    videos = {"talk": ("Megamind.avi", ["Megamind_talk_h_nm_np1_fr_goo_0", "#122_Megamind_talk_h_cm_np1_le_med_1",
                                        "Megamind_(2010)_talk_u_nm_np2_fr_bad_2", "Megamind_talk_h_nm_np1_ri_goo_3"]),
              "walk": ("street_426x240.mp4", ["Street_walk_f_cm_np4_fr_med_0", "#7_Street_walk_f_cm_np2_ba_bad_1",
                                              "Street_walk_u_nm_np3_le_med_2", "Street_walk_f_nm_np1_ri_goo_3"])}
    tags = {1: "1120", 2: "1210", 3: "2110"}  # per split, the tags of each class's four videos
    ds.manifests = {"train1": {}, "test1": {}}
    for cls, (clip, names) in videos.items():
        for k, name in enumerate(names):
            ds.raw[f"{cls}/{name}"] = clip, k * SECONDS
            manifest = {"1": "train1", "2": "test1"}.get(tags[1][k])
            if manifest:
                ds.manifests[manifest][f"{cls}/{name}"] = cls
        for split, split_tags in tags.items():
            ds.annotations[f"testTrainMulti_7030_splits/{cls}_test_split{split}.txt"] = "".join(
                f"{name}.avi {tag} \n" for name, tag in zip(names, split_tags)).encode()
    return ds


def ssv2() -> Download:
    """20bn-something-something-v2 (``<id>.webm``, VP9, 12 fps) and the labels archive
    (labels.json, train.json, validation.json, test.json). Labels: labels.json's numbers."""
    templates = {"Showing [something] to the camera": ("bigbuckbunny.mp4", ["78687", "42326", "100904"]),
                 "Moving [something] up": ("tree.avi", ["74225", "116154", "198186"])}
    classes = [t.replace("[", "").replace("]", "") for t in templates]
    ds = Download("ssv2", "vp9", ".webm", 12, classes)
    items = {"train": [], "val": []}
    ds.manifests = {"train": {}, "val": {}}
    for cls, (template, (clip, ids)) in zip(classes, templates.items()):
        for k, (vid, thing) in enumerate(zip(ids, ["a leaf", "a mug", "a pen"])):
            subset = "val" if k == 2 else "train"
            ds.raw[f"20bn-something-something-v2/{vid}"] = clip, k * SECONDS
            items[subset].append({"id": vid, "label": template.replace("[something]", thing), "template": template,
                                  "placeholders": [thing]})
            ds.manifests[subset][f"20bn-something-something-v2/{vid}"] = cls
    ds.annotations["labels.json"] = json.dumps({c: str(i) for i, c in enumerate(classes)}, indent=1).encode()
    ds.annotations["train.json"] = json.dumps(items["train"]).encode()
    ds.annotations["validation.json"] = json.dumps(items["val"]).encode()
    ds.annotations["test.json"] = json.dumps([{"id": "220847"}]).encode()  # no labels, as shipped
    return ds


DOWNLOADS = {"kinetics": kinetics, "ucf101": ucf101, "hmdb51": hmdb51, "ssv2": ssv2}  # config name -> download


def decode(path, short_side: int):
    """(sorted frame times in seconds, RGB frames with the short side ``short_side``) of a real
    clip's first four stretches."""
    reformatter = VideoReformatter()  # one scaler for all frames: a new one per frame costs 3x the decode
    shown = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        w, h = stream.codec_context.width, stream.codec_context.height
        size = [2 * round(side * short_side / min(w, h) / 2) for side in (w, h)]
        for frame in container.decode(stream):
            if frame.time is not None:
                shown.append((float(frame.time), reformatter.reformat(frame, *size, format="rgb24").to_ndarray()))
                if shown[-1][0] > 4 * SECONDS + 0.5:
                    break
    shown.sort(key=lambda tf: tf[0])  # some AVIs' timestamps step back
    return [t for t, _ in shown], [f for _, f in shown]


def stretch(footage, start: float, fps: int) -> list:
    """``SECONDS`` of a decoded clip from ``start`` at a constant ``fps``: at each time the frame
    on screen then, as a re-encode at that rate shows it (a clip shorter than that holds its last frame)."""
    times, frames = footage
    at = [times[0] + start + k / fps for k in range(round(SECONDS * fps))]
    return [frames[max(0, bisect.bisect_right(times, t) - 1)] for t in at]


def data_argv(command: str) -> list:
    """A ``python -m timeclr.data`` command of ``setup_commands`` as ``timeclr.data.main``'s argv,
    resized: the short side ours, two workers."""
    argv = shlex.split(command)
    assert argv[:3] == ["python", "-m", "timeclr.data"], command
    argv = argv[3:]
    if "--short-side" in argv:
        argv[argv.index("--short-side") + 1] = str(SHORT_SIDE)
    return [*argv, "--workers", "2"]


@pytest.fixture(scope="module")
def downloads(tmp_path_factory):
    """{config name: (ROOT, Download)}: ROOT/raw and ROOT/annotations written, then the dataset's
    set-up commands run (prepare into ROOT/prepared, index into ROOT/manifests)."""
    if not REAL_CLIPS.is_dir():
        pytest.skip(f"real clips not found at {REAL_CLIPS}")
    sets = {name: make() for name, make in DOWNLOADS.items()}
    clips = sorted({clip for ds in sets.values() for clip, _ in ds.raw.values()})
    footage = {clip: decode(REAL_CLIPS / clip, RAW_SHORT_SIDE) for clip in clips}  # each clip decoded once
    out = {}
    for name, ds in sets.items():
        root = tmp_path_factory.mktemp(name)
        for rel, (clip, start) in ds.raw.items():
            path = root / "raw" / f"{rel}{ds.ext}"
            path.parent.mkdir(parents=True, exist_ok=True)
            write_video(path, stretch(footage[clip], start, ds.fps), codec=ds.codec, fps=ds.fps, gop=ds.fps)
        for rel, content in ds.annotations.items():
            (root / "annotations" / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / "annotations" / rel).write_bytes(content)
        for command in setup_commands(ds.dataset, str(root), "cpu"):
            assert data.main(data_argv(command)) == 0, command
        out[name] = root, ds
    return out


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_the_docs_show_the_set_up_commands_the_configs_print():
    """docs/datasets.md's prepare and index commands (GPU form) are ``setup_commands``', which
    the tests below run in their CPU form: one set of commands, wherever a user reads them."""
    text = (REPO / "docs" / "datasets.md").read_text()
    blocks = re.findall(r"^```bash\n(.*?)^```", text, re.M | re.S)
    shown = []
    for block in blocks:
        block = re.sub(r"\\\n\s*", "", block)  # continuation lines
        loop = re.search(r"^for (\w+) in ([^;]+); do\n(.*?)^done", block, re.M | re.S)
        if loop:  # for subset in train test; do ... done: one command per value
            var, values, body = loop.groups()
            block = block.replace(loop.group(0), "".join(
                body.replace(f"${{{var}}}", v).replace(f"${var}", v) for v in values.split()))
        shown.append([" ".join(line.split()) for line in block.splitlines()
                      if line.strip().startswith("python -m timeclr.data")])
    kinetics_block, ucf101_block = shown
    assert kinetics_block == setup_commands("kinetics400", "data/kinetics400", "gpu")
    assert ucf101_block == setup_commands("ucf101", "data/ucf101", "gpu")
    # "HMDB51 is the same with hmdb51 in place of ucf101"
    assert [c.replace("ucf101", "hmdb51") for c in ucf101_block] == setup_commands("hmdb51", "data/hmdb51", "gpu")


def test_set_up_commands_index_the_official_annotations_into_the_configs_manifests(downloads):
    for name, (root, ds) in downloads.items():
        cfg = load_config(f"pipelines/{name}.yaml")
        named = {Path(m).stem for m in (cfg.data.manifest, cfg.eval.train_manifest, cfg.eval.test_manifest) if m}
        assert named <= set(ds.manifests), f"pipelines/{name}.yaml names manifests {named}"
        for manifest_name, want in ds.manifests.items():
            path = root / "manifests" / f"{manifest_name}.csv"
            rows = read_csv(path)
            got = {r["path"].rsplit(".", 1)[0]: r["class_name"] for r in rows}
            assert got == want, f"{name} {manifest_name}: {got} != {want}"
            for r in rows:
                assert (int(r["label"]), r["codec"]) == (ds.classes.index(r["class_name"]), "jpeg"), r
                assert int(r["num_frames"]) == round(SECONDS * ds.fps) and min(int(r["width"]), int(r["height"])) \
                    == SHORT_SIDE, r
            assert sidecar_paths(path)[0].read_text().splitlines() == ds.classes
            rejects = {r["path"]: r["reason"].split(":")[0] for r in read_csv(sidecar_paths(path)[1])}
            assert rejects == ds.rejects.get(manifest_name, {}), f"{name} {manifest_name}: {rejects}"


# ----------------------------------------------------------------------------------------------
# The runs


class _Tee(io.StringIO):
    """Keeps what is printed and passes it on (to pytest's capture)."""

    def __init__(self, to):
        super().__init__()
        self.to = to

    def write(self, text):
        self.to.write(text)
        return super().write(text)


def run_command(main, config, ds, root, argv, die_at=None) -> str:
    """``main([config, *argv])`` with the dataset's environment variable naming ``root`` (the
    configs' data.root); with ``die_at``, killed right after writing that step's checkpoint.
    Returns what it printed."""
    tee = _Tee(sys.stdout)
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(tee):
        mp.setenv(ds.env, str(root))
        if die_at is None:
            assert main([config, *argv]) == 0
        else:
            die_after_checkpoint(mp, step=die_at)
            with pytest.raises(SystemExit, match="interrupted; the last checkpoint is .*checkpoint.pt; the same"):
                main([config, *argv])
    return tee.getvalue()


def train_twice(main, config, ds, root, argv, out) -> str:
    """The run killed right after its first checkpoint, then the same command again; returns
    what the second printed."""
    run_command(main, config, ds, root, argv, die_at=1)
    assert [r["step"] for r in map(json.loads, open(out / "metrics.jsonl"))] == [1]
    assert not (out / "checkpoint.prev.pt").exists() and (out / "checkpoint.pt").exists()
    return run_command(main, config, ds, root, argv)  # the same command resumes


def assert_resumed(out, printed, steps, config_name, dataset):
    """The rerun went on from the killed run's checkpoint (step 1) to ``steps``; its files are
    there and parse; returns the last checkpoint."""
    import torch

    assert f"resuming {out} at step 1/{steps}" in printed, printed[-2000:]
    rows = [json.loads(line) for line in open(out / "metrics.jsonl")]
    assert [r["step"] for r in rows] == list(range(1, steps + 1)), rows
    assert all(math.isfinite(loss) for loss in losses(out)), losses(out)
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True, map_location="cpu")
    prev = torch.load(out / "checkpoint.prev.pt", weights_only=True, map_location="cpu")
    assert (prev["step"], ckpt["step"]) == (1, steps)
    saved = OmegaConf.load(out / "config.yaml")
    assert (saved.data.dataset, saved.model.backbone, saved.data.batch_size) == (dataset, "r2plus1d_18", BATCH), \
        f"{config_name}: {saved.data.dataset}, {saved.model.backbone}, {saved.data.batch_size}"
    assert (out / "loss.png").stat().st_size > 0
    return ckpt


def remove_checkpoints(out):
    """An R(2+1)D-18 checkpoint with its optimizer state is 260 MB, and pytest keeps the last three
    sessions' folders: the runs' checkpoints go once their tests are done."""
    for path in Path(out).glob("*.pt"):
        path.unlink()


@pytest.fixture(scope="module")
def pretrained(downloads, tmp_path_factory):
    """``get(name)``: (out_dir, what its resumed run printed) of pretraining with
    pipelines/NAME.yaml, killed after step 1 and resumed; each made once, when first asked for."""
    runs = {}

    def get(name):
        if name not in runs:
            root, ds = downloads[name]
            out = tmp_path_factory.mktemp(f"pretrain-{name}")
            argv = [*PRETRAIN_SIZE, f"out_dir={out}"]
            runs[name] = out, train_twice(train_main, f"pipelines/{name}.yaml", ds, root, argv, out)
        return runs[name]

    yield get
    for out, _ in runs.values():
        remove_checkpoints(out)


@pytest.fixture
def out_dir(tmp_path):
    yield tmp_path / "run"
    remove_checkpoints(tmp_path / "run")


@pytest.mark.parametrize("name", ["kinetics", "ucf101", "hmdb51", "ssv2"])
def test_pretraining_config_trains_resumes_and_evaluates(name, downloads, pretrained):
    out, printed = pretrained(name)
    root, ds = downloads[name]
    train_videos = len(next(iter(ds.manifests.values())))
    assert_resumed(out, printed, train_videos // BATCH, name, ds.dataset)
    if name == "kinetics":  # evaluated on UCF101 / HMDB51 instead: train.evaluate is false
        assert not (out / "eval.json").exists()
        return
    result = json.loads((out / "eval.json").read_text())
    assert set(result) == {"pretrained", "random_init"} and all(set(r) == METRICS for r in result.values()), result
    assert all(0 <= v <= 100 for r in result.values() for v in r.values()), result


# The evaluations the configs' headers and docs/datasets.md show: a Kinetics-pretrained encoder
# scored on UCF101 and HMDB51; Something-Something v2's own.
EVALUATIONS = [("ucf101", "kinetics"), ("hmdb51", "kinetics"), ("ssv2", "ssv2")]


@pytest.mark.parametrize("name,pretrained_on", EVALUATIONS, ids=[f"{n}-from-{p}" for n, p in EVALUATIONS])
def test_evaluate_command_scores_a_pretraining_checkpoint(name, pretrained_on, downloads, pretrained, out_dir):
    checkpoint = pretrained(pretrained_on)[0] / "checkpoint.pt"
    root, ds = downloads[name]
    out = out_dir
    printed = run_command(evaluate_main, f"pipelines/{name}.yaml", ds, root,
                          [*PRETRAIN_SIZE, f"checkpoint={checkpoint}", f"out_dir={out}"])
    result = json.loads((out / "eval.json").read_text())
    assert set(result) == METRICS and all(0 <= v <= 100 for v in result.values()), result
    test_videos = len(list(ds.manifests.values())[1])
    assert f"{test_videos} videos, {len(ds.classes)} classes" in printed, printed


# The fine-tuning configs, each from a pretraining checkpoint whose model its header says it matches.
FINETUNING = [("ucf101", "kinetics"), ("hmdb51", "hmdb51")]


@pytest.mark.parametrize("name,pretrained_on", FINETUNING, ids=[f"{n}-from-{p}" for n, p in FINETUNING])
def test_finetuning_config_trains_resumes_and_tests(name, pretrained_on, downloads, pretrained, out_dir):
    checkpoint = pretrained(pretrained_on)[0] / "checkpoint.pt"
    root, ds = downloads[name]
    out = out_dir
    argv = [*FINETUNE_SIZE, f"checkpoint={checkpoint}", f"out_dir={out}"]
    printed = train_twice(finetune_main, f"pipelines/{name}_finetune.yaml", ds, root, argv, out)
    train, test = ds.manifests.values()
    steps = len(train) // BATCH
    ckpt = assert_resumed(out, printed, steps, f"{name}_finetune", ds.dataset)
    assert ckpt["config"]["checkpoint"] == str(checkpoint)
    assert all("train_top1" in r for r in map(json.loads, open(out / "metrics.jsonl")))
    result = json.loads((out / "finetune.json").read_text())
    assert list(result["per_class"]) == ds.classes, result["per_class"]
    assert (result["protocol"]["videos"], result["protocol"]["views_per_video"], result["steps"]) == \
        (len(test), 2 * 3, steps), result["protocol"]
    assert 0 <= result["top1"] <= result["top5"] <= 100 and 0 <= result["mean_class_accuracy"] <= 100, result
    assert (out / "confusion.png").stat().st_size > 0
