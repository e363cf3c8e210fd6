"""Paths stay inside their roots: a manifest, a frame archive or a shard set may come from
elsewhere, so each is data, and no path in it may lead outside its root (issue #25, item 2).

Everything here is a tiny hand-made file in tmp_path (Python's ``tarfile`` and ``csv`` write them),
but for the one good frame archive that ``index_tree`` must still accept beside a bad one.
"""
import csv
import io
import json
import re
import tarfile

import pytest

from timeclr.errors import ManifestError, VideoError
from timeclr.pipelines.storage import frame_archive, shards
from timeclr.pipelines.ingest.index import index_tree
from timeclr.pipelines.storage.manifest import COLUMNS, read_manifest, sidecar_paths
from timeclr.pipelines.storage.shard_stream import SCHEMES, ShardStream, load_index, open_url, read_shard
from tests.helpers.videos import make_archive

# ----------------------------------------------------------------------------------------------
# Manifests


def write_rows(path, paths, old_format=False):
    """A manifest at ``path`` with one row per entry of ``paths`` (class c0, root ../videos) and its
    class list; rows start at line 2 (line 3 with ``old_format``'s ``# root:`` line)."""
    fields = [c for c in COLUMNS if not (old_format and c == "root")]
    with open(path, "w", newline="") as f:
        if old_format:
            f.write("# root: ../videos\n")
        writer = csv.DictWriter(f, fields, extrasaction="ignore")
        writer.writeheader()
        for p in paths:
            writer.writerow({"path": p, "label": 0, "class_name": "c0", "num_frames": 10, "fps": 25.0,
                             "duration": 0.4, "width": 80, "height": 48, "codec": "vp9", "vfr": 0,
                             "bytes": 100, "crc32": 1, "root": "../videos"})
    sidecar_paths(path)[0].write_text("c0\n")
    return path


BAD_ROW_PATHS = [  # (path, what the message says of it)
    ("/etc/passwd", "leaves the manifest's root (absolute)"),
    ("../../etc/passwd", "leaves the manifest's root (a '..' component)"),
    ("a/../../x.mp4", "leaves the manifest's root (a '..' component)"),
    ("..\\x.mp4", "leaves the manifest's root (a '..' component)"),
    ("\\\\server\\share\\x.mp4", "leaves the manifest's root (absolute)"),
    ("C:\\videos\\x.mp4", "leaves the manifest's root (absolute)"),
    ("", "is empty"),
]


@pytest.mark.parametrize("bad,what", BAD_ROW_PATHS)
def test_a_row_whose_path_leaves_its_root_is_refused_naming_file_line_and_path(tmp_path, bad, what):
    path = write_rows(tmp_path / "m.csv", ["c0/ok.mp4", bad])
    with pytest.raises(ManifestError) as e:
        read_manifest(path)
    assert str(e.value) == (f"{path} line 3: path {bad!r} {what}; a row's path is relative to its root, "
                            "inside it")


def test_an_old_format_manifest_counts_its_root_line(tmp_path):
    path = write_rows(tmp_path / "m.csv", ["c0/ok.mp4", "c0/ok2.mp4", "../x.mp4"], old_format=True)
    with pytest.warns(UserWarning, match="old-format"), pytest.raises(ManifestError, match=r"m\.csv line 5: "
                                                                                             r"path '\.\./x\.mp4'"):
        read_manifest(path)


def test_a_root_may_climb_out_of_the_manifests_folder_and_names_may_hold_dots(tmp_path):
    """Regression guard: ``root`` (``../videos``) is by design outside the manifest's folder, and
    '..' inside a name is no '..' component."""
    (tmp_path / "lists").mkdir()
    good = ["c0/ok.mp4", "c0/..hidden.mp4", "c0/a..b/x...mp4", "c0/./y.mp4"]
    rows, classes = read_manifest(write_rows(tmp_path / "lists" / "m.csv", good))
    assert [r["path"] for r in rows] == good and classes == ["c0"]
    assert rows[0]["abs_path"] == str(tmp_path / "videos" / "c0" / "ok.mp4")


# ----------------------------------------------------------------------------------------------
# Frame archives


def write_tar(path, members: dict):
    """A plain tar at ``path`` holding ``members`` ({name: bytes}) in order, names as given."""
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return path


def archive_with(path, member: str):
    """A one-frame archive (the frame's bytes need not be a JPEG: read_index reads no frame) that
    also holds ``member``."""
    info = {"format": frame_archive.FORMAT, "version": 1, "fps": "25", "num_frames": 1, "width": 8, "height": 8}
    return write_tar(path, {"000000.jpg": b"jpeg", member: b"x", "info.json": json.dumps(info).encode()})


BAD_MEMBERS = [("../evil.jpg", "a '..' component"), ("/etc/evil.jpg", "absolute"),
               ("frames/../../evil.txt", "a '..' component"), ("..\\evil.jpg", "a '..' component")]


@pytest.mark.parametrize("member,why", BAD_MEMBERS)
def test_an_archive_with_a_member_outside_it_is_unsafe(tmp_path, member, why):
    path = archive_with(tmp_path / "v.tar", member)
    with pytest.raises(VideoError) as e:
        frame_archive.read_index(path)
    assert e.value.reason == (f"unsafe: {path} holds member {member!r}, whose name leads outside the archive "
                              f"({why})")
    with pytest.raises(VideoError, match="^unsafe: "):  # from bytes too, as sharding reads it
        frame_archive.read_index(path, path.read_bytes())


def test_indexing_rejects_an_unsafe_archive_and_keeps_a_good_one(tmp_path):
    root = tmp_path / "videos"
    (root / "c0").mkdir(parents=True)
    make_archive(root / "c0" / "good.tar", 2, 16, 16)
    archive_with(root / "c0" / "bad.tar", "../evil.jpg")
    accepted, rejected = index_tree(root, tmp_path / "m.csv", device="cpu", workers=1, progress=False)
    assert (accepted, rejected) == (1, 1)
    rows, _ = read_manifest(tmp_path / "m.csv")
    assert [r["path"] for r in rows] == ["c0/good.tar"]
    with open(sidecar_paths(tmp_path / "m.csv")[1], newline="") as f:
        (reject,) = list(csv.DictReader(f))
    assert reject["path"] == "c0/bad.tar" and reject["reason"].startswith("unsafe: "), reject
    assert "'../evil.jpg'" in reject["reason"]


# ----------------------------------------------------------------------------------------------
# Shard sets


def shard_set(folder, members=None, name="shard-000000.tar"):
    """A one-shard set in ``folder``: shards.json naming the shard ``name``, and the shard
    ``shard-000000.tar`` holding ``members`` (default: one sample, 000000000.webm and .json)."""
    folder.mkdir(parents=True, exist_ok=True)
    members = members or {"000000000.webm": b"video", "000000000.json": b'{"path": "c0/v.webm"}'}
    shard = write_tar(folder / "shard-000000.tar", members)
    index = {"format": shards.FORMAT, "version": shards.VERSION, "classes": ["c0"], "storage": "video",
             "samples": 1, "failures": 0, "shards": [{"name": name, "samples": 1, "bytes": shard.stat().st_size}]}
    (folder / shards.INDEX_NAME).write_text(json.dumps(index))
    return shard


@pytest.mark.parametrize("name", ["../x.tar", "/abs/x.tar", "sub/x.tar", "..\\x.tar", "..", ""])
def test_a_shard_name_outside_the_shard_set_is_refused(tmp_path, name):
    shard_set(tmp_path / "set", name=name)
    index = tmp_path / "set" / shards.INDEX_NAME
    message = f"shard name {name!r} is not a plain file name; a shard lies beside its shards.json"
    with pytest.raises(ManifestError) as e:  # the local reader
        shards.read_index(tmp_path / "set")
    assert str(e.value) == f"{index}: {message}"
    with pytest.raises(ManifestError) as e:  # the stream reader
        load_index(str(tmp_path / "set"))
    assert str(e.value) == f"{index}: {message}"


@pytest.mark.parametrize("member", ["../0.json", "/0.json", "sub/000000000.json", "..\\0.json"])
def test_a_shard_member_with_a_folder_part_is_refused(tmp_path, member):
    shard = shard_set(tmp_path / "set", {"000000000.webm": b"video", member: b"{}"})
    with pytest.raises(ManifestError) as e:
        list(read_shard(str(shard)))
    assert str(e.value) == (f"{shard}: member {member!r} is not named <digits>.<ext>; a shard holds only its "
                            "samples' files, with no folder part")


@pytest.mark.parametrize("url", ["ftp://host/set", "memory://set", "data:text/plain,x", "javascript:alert(1)"])
def test_only_the_documented_schemes_are_read(url):
    with pytest.raises(ManifestError) as e:
        open_url(url)
    scheme = re.match(r"\w+", url).group()
    assert str(e.value) == (f"{url}: cannot read {scheme}: URLs; shards are read from a local path or file://, "
                            "http://, https://, s3://, gs://, gcs://, az://, abfs://")
    assert {"", "file", "http", "https", "s3", "gs", "gcs", "az", "abfs"} == set(SCHEMES)


@pytest.mark.parametrize("prefix", ["", "file://"])
def test_a_well_formed_shard_set_still_reads(tmp_path, prefix):
    """Regression guard: a plain path and a file:// URL read the set, its index and its sample."""
    shard_set(tmp_path / "set")
    base = prefix + str(tmp_path / "set")
    assert shards.read_index(tmp_path / "set")["shards"][0]["name"] == "shard-000000.tar"
    (sample,) = ShardStream(base, buffer=0).samples(0)
    assert (sample.key, sample.data, sample.record) == (0, b"video", {"path": "c0/v.webm"})
    assert sample.shard == f"{base}/shard-000000.tar"


def test_an_http_shard_server_cannot_redirect_the_reader_to_another_scheme():
    """urllib follows redirects to ftp:// too; a shard server's redirect is followed to http(s) only."""
    import http.server
    import threading

    class Redirect(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(302)
            self.send_header("Location", "ftp://127.0.0.1/shards.json" if "ftp" in self.path else "/data/shards.json")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        with pytest.raises(ManifestError, match=r"redirected to ftp://127\.0\.0\.1/shards\.json; .* http\(s\) only"):
            open_url(f"{base}/ftp/shards.json")
        with pytest.raises(Exception) as e:  # an http redirect is followed (here in a loop, which urllib ends)
            open_url(f"{base}/data/shards.json")
        assert not isinstance(e.value, ManifestError), e.value
    finally:
        server.shutdown()
        server.server_close()
