"""Checkpoint files: data only, written so that a bad write never costs the run, read so that a
damaged or hostile file is never trusted.

    save_checkpoint         torch.save to a temporary name, read back (``load_checkpoint``),
                            then the old file becomes ``checkpoint.prev.pt`` and the new one
                            takes its name: a kill, a bad disk write or a full disk at any moment
                            leaves a good one
    load_checkpoint         torch.load with ``weights_only=True`` after checking every zip member's
                            CRC-32 (torch does not): a file cut short, changed or not a checkpoint
                            is a ConfigError naming it, one that would run code an UnsafeCheckpoint
    latest_good_checkpoint  the latest readable of the two, with a warning when it is the previous

Checkpoints are data: tensors, numbers, strings and plain containers (the config as a dict, the
reader's position as ints). Pretrained checkpoints are what people download and share, and
unpickling runs whatever callables a pickle names, so nothing else is ever unpickled: a file that
names a callable is refused before any of it runs (``python -m timeclr.convert`` rewrites a
trusted old one on the user's explicit word). What a checkpoint holds and when it is written are
``timeclr.training.run``'s business.
"""
import os
import pickle
import re
import sys
import zipfile

import torch
from omegaconf import OmegaConf

from timeclr.files.atomic import atomic_path
from timeclr.errors import ConfigError, DiskFull, UnsafeCheckpoint


def previous_path(path) -> str:
    """Where the checkpoint before the latest is kept: ``checkpoint.prev.pt`` beside ``checkpoint.pt``."""
    root, ext = os.path.splitext(str(path))
    return f"{root}.prev{ext}"


def save_checkpoint(path, model, optimizer, step, loader, cfg):
    """Model, optimizer, step, the reader's position and the resolved config, atomically; the
    new file is read back before it replaces the old one, which is kept as ``previous_path``
    (a write the disk damaged, or a kill between the two renames, leaves a good checkpoint).

    Raises:
        DiskFull: the disk filled up; the checkpoints written before are unchanged.
    """
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
             "loader": loader.state_dict(), "config": OmegaConf.to_container(cfg, resolve=True)}
    try:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:  # a file object: a full disk is an OSError, not torch's RuntimeError
                torch.save(state, f)
            if load_checkpoint(tmp)["step"] != step:  # raises on a file that does not read back
                raise ConfigError(f"{tmp}: the checkpoint just written reads back another step")
            if os.path.exists(path):
                os.replace(path, previous_path(path))
    except DiskFull as e:
        raise DiskFull(f"{e}: the checkpoint of step {step} was not written; the run stops here, and the same "
                       "command resumes from the last checkpoint once there is space") from None


def load_checkpoint(path, map_location="cpu"):
    """The checkpoint at ``path``, unpickled with ``weights_only=True``.

    torch's zip container records a CRC-32 of every member, which torch itself does not check:
    bytes overwritten in a tensor would load as silently wrong weights, so they are checked here
    first (``zipfile``, ~1 ms per 4 MB).

    Raises:
        UnsafeCheckpoint: the file names a Python callable (what a pickle runs on loading); none ran.
        ConfigError: a file cut short, changed or not a checkpoint (the message names it).
    """
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                bad = z.testzip()
            if bad is not None:
                raise ValueError(f"member {bad} fails its CRC-32 check: the file changed after it was written")
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        named = re.search(r"GLOBAL ([\w.]+\w)", str(e))
        if named is None:  # weights_only's unpickler found damage, not a callable
            raise _unreadable(path, e) from None
        raise UnsafeCheckpoint(
            f"{path}: refused: it asks to run {named.group(1)} when loaded, and a checkpoint holds only tensors "
            "and plain data (nothing of it ran); if you wrote it with an older timeclr and trust it, "
            f"convert it once with python -m timeclr.convert {path} NEW.pt --trusted") from None
    except (RuntimeError, EOFError, ValueError, zipfile.BadZipFile, OSError) as e:
        raise _unreadable(path, e) from None


def _unreadable(path, e: Exception) -> ConfigError:
    detail = str(e).strip().split("\n")[0][:120]  # an EOFError has no message at all
    return ConfigError(f"{path} is not a readable checkpoint ({type(e).__name__}{': ' + detail if detail else ''}); "
                       "delete it to start over, or choose another out_dir")


def latest_good_checkpoint(path, map_location="cpu", warn=True):
    """(checkpoint, its path) of the latest readable one of ``path`` and ``previous_path(path)``,
    or (None, None) when there is neither; a damaged latest one is passed over with a warning,
    and two damaged ones are a ConfigError naming both. An unsafe one is never passed over: a
    file that would run code in the run folder is for the user to look at, so it ends the run."""
    prev = previous_path(path)
    errors = []
    for candidate in (path, prev):
        if not os.path.exists(candidate):
            continue
        try:
            ckpt = load_checkpoint(candidate, map_location=map_location)
        except UnsafeCheckpoint:
            raise
        except ConfigError as e:
            errors.append(str(e))
            continue
        if errors and warn:
            print(f"warning: {errors[0]}; resuming from the previous checkpoint {candidate} (step {ckpt['step']})",
                  file=sys.stderr)
        return ckpt, candidate
    if errors:
        raise ConfigError(" and ".join(errors))
    return None, None
