"""Reading WebDataset shards (``pipelines/storage/shards.py``) as one stream of samples per rank.

Which rank reads what, in epoch e of a job of W ranks::

    order   = permutation of the shards drawn from (seed, e)
    global  = the samples of the shards in that order, each shard's in its file order: N in all
    rank r  = global[floor(r N / W) : floor((r + 1) N / W)]     contiguous, sizes differ by <= 1

so every sample is read by exactly one rank per epoch, and each rank opens only the shards its
range overlaps (about N / W samples of reading, plus the part of a shard it shares with a
neighbour, which it skips through). Within its range a rank shuffles with a buffer: it fills
``buffer`` samples, then repeatedly emits one drawn uniformly from the buffer (rng from
(seed, e, r)) and refills its place, then drains the buffer in random order. A buffer of the
shard's size would be a full shuffle; the writer already shuffled the videos across shards, so a
small buffer (64) only has to break the order within a shard.

Resume: the stream is a function of (seed, epoch, rank, world), so a reader's position is
(epoch, samples emitted); ``samples(epoch, skip=k)`` regenerates the same stream and drops its first
k samples (a local shard is skipped through by seeking past member data, a remote one is read).

Where shards live: a local folder, or a URL prefix. ``open_url`` opens a path or a ``file://`` URL
with ``open``, ``http(s)://`` with the standard library's ``urllib`` (a streaming GET), and the
object stores ``s3://``, ``gs://``, ``gcs://``, ``az://``, ``abfs://`` through ``fsspec`` when it and
the scheme's backend are installed. Those are ``SCHEMES``; any other scheme is refused.

A shard set may come from elsewhere, so it is data: a shard's name in ``shards.json`` must be a plain
file name (``shards.check_shard_name``), and every member of a shard must be named
``<digits>.<ext>`` with no folder part. Shards are read as a stream, never extracted.
"""
import json
import re
import tarfile
import urllib.parse
import urllib.request
from dataclasses import dataclass

import numpy as np

from timeclr.errors import ManifestError
from timeclr.pipelines.storage.shards import FORMAT, INDEX_NAME, check_shard_name


READ_SIZE = 1 << 16
# What open_url reads: "" is a local path. The object stores go through fsspec; a scheme fsspec
# also knows but that is no store of shards (memory://, data:, ...) is refused rather than guessed at.
SCHEMES = ("", "file", "http", "https", "s3", "gs", "gcs", "az", "abfs")
_MEMBER = re.compile(r"(\d+)\.([^/\\]+)")  # a shard member's name: <sample number>.<ext>


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow an HTTP redirect only to http(s): urllib would also follow one to ftp://, and a shard
    server is no reason to read from anywhere the scheme list does not name."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if urllib.parse.urlparse(newurl).scheme not in ("http", "https"):
            raise ManifestError(f"{req.full_url}: redirected to {newurl}; shards over HTTP are read from http(s) only")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_HTTP = urllib.request.build_opener(_HttpOnlyRedirects)


def open_url(url: str):
    """A binary file object reading ``url`` from its start (see the module docstring). Raises
    ManifestError for a scheme not in ``SCHEMES``."""
    scheme = urllib.parse.urlparse(url).scheme
    if scheme not in SCHEMES:
        accepted = ", ".join(f"{s}://" for s in SCHEMES if s)
        raise ManifestError(f"{url}: cannot read {scheme}: URLs; shards are read from a local path or {accepted}")
    if scheme in ("", "file"):
        return open(urllib.parse.urlparse(url).path if scheme else url, "rb")
    if scheme in ("http", "https"):
        return _HTTP.open(url, timeout=60)
    try:
        import fsspec
    except ImportError:
        raise ManifestError(f"{url}: reading {scheme}:// needs fsspec (pip install fsspec and its {scheme} "
                            "backend, e.g. s3fs)") from None
    return fsspec.open(url, "rb").open()


def join(base: str, name: str) -> str:
    return f"{base.rstrip('/')}/{name}"


def load_index(base: str) -> dict:
    """``shards.json`` of the shard set at ``base`` (a folder or URL prefix). Raises ManifestError
    when it cannot be read, is not a shard index, or names a shard that is not a plain file name."""
    url = join(base, INDEX_NAME)
    try:
        with open_url(url) as f:
            index = json.loads(f.read())
    except (OSError, ValueError) as e:
        raise ManifestError(f"{url}: cannot read the shard index ({e}); write one with "
                            "python -m timeclr.data shard MANIFEST OUT_DIR") from None
    if index.get("format") != FORMAT:
        raise ManifestError(f"{url}: not a shard index (format {index.get('format')!r})")
    for shard in index.get("shards", []):
        check_shard_name(shard.get("name"), url)
    return index


@dataclass
class Sample:
    """One video read from a shard: its key (the sample number), bytes and JSON record."""

    key: int
    data: bytes
    record: dict
    shard: str


def read_shard(url: str, first: int = 0, count: int | None = None):
    """Samples ``first`` to ``first + count`` (all from ``first`` when None) of one shard, in file
    order; the ones before ``first`` are skipped without keeping their bytes. Raises ManifestError
    naming the shard and the member for a member not named ``<digits>.<ext>``."""
    taken, seen = 0, -1
    # 64 KiB reads, not tarfile's 10 KiB records: 15-30% more MB/s locally and over HTTP
    # (benchmarks/shard_reading.py's one-reader rates)
    with open_url(url) as f, tarfile.open(fileobj=f, mode="r|", bufsize=READ_SIZE) as tar:
        pending = {}  # key -> {ext: bytes} until the sample's two members are in
        for member in tar:
            # The name is the sample's key: nothing else (a folder part, a '..') belongs in it.
            named = _MEMBER.fullmatch(member.name)
            if named is None:
                raise ManifestError(f"{url}: member {member.name!r} is not named <digits>.<ext>; a shard "
                                    "holds only its samples' files, with no folder part")
            key, ext = named.groups()
            if key not in pending:
                seen += 1
                pending = {key: {}}
            if seen < first:
                continue  # tarfile's stream mode skips the data of a member not extracted
            pending[key][ext] = tar.extractfile(member).read()
            parts = pending[key]
            if "json" in parts and len(parts) == 2:
                (video_ext,) = [e for e in parts if e != "json"]
                yield Sample(int(key), parts[video_ext], json.loads(parts["json"]), url)
                taken += 1
                if count is not None and taken >= count:
                    return


class ShardStream:
    """The samples rank ``rank`` of ``world`` reads from the shard set at ``base``, epoch by epoch."""

    def __init__(self, base: str, rank: int = 0, world: int = 1, seed: int = 0, buffer: int = 64):
        self.base, self.rank, self.world, self.seed, self.buffer = base, rank, world, seed, buffer
        self.index = load_index(base)
        self.shards = self.index["shards"]
        self.total = sum(s["samples"] for s in self.shards)
        if self.total < world:
            raise ManifestError(f"{base}: {self.total} samples cannot feed {world} ranks")

    def range(self) -> tuple[int, int]:
        """[start, stop) of this rank in the epoch's global order."""
        return self.rank * self.total // self.world, (self.rank + 1) * self.total // self.world

    def __len__(self):
        start, stop = self.range()
        return stop - start

    def _in_order(self, epoch: int):
        """This rank's samples of ``epoch`` before shuffling: its range of the global order."""
        start, stop = self.range()
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.shards))
        at = 0  # global position of the current shard's first sample
        for k in order.tolist():
            shard = self.shards[k]
            lo, hi = max(start, at), min(stop, at + shard["samples"])
            if lo < hi:
                yield from read_shard(join(self.base, shard["name"]), lo - at, hi - lo)
            at += shard["samples"]
            if at >= stop:
                return

    def samples(self, epoch: int, skip: int = 0):
        """This rank's samples of ``epoch``, shuffled with the buffer; the first ``skip`` dropped."""
        if self.buffer <= 1:  # no shuffling (eval): the range in order
            for k, sample in enumerate(self._in_order(epoch)):
                if k >= skip:
                    yield sample
            return
        rng = np.random.default_rng([self.seed, epoch, self.rank, 7])
        held, emitted = [], 0
        for sample in self._in_order(epoch):
            if len(held) < self.buffer:
                held.append(sample)
                continue
            k = int(rng.integers(len(held)))
            out, held[k] = held[k], sample
            if emitted >= skip:
                yield out
            emitted += 1
        for k in rng.permutation(len(held)).tolist():
            if emitted >= skip:
                yield held[k]
            emitted += 1
