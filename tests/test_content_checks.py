"""Content checks (issue #18): the manifest records each file's CRC-32 and the source checks it
on every read, so bytes overwritten in place (the same size) are a skipped, named video, never
frames decoded from damaged data; frame archives check each JPEG they read."""
import csv
import warnings
import zlib

import numpy as np
import pytest

from timeclr.data import main as data_main
from timeclr.pipelines.loader.clip_source import read_videos
from timeclr.pipelines.loader.video import VideoLoader
from tests.helpers.videos import decode_all, make_archive, make_video
from tests.test_video_pipeline import data_config

W, H = 64, 48


def overwrite(path, at, n=200):
    data = bytearray(open(path, "rb").read())
    data[at:at + n] = bytes((b + 1) % 256 for b in data[at:at + n])  # changed, same size
    open(path, "wb").write(bytes(data))


@pytest.mark.parametrize("kind", ["vp9", "archive"])
def test_a_file_overwritten_after_indexing_is_skipped_by_name_and_the_others_decode_unchanged(tmp_path, kind):
    tree = tmp_path / "tree" / "c"
    tree.mkdir(parents=True)
    for i in range(6):
        if kind == "vp9":
            make_video(tree / f"v{i}.webm", 24, W, H, gop=12)
        else:
            make_archive(tree / f"v{i}.tar", 24, W, H)
    manifest = tmp_path / "m.csv"
    assert data_main(["index", str(tmp_path / "tree"), "-o", str(manifest), "--device", "cpu", "--workers", "1"]) == 0
    rows = list(csv.DictReader(open(manifest)))
    for r in rows:  # the column is the file's CRC-32, readable with the csv module
        assert int(r["crc32"]) == zlib.crc32(open(tree / r["path"].split("/")[-1], "rb").read()), r
    videos = read_videos(manifest)
    bad = videos[2].path
    size = len(open(bad, "rb").read())
    data = data_config("data.augment=false", f"data.short_side={H}", f"data.views.0.crop_size={H}",
                       f"data.views.1.crop_size={H}", "data.batch_size=2", "data.train=false")
    loader = VideoLoader(data, videos, uint8=True)
    # the middle of a VP9 file; in an archive, the inside of the first JPEG the views read (a tar
    # header hit instead is found when the member table is read: 'not a frame archive')
    if kind == "archive":
        from timeclr.pipelines.storage.frame_archive import read_index

        f = int(loader.source.frames(2, 0)[0])
        index = read_index(bad)
        overwrite(bad, int(index.offsets[f]) + int(index.sizes[f]) // 3, n=min(200, int(index.sizes[f]) // 3))
    else:
        overwrite(bad, size // 2)
    assert len(open(bad, "rb").read()) == size, "same size: the size check alone would not see it"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        batches = list(iter(loader))
    assert [p for p, _ in loader.skipped] == [bad], loader.skipped
    reason = loader.skipped[0][1]
    assert ("CRC-32" in reason), reason
    assert any(bad in str(w.message) for w in caught), "the skip is logged with the file's name"
    served = [i for b in batches for i in b["index"].tolist()]
    assert 2 not in served and sorted(set(served)) == [0, 1, 3, 4, 5], served
    for b in batches:  # the good videos' frames are what PyAV decodes (archives: JPEG tolerance)
        for k, index in enumerate(b["index"].tolist()):
            reference = decode_all(videos[index].path)
            for view, frames in zip(b["views"], b["frame_indices"]):
                want = reference[frames[k].numpy()][:, :, (W - H) // 2:(W - H) // 2 + H]
                diff = np.abs(view[k].numpy().astype(int) - want.astype(int))
                assert diff.mean() < 1.5, (index, diff.mean())
