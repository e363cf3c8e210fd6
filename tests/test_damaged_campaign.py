"""A damaged-input campaign (issue #18): 50+ damaged variants of generated videos, frame archives
and a real clip, indexed beside good videos, then read for an epoch and trained on.

What must hold: every file ends in exactly one of the manifest and the rejects; every video of the
manifest is either served or skipped with a logged reason, so nothing is lost; the good videos'
frames are what PyAV decodes; training finishes. Indexing runs in a subprocess with a deadline,
so a file that hangs a decoder fails the test instead of hanging it. The counts are printed (run
with ``-s``) and quoted in docs/reliability.md.
"""
import csv
import json
import os
import subprocess
import sys
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from timeclr.pipelines.loader.clip_source import read_videos
from timeclr.pipelines.loader.video import VideoLoader
from timeclr.train import main as train_main
from tests.helpers.videos import decode_all, make_archive, make_audio_only, make_video
from tests.test_video_pipeline import data_config

W, H, N = 64, 48, 24
REPO = Path(__file__).resolve().parent.parent
REAL = REPO.parent / "shared" / "data" / "real-clips" / "ucf101_apply_eye_makeup.avi"
TRUNCATE = (0.005, 0.02, 0.05, 0.1, 0.2, 0.3, 0.45, 0.6, 0.75, 0.9, 0.97, 0.995)


def flipped(data: bytes, at: int, n: int) -> bytes:
    b = bytearray(data)
    b[at:at + n] = bytes(x ^ 0xFF for x in b[at:at + n])
    return bytes(b)


def zeroed(data: bytes, at: int, n: int) -> bytes:
    return data[:at] + bytes(min(n, len(data) - at)) + data[at + n:]


def variants(base: bytes, suffix: str) -> dict:
    """{name: (bytes, suffix)}: truncations, byte flips and zeroed ranges of one file."""
    n = len(base)
    out = {f"cut{f:g}": (base[:int(n * f)], suffix) for f in TRUNCATE}
    for where, at in (("header", 24), ("middle", n // 2), ("end", n - 80)):
        out[f"flip1-{where}"] = (flipped(base, at, 1), suffix)
        out[f"flip64-{where}"] = (flipped(base, at, 64), suffix)
        out[f"zero512-{where}"] = (zeroed(base, at, 512), suffix)
    return out


def _text(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _named(path: Path, make, real_suffix: str) -> Path:
    """What ``make`` writes for a file of ``real_suffix``, under ``path``'s (wrong) name."""
    tmp = path.with_name(f"tmp{real_suffix}")
    make(tmp)
    os.replace(tmp, path)
    return path


def odd_files(folder: Path, kind: str) -> dict:
    """{name: path} of files damaged in ways other than bytes: names, containers, sizes, rates."""
    video, archive = (lambda p: make_video(p, N, W, H)), (lambda p: make_archive(p, N, W, H))
    if kind == "archives":
        files = [_text(folder / "empty.tar", ""), _text(folder / "text-as.tar", "this is not an archive\n" * 50),
                 _named(folder / "video-as.tar", video, ".webm"), *_absurd_archives(folder)]
    else:
        files = [_text(folder / "empty.webm", ""), _text(folder / "text-as.webm", "this is not a video\n" * 50),
                 _named(folder / "archive-as.webm", archive, ".tar"),
                 _named(folder / "vp9-as.mp4", video, ".webm"),  # a misleading name: the content decides
                 Path(make_video(folder / "h264.mp4", N, W, H, codec="libx264")),  # no CPU decoder in DALI
                 Path(make_audio_only(folder / "audio-only.mp4")),
                 Path(make_video(folder / "one-frame.webm", 1, W, H)),
                 Path(make_video(folder / "fps1000.webm", N, W, H, fps=1000)),
                 Path(make_video(folder / "tiny-2x2.webm", N, 2, 2))]
    return {p.name: p for p in files}


def _absurd_archives(folder) -> list:
    """Archives whose info.json claims absurd dimensions or frame rate."""
    out = []
    for name, patch in (("absurd-size.tar", {"width": 100000, "height": 100000}), ("absurd-fps.tar", {"fps": "0/1"})):
        path = folder / name
        make_archive(path, N, W, H)
        data = path.read_bytes()
        start = data.rfind(b'{"format"')
        end = data.index(b"}", data.index(b'"crc32"', start)) + 1
        info = json.loads(data[start:end])
        text = json.dumps({**info, **patch}).encode()
        text = text[:end - start].ljust(end - start)  # the same length: the tar stays consistent
        path.write_bytes(data[:start] + text + data[end:])
        out.append(path)
    return out


def _inside_a_frame(path) -> int:
    """An offset inside the middle frame's JPEG (which the eval views read): the per-JPEG CRC-32
    finds it when that frame is read, and only then."""
    from timeclr.pipelines.storage.frame_archive import read_index

    index = read_index(path)
    k = len(index.sizes) // 2
    return int(index.offsets[k]) + int(index.sizes[k]) // 4


def index(tree, manifest):
    proc = subprocess.run([sys.executable, "-m", "timeclr.data", "index", str(tree), "-o", str(manifest),
                           "--device", "cpu", "--workers", "2", "--layout", "folder"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)  # a hang fails, never blocks
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    """Two trees, as one manifest holds one kind of storage: video files and frame archives,
    each with good and damaged members, indexed into their own manifests."""
    root = tmp_path_factory.mktemp("campaign")
    out = {"goods": [], "damaged": [], "sets": []}
    for kind in ("videos", "archives"):
        tree = root / kind
        good, bad = tree / "good", tree / "damaged"
        good.mkdir(parents=True)
        bad.mkdir()
        if kind == "videos":
            goods = [make_video(good / f"g{i}.webm", N, W, H, gop=8) for i in range(6)]
            bases = {"webm": Path(goods[0]).read_bytes()}
            if REAL.exists():  # a real UCF101 clip (MPEG-4 in AVI): DALI's CPU backend has no decoder for it
                bases["avi"] = REAL.read_bytes()
        else:
            goods = [make_archive(good / f"a{i}.tar", N, W, H) for i in range(6)]
            bases = {"tar": Path(goods[0]).read_bytes()}
        for suffix, base in bases.items():
            for name, (data, sfx) in variants(base, suffix).items():
                path = bad / f"{suffix}-{name}.{sfx}"
                path.write_bytes(data)
                out["damaged"].append(path.name)
        for name in odd_files(bad, kind):
            out["damaged"].append(name)
        # good when indexed, damaged afterwards: cut, and overwritten in place (the same size)
        late = {}
        for name in ("late-cut", "late-flip", "late-zero"):
            path = bad / f"{name}{Path(goods[1]).suffix}"
            path.write_bytes(Path(goods[1]).read_bytes())
            late[path] = name
            out["damaged"].append(path.name)
        manifest = root / f"{kind}.csv"
        index(tree, manifest)
        for path, name in late.items():
            data = path.read_bytes()
            middle = len(data) // 2 if kind == "videos" else _inside_a_frame(path)
            path.write_bytes({"late-cut": data[:len(data) // 2], "late-flip": flipped(data, middle, 64),
                              "late-zero": zeroed(data, middle, 256)}[name])
        out["goods"] += [str(Path(g).resolve()) for g in goods]
        out["sets"].append((tree, manifest))
    return out


def test_every_damaged_file_ends_in_exactly_one_place_and_none_is_lost(campaign):
    counts = dict(tried=len(campaign["damaged"]), rejected=0, accepted=0, skipped=0, served=0)
    assert counts["tried"] >= 50, counts
    all_skipped = {}
    reasons = Counter()
    for tree, manifest in campaign["sets"]:
        accepted = {r["path"] for r in csv.DictReader(open(manifest))}
        rejected = {r["path"]: r["reason"] for r in csv.DictReader(open(str(manifest).replace(".csv", ".rejects.csv")))}
        files = {p.relative_to(tree).as_posix() for p in tree.rglob("*") if p.is_file()}
        assert not accepted & set(rejected), accepted & set(rejected)
        assert accepted | set(rejected) == files, sorted(files - accepted - set(rejected))
        assert all(reason.strip() for reason in rejected.values())
        goods = {g for g in campaign["goods"] if g.startswith(str(tree.resolve()))}
        assert {Path(g).relative_to(tree.resolve()).as_posix() for g in goods} <= accepted, "a good video rejected"

        # one epoch over the manifest: every video served or skipped with a reason, good frames unchanged
        videos = read_videos(manifest)
        data = data_config("data.augment=false", f"data.short_side={H}", f"data.views.0.crop_size={H}",
                           f"data.views.1.crop_size={H}", "data.batch_size=4", "data.train=false")
        loader = VideoLoader(data, videos, uint8=True)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            batches = list(iter(loader))
        served = {videos[i].path for b in batches for i in b["index"].tolist()}
        skipped = dict(loader.skipped)
        assert served | set(skipped) == {v.path for v in videos}, "a video of the manifest was neither served nor skipped"
        assert not served & set(skipped)
        assert all(any(p in str(w.message) for w in caught) for p in skipped), "every skip is logged by name"
        assert goods <= served, "a good video was skipped"
        for b in batches:
            for k, index_ in enumerate(b["index"].tolist()):
                if videos[index_].path not in goods:
                    continue
                reference = decode_all(videos[index_].path)
                for view, frames in zip(b["views"], b["frame_indices"]):
                    want = reference[frames[k].numpy()][:, :, (W - H) // 2:(W - H) // 2 + H]
                    diff = np.abs(view[k].numpy().astype(int) - want.astype(int))
                    assert diff.mean() < 1.5, (videos[index_].path, diff.mean())
        reasons.update(r.split(":")[0].split(" (")[0] for r in rejected.values())
        counts["rejected"] += len(rejected)
        counts["accepted"] += len(accepted) - len(goods)
        counts["skipped"] += len(skipped)
        counts["served"] += len(served) - len(goods)
        all_skipped.update(skipped)
    assert counts["rejected"] + counts["accepted"] == counts["tried"], counts
    assert counts["skipped"] + counts["served"] == counts["accepted"], counts
    print(f"\ndamaged-input campaign: {counts['tried']} damaged files tried beside {len(campaign['goods'])} good ones; "
          f"rejected at indexing {counts['rejected']}; accepted {counts['accepted']}, of which skipped at read time "
          f"{counts['skipped']} and served {counts['served']} (decodable as they are); lost 0")
    print("  rejected, by reason: " + "; ".join(f"{r} {n}" for r, n in reasons.most_common()))
    for path, reason in sorted(all_skipped.items()):
        print(f"  skipped {Path(path).name}: {reason}")


@pytest.mark.parametrize("which", [0, 1])
def test_training_one_epoch_on_a_damaged_manifest_finishes(campaign, tmp_path, which):
    out = tmp_path / "run"
    train_main(["pipelines/debug.yaml", f"data.manifest={campaign['sets'][which][1]}", f"out_dir={out}",
                "data.batch_size=4", "data.drop_last=true", "data.views.0.crop_size=32", "data.views.1.crop_size=32",
                "data.short_side=32", "model.proj_hidden=64", "model.proj_dim=32", "train.epochs=1",
                "train.evaluate=false"])
    assert (out / "checkpoint.pt").exists()
