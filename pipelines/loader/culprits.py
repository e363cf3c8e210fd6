"""Which video broke a DALI batch: the loader asks here when the pipeline fails.

DALI reports a failed batch, not the file. The loader collects the videos the failed batch and
the ones prefetched with it may hold (the *window*), and this module says which of them cannot be
decoded, in two passes:

1. PyAV decodes each video's frames (``pyav_problem``; Pillow each JPEG of a frame archive):
   damaged or cut files, the usual culprits, found without DALI.
2. Only when PyAV decodes them all: each video alone, with the frames the batch asked of it,
   through DALI's decoder on the pipeline's own device (``dali_problem``). This finds a file
   that only that decoder fails on, above all one NVDEC refuses under ``data.device=gpu`` while
   PyAV (FFmpeg's software decoder) reads it.

A video either finds is skipped and logged by the loader like any damaged video; when neither
finds one, the failure is not a video's and the loader raises.
"""
import numpy as np

from timeclr.pipelines.storage import frame_archive


def pyav_problem(video) -> str | None:
    """Why PyAV cannot decode all of ``video``'s frames (Pillow, for a frame archive), or None
    when it can."""
    import av

    if video.codec == frame_archive.CODEC:
        return frame_archive.archive_problem(video.path)
    needed = video.num_frames
    try:
        with av.open(video.path) as container:
            count = 0
            for _ in container.decode(video=0):
                count += 1
                if count >= needed:
                    return None
        return f"decodes only {count} of the {needed} frames needed"
    except Exception as e:  # PyAV raises many types for damaged files
        return f"fails to decode: {type(e).__name__}: {e}"


def dali_error(e: Exception) -> str:
    """The line of a DALI pipeline error that says what went wrong: the one after 'encountered:'
    (DALI's message first repeats 'Critical error in pipeline' and the operator's traceback)."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    if "encountered:" in lines[:-1]:
        return lines[lines.index("encountered:") + 1][:300]
    return next((ln for ln in lines if not ln.startswith("Critical error")), lines[0] if lines else repr(e))[:300]


def decode_alone(encoded, decode, device: str, device_id=None):
    """Frames ``decode`` (int32, ascending) of one encoded file through DALI's video decoder on
    ``device`` ('cpu' or 'gpu'), as the training pipeline decodes them (``pad_mode='none'``):
    (F, H, W, 3) uint8 numpy. Raises DALI's RuntimeError when the decoder fails."""
    from nvidia.dali import fn, pipeline_def, types

    gpu = device == "gpu"
    if gpu and device_id is None:
        import torch

        device_id = torch.cuda.current_device()

    @pipeline_def(batch_size=1, num_threads=1, device_id=device_id if gpu else None, prefetch_queue_depth=1)
    def alone():
        data = fn.external_source(name="encoded", dtype=types.UINT8)
        frames = fn.external_source(name="frames", dtype=types.INT32)
        return fn.decoders.video(data, frames=frames, device="mixed" if gpu else "cpu", pad_mode="none")

    pipe = alone()
    pipe.build()
    pipe.feed_input("encoded", [encoded])
    pipe.feed_input("frames", [decode])
    (out,) = pipe.run()
    return np.array((out.as_cpu() if gpu else out)[0])


def decode_images_alone(jpegs, device: str, device_id=None):
    """Each JPEG of ``jpegs`` through DALI's image decoder on ``device``, as the archive pipeline
    decodes them: a list of (H, W, 3) uint8 numpy. Raises DALI's RuntimeError when one fails."""
    from nvidia.dali import fn, pipeline_def, types

    gpu = device == "gpu"
    if gpu and device_id is None:
        import torch

        device_id = torch.cuda.current_device()

    @pipeline_def(batch_size=len(jpegs), num_threads=1, device_id=device_id if gpu else None, prefetch_queue_depth=1)
    def alone():
        data = fn.external_source(name="jpegs", dtype=types.UINT8)
        return fn.decoders.image(data, device="mixed" if gpu else "cpu", output_type=types.RGB)

    pipe = alone()
    pipe.build()
    pipe.feed_input("jpegs", list(jpegs))
    (out,) = pipe.run()
    out = out.as_cpu() if gpu else out
    return [np.array(out[i]) for i in range(len(jpegs))]


def dali_problem(encoded, decode, device: str, device_id=None) -> str | None:
    """Why DALI's decoder on ``device`` fails on one file alone, asked for frames ``decode``
    (``encoded``: the file's bytes, or a frame archive's list of JPEGs), or None when it decodes them."""
    try:
        if isinstance(encoded, (list, tuple)):
            decode_images_alone(encoded, device, device_id)
        else:
            decode_alone(encoded, decode, device, device_id)
    except RuntimeError as e:
        return f"DALI's {device} decoder fails on it (PyAV decodes it): {dali_error(e)}"
    return None


def find_culprits(window, videos, decoder_input, device: str, device_id=None):
    """{manifest index: reason} of the videos in ``window`` ({index: epoch}) that cannot be decoded.

    ``decoder_input(index, epoch)`` gives (encoded bytes, frame indices to decode) as the
    pipeline's source hands them to the decoder."""
    bad = {i: r for i in sorted(window) if (r := pyav_problem(videos[i])) is not None}
    if bad:
        return bad
    return {i: r for i in sorted(window)
            if (r := dali_problem(*decoder_input(i, window[i]), device, device_id)) is not None}
