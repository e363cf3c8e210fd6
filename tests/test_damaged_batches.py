"""A damaged video's place in a batch goes to a video not already in that batch (issue #18):
NT-Xent would take a second copy of a video as a negative of the first."""
import numpy as np
import pytest

from timeclr.pipelines.loader.clip_source import ClipSource, Video

VIEWS = [{"kind": "segment", "frames": 4, "crop_size": 32}]


def batches(source, epoch):
    """The manifest indices of every batch of ``epoch`` (padding left out)."""
    out = []
    for b in range(source.batches):
        rows = [source.index_at(epoch * source.epoch_len + b * source.batch_size + k) for k in range(source.batch_size)]
        out.append([index for _, index, padding in rows if not padding])
    return out


@pytest.mark.parametrize("world", [1, 2])
def test_replacements_never_repeat_a_video_of_the_same_batch(world):
    videos = [Video(f"v{i}.webm", i % 4, 32, 64, 64) for i in range(40)]
    B = 8
    for epoch in range(3):
        sources = [ClipSource(videos, VIEWS, True, 0, B, rank, world, drop_last=True) for rank in range(world)]
        # damage most of the first batch of rank 0 and a few more: several replacements in one batch
        first = sources[0].order(epoch)
        bad = {int(i): "damaged" for i in list(first[[0, 1, 2, 5, 6]]) + list(first[-3:])}
        per_rank = []
        for src in sources:
            src.skip = dict(bad)
            got = batches(src, epoch)
            for k, batch in enumerate(got):
                assert len(batch) == B, f"rank {src.shard_id} batch {k} not full: {batch}"
                assert len(set(batch)) == B, f"rank {src.shard_id} batch {k} repeats a video: {batch}"
                assert not set(batch) & set(bad), f"a damaged video was served: {batch}"
            # the same answer from a fresh source with the same skip list: a resumed run finds the same
            again = ClipSource(videos, VIEWS, True, 0, B, src.shard_id, world, drop_last=True, skip=dict(bad))
            assert batches(again, epoch) == got
            per_rank.append(len(got))
        assert len(set(per_rank)) == 1, f"ranks have different batch counts: {per_rank}"


def test_a_shard_smaller_than_a_batch_of_usable_videos_repeats_rather_than_failing():
    videos = [Video(f"v{i}.webm", 0, 32, 64, 64) for i in range(8)]
    src = ClipSource(videos, VIEWS, True, 0, 8, drop_last=True, skip={0: "x", 1: "x", 2: "x"})
    (batch,) = batches(src, 0)
    assert len(batch) == 8 and set(batch) == set(range(3, 8)), batch  # full, only usable videos
    src.skip = {i: "x" for i in range(8)}
    src._members.clear()
    with pytest.raises(RuntimeError, match="every video of shard 0 is damaged"):
        src.index_at(0)


def test_skips_found_while_reading_draw_replacements_outside_the_batch(tmp_path):
    # the size check of _read marks videos bad as the batch is read, position by position
    videos = []
    for i in range(16):
        path = tmp_path / f"v{i}.webm"
        path.write_bytes(b"x" * 100)
        videos.append(Video(str(path), 0, 32, 64, 64, bytes=100))
    src = ClipSource(videos, VIEWS, True, 0, 8, drop_last=True, trim_gops=False)
    order = src.order(0)
    for i in order[[0, 3, 4]]:  # cut after indexing
        (tmp_path / f"v{int(i)}.webm").write_bytes(b"x" * 50)
    served = [src._read(p)[1] for p in range(8)]
    assert len(set(served)) == 8, served
    assert not set(served) & {int(i) for i in order[[0, 3, 4]]}
    assert sorted(src.skip) == sorted(int(i) for i in order[[0, 3, 4]])
    assert np.all([s in range(16) for s in served])
