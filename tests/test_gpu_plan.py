"""The GPU plan fits the device limits, and its staging calls reassemble what they carried.

Nothing here needs a GPU: the plan is arithmetic over file sizes, and the staging sections
(copy what a call carried, check every part arrived, unpack) run on any machine."""
import hashlib
import io
import lzma
import os
import shutil
import subprocess
import sys
import tarfile

import pytest

from timeclr.benchmarks import gpu_plan

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

MIB = 1 << 20


def fake_prepared(root, parts_mib, wheels_mib=34.5):
    """What --prepare leaves, as sparse files of the given sizes."""
    os.makedirs(root / ".dali")
    for k, size in enumerate(parts_mib):
        with open(root / ".dali" / f"part-{k:02d}", "wb") as f:
            f.truncate(int(size * MIB))
    (root / ".dali" / "SHA256SUMS").write_text("x\n")
    (root / ".dali" / "unpack_dali.sh").write_text("#!/bin/sh\n")
    os.makedirs(root / ".wheels")
    with open(root / ".wheels" / "av.whl", "wb") as f:
        f.truncate(int(wheels_mib * MIB))
    os.makedirs(root / ".gpu-clips")
    (root / ".gpu-clips" / "reference.npz").write_bytes(b"0" * 1000)


def test_the_prepared_plan_fits_and_runs_in_order(tmp_path):
    fake_prepared(tmp_path, [56, 56, 56, 56, 5.7])
    calls = gpu_plan.plan(str(tmp_path), tree=2 * MIB)
    assert gpu_plan.problems(calls) == [], [vars(c) for c in calls]
    names = [c.name for c in calls]
    assert names[0] == "probe + loss" and calls[0].carry == [], "the first call needs neither DALI nor wheels"
    assert names[-1] == "data + train" and calls[-1].carry == []
    stages = calls[1:-1]
    assert [c.command for c in stages[:-1]] == ["bash benchmarks/gpu_check.sh stage"] * 4
    assert stages[-1].command.endswith("stage unpack decode"), "unpack and the decode probe come right after the last part"
    carried = [p for c in stages for p in c.carry]
    assert sorted(p for p in carried if "part-" in p) == [f".dali/part-{k:02d}" for k in range(5)]
    assert carried.count(".wheels") == 1 and carried.count(".gpu-clips") == 1
    assert max(c.bytes for c in calls) <= 62 * MIB
    assert sum(c.limit_s for c in calls) <= 11 * 60


def test_a_plan_that_does_not_fit_says_which_call_and_limit(tmp_path):
    fake_prepared(tmp_path, [48, 48, 48, 48, 37.7])  # pack_dali's own parts: the wheels need a sixth call
    calls = gpu_plan.plan(str(tmp_path), tree=2 * MIB)
    assert any(".wheels" in c.carry and not any("part-" in p for p in c.carry) for c in calls), [c.carry for c in calls]
    assert gpu_plan.problems(calls) == [f"the calls' limits add up to {sum(c.limit_s for c in calls)} s > 660 s"]
    big = tmp_path / "big"
    fake_prepared(big, [70])
    bad = gpu_plan.problems(gpu_plan.plan(str(big), tree=2 * MIB))
    assert any("carries 72.0 MiB > 62 MiB" in line for line in bad), bad


def test_an_unprepared_checkout_is_told_to_prepare(tmp_path):
    with pytest.raises(gpu_plan.PlanError, match="--prepare"):
        gpu_plan.plan(str(tmp_path), tree=0)
    r = subprocess.run(["bash", os.path.join(REPO, "benchmarks", "gpu_check.sh"), "nonsense"], capture_output=True,
                       text=True, env={**os.environ, "OUT": str(tmp_path)})
    assert r.returncode == 2 and "unknown section nonsense" in r.stdout, r.stdout + r.stderr


def test_the_working_tree_that_travels_with_every_call_stays_small():
    tree = gpu_plan.tree_bytes(REPO)
    assert tree < 4 * MIB, f"{tree / MIB:.1f} MiB of tracked/untracked files travel with each GPU call"


def _xz_tar(files: dict) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return lzma.compress(buf.getvalue())


def test_staging_calls_reassemble_the_parts_and_refuse_a_missing_one(tmp_path):
    """Three 'calls' each carry one part into a fresh checkout; the last unpacks. With a part
    missing (the machine was given back between calls), unpack names what is missing."""
    blob = _xz_tar({"nvidia/dali/__init__.py": b"__version__ = 'fake'\n", "omegaconf/__init__.py": b""})
    parts = [blob[i:i + len(blob) // 3 + 1] for i in range(0, len(blob), len(blob) // 3 + 1)]
    sums = "".join(f"{hashlib.sha256(p).hexdigest()}  part-{k:02d}\n" for k, p in enumerate(parts))
    unpack = "#!/bin/sh\nset -e\ncd \"$1\" && sha256sum -c --quiet SHA256SUMS && cat part-* | xz -d | tar -C \"$2\" -xf -\n"
    if not shutil.which("xz"):
        pytest.skip("no xz here")
    env = {**os.environ, "GPU_STAGE": str(tmp_path / "stage"), "GPU_DALI": str(tmp_path / "dali"),
           "GPU_SITE": str(tmp_path / "site"), "OUT": str(tmp_path / "out")}
    os.makedirs(tmp_path / "dali")

    def call(k, sections, with_part=True):
        checkout = tmp_path / f"call{k}"
        os.makedirs(checkout / "benchmarks")
        shutil.copy(os.path.join(REPO, "benchmarks", "gpu_check.sh"), checkout / "benchmarks")
        os.makedirs(checkout / ".dali")
        (checkout / ".dali" / "SHA256SUMS").write_text(sums)
        if with_part:
            (checkout / ".dali" / f"part-{k:02d}").write_bytes(parts[k])
        if "unpack" in sections:
            (checkout / ".dali" / "unpack_dali.sh").write_text(unpack)
        return subprocess.run(["bash", str(checkout / "benchmarks" / "gpu_check.sh"), *sections], capture_output=True,
                              text=True, env=env)

    assert call(0, ["stage"]).returncode == 0
    r = call(2, ["stage", "unpack"])  # part 1 never arrived
    assert r.returncode != 0 and "only 2 of 3 DALI parts staged" in r.stdout, r.stdout + r.stderr
    assert call(1, ["stage"]).returncode == 0
    r = call(3, ["stage", "unpack"], with_part=False)
    assert "staged so far: part-00 part-01 part-02" in r.stdout, r.stdout
    assert (tmp_path / "dali" / "nvidia" / "dali" / "__init__.py").exists(), r.stdout + r.stderr
    assert os.path.exists(tmp_path / "out" / "gpu-stage-unpack.tar.gz")


def test_the_decode_probe_runs_on_the_cpu_backend(tmp_path):
    """The probe the last staging call runs, in its CPU mode: clips written, decoded by DALI's CPU
    backend where it can (VP9, MJPEG) in the order asked and within 2 levels of PyAV, refused
    where it cannot (H.264, AV1), and its JSON written."""
    import json

    pytest.importorskip("nvidia.dali")
    probe = [sys.executable, os.path.join(REPO, "benchmarks", "gpu_decode_probe.py")]
    subprocess.run([*probe, "make", str(tmp_path / "clips")], check=True, capture_output=True)
    r = subprocess.run([*probe, "check", str(tmp_path / "clips"), "--device", "cpu", "--out", str(tmp_path)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    rows = {row["clip"]: row for row in json.load(open(tmp_path / "decode_probe_cpu.json"))["clips"]}
    for clip in ("vp9.webm", "mjpeg.avi"):
        assert rows[clip]["decoded"] and rows[clip]["in_order"] and rows[clip]["max_abs_diff"] <= 2, rows[clip]
    assert not rows["h264.mp4"]["decoded"] and rows["h264.mp4"]["error"], rows["h264.mp4"]
