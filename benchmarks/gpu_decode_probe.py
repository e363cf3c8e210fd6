"""The first decode on a GPU: cheap answers to what DALI's mixed (NVDEC) decoder does with our files.

Before any long GPU run, a few seconds settle what the docs leave open (docs/gpu.md, "GPU notes"):
does the mixed decoder return the frames asked for, in the order asked, with B-frames in the
stream; how far are its pixels from FFmpeg's (PyAV) decode of the same frames; does it refuse
MJPEG and AV1 with an error rather than garbage.

  python benchmarks/gpu_decode_probe.py make DIR             on the CPU machine: clips + PyAV's decode
  python benchmarks/gpu_decode_probe.py check DIR --device gpu [--out OUT_DIR]

``make`` (needs PyAV) writes clips whose frames show their own index as stripes, 160x128 (above
NVDEC's minimum sizes), 60 frames, a keyframe every 12: H.264 without and with B-frames, VP9,
MJPEG and AV1 (when this PyAV can write it), a frame archive (JPEG per frame), and
``reference.npz``: PyAV's RGB decode of frames FRAMES of each (Pillow's, for the archive). ``check`` (needs DALI, not PyAV) decodes FRAMES of each clip as the training
pipeline does (``fn.decoders.video(frames=..., pad_mode='none')``) and writes
``decode_probe_<device>.json``: per clip, refused or not (and the error line), the frame indices
read back from the stripes, and the largest and mean |DALI - PyAV| over the frames' pixels.
Exit 1 when a clip the device should decode comes back wrong or an expected refusal is decoded.
"""
import argparse
import json
import os
import sys

import numpy as np

from timeclr.pipelines.storage.index_pattern import frame_index_image, read_frame_index

FRAMES = np.array([0, 5, 13, 14, 37, 59], dtype=np.int32)  # ascending, as the pipeline asks; 13, 14: a B-frame pair
NUM_FRAMES, WIDTH, HEIGHT = 60, 160, 128
# clip -> (codec, encoder options, decodable on the GPU, decodable by DALI's CPU backend)
CLIPS = {
    "h264.mp4": ("h264", {}, True, False),
    "h264_bframes.mp4": ("h264", {"bf": "3"}, True, False),
    "vp9.webm": ("vp9", {}, True, True),
    "mjpeg.avi": ("mjpeg", {}, False, True),
    "av1.mp4": ("av1", {}, False, False),  # Hopper's NVDEC has no AV1
    # a frame archive (pipelines/storage/frame_archive.py): DALI's image decoder, nvJPEG on the GPU
    "frames.tar": ("jpeg", {}, True, True),
}
def make(folder: str):
    import av

    from timeclr.pipelines.storage.encode import write_video

    os.makedirs(folder, exist_ok=True)
    reference = {}
    for name, (codec, options, _, _) in CLIPS.items():
        path = os.path.join(folder, name)
        if codec == "jpeg":
            from timeclr.pipelines.storage.frame_archive import ArchiveWriter, decode_jpeg, read_frames, read_index

            writer = ArchiveWriter(path, 25, 90)
            for i in range(NUM_FRAMES):
                writer.add(frame_index_image(i, WIDTH, HEIGHT))
            writer.close()
            reference[name] = np.stack([decode_jpeg(j) for j in read_frames(path, FRAMES, read_index(path))])
            print(f"wrote {path} ({os.path.getsize(path)} B)")
            continue
        try:
            write_video(path, (frame_index_image(i, WIDTH, HEIGHT) for i in range(NUM_FRAMES)), codec=codec, gop=12,
                        options=options)
        except Exception as e:  # e.g. a PyAV built without SVT-AV1
            print(f"skip {name}: {type(e).__name__}: {e}")
            continue
        with av.open(path) as c:
            frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        reference[name] = np.stack([frames[i] for i in FRAMES])
        print(f"wrote {path} ({os.path.getsize(path)} B)")
    np.savez_compressed(os.path.join(folder, "reference.npz"), frames=FRAMES, **reference)


def decode(path: str, device: str):
    """FRAMES of ``path`` through DALI's video decoder on ``device``, as the training pipeline
    decodes them (``culprits.decode_alone``; a frame archive's JPEGs through the image decoder,
    ``culprits.decode_images_alone``): (F, H, W, 3) uint8."""
    from timeclr.pipelines.loader.culprits import decode_alone, decode_images_alone

    if path.endswith(".tar"):
        from timeclr.pipelines.storage.frame_archive import read_frames, read_index

        jpegs = read_frames(path, FRAMES, read_index(path))
        return np.stack(decode_images_alone(jpegs, device, device_id=0 if device == "gpu" else None))
    return decode_alone(np.fromfile(path, dtype=np.uint8), FRAMES, device, device_id=0 if device == "gpu" else None)


def check(folder: str, device: str, out_dir: str) -> int:
    from timeclr.pipelines.loader.culprits import dali_error

    ref = np.load(os.path.join(folder, "reference.npz"))
    results, wrong = [], []
    for name, (codec, _, on_gpu, on_cpu) in CLIPS.items():
        if name not in ref:
            continue
        expected = on_gpu if device == "gpu" else on_cpu
        row = {"clip": name, "codec": codec, "device": device, "expected_to_decode": expected}
        try:
            got = decode(os.path.join(folder, name), device)
        except RuntimeError as e:
            row.update(decoded=False, error=dali_error(e))
        else:
            indices = [read_frame_index(f) for f in got]
            diff = np.abs(got.astype(np.int16) - ref[name].astype(np.int16)) if got.shape == ref[name].shape else None
            row.update(decoded=True, shape=list(got.shape), indices=indices, in_order=indices == FRAMES.tolist(),
                       max_abs_diff=None if diff is None else int(diff.max()),
                       mean_abs_diff=None if diff is None else round(float(diff.mean()), 3))
        ok = (row["decoded"] and row.get("in_order")) if expected else not row["decoded"]
        row["as_expected"] = bool(ok)
        if not ok:
            wrong.append(name)
        results.append(row)
        print(json.dumps(row), flush=True)
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"decode_probe_{device}.json")
    with open(path, "w") as f:
        json.dump({"frames": FRAMES.tolist(), "clips": results}, f, indent=1)
    print(f"{len(results) - len(wrong)}/{len(results)} clips as expected on {device}; wrote {path}")
    return 1 if wrong else 0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("action", choices=["make", "check"])
    p.add_argument("folder")
    p.add_argument("--device", choices=["gpu", "cpu"], default="gpu")
    p.add_argument("--out", default="benchmarks/results")
    a = p.parse_args(argv)
    if a.action == "make":
        make(a.folder)
        return 0
    return check(a.folder, a.device, a.out)


if __name__ == "__main__":
    sys.exit(main())
