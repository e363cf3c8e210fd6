"""Checkpoint files: written so that a bad write never costs the run, read so that a damaged
file is never trusted.

    save_checkpoint         torch.save to a temporary name, read back (``load_checkpoint``),
                            then the old file becomes ``checkpoint.prev.pt`` and the new one
                            takes its name: a kill or a bad disk write at any moment leaves a good one
    load_checkpoint         torch.load after checking every zip member's CRC-32 (torch does not):
                            a file cut short, changed or not a checkpoint is a ConfigError naming it
    latest_good_checkpoint  the latest readable of the two, with a warning when it is the previous

What a checkpoint holds (model, optimizer, step, the reader's position, the resolved config) and
when it is written are ``timeclr.run``'s business, which re-exports these.
"""
import os
import pickle
import sys
import zipfile

import torch
from omegaconf import OmegaConf

from timeclr.atomic import atomic_path
from timeclr.errors import ConfigError


def previous_path(path) -> str:
    """Where the checkpoint before the latest is kept: ``checkpoint.prev.pt`` beside ``checkpoint.pt``."""
    root, ext = os.path.splitext(str(path))
    return f"{root}.prev{ext}"


def save_checkpoint(path, model, optimizer, step, loader, cfg):
    """Model, optimizer, step, the reader's position and the resolved config, atomically; the
    new file is read back before it replaces the old one, which is kept as ``previous_path``
    (a write the disk damaged, or a kill between the two renames, leaves a good checkpoint)."""
    with atomic_path(path) as tmp:
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                    "loader": loader.state_dict(), "config": OmegaConf.to_container(cfg, resolve=True)}, tmp)
        if load_checkpoint(tmp)["step"] != step:  # raises on a file that does not read back
            raise ConfigError(f"{tmp}: the checkpoint just written reads back another step")
        if os.path.exists(path):
            os.replace(path, previous_path(path))


def load_checkpoint(path, map_location="cpu"):
    """The checkpoint at ``path``; a file cut short, changed or not a checkpoint is a ConfigError
    naming it. torch's zip container records a CRC-32 of every member, which torch itself does not
    check: bytes overwritten in a tensor would load as silently wrong weights, so they are checked
    here first (``zipfile``, ~1 ms per 4 MB)."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                bad = z.testzip()
            if bad is not None:
                raise ValueError(f"member {bad} fails its CRC-32 check: the file changed after it was written")
        return torch.load(path, map_location=map_location, weights_only=False)
    except (RuntimeError, EOFError, pickle.UnpicklingError, ValueError, zipfile.BadZipFile, OSError) as e:
        raise ConfigError(f"{path} is not a readable checkpoint ({type(e).__name__}: {str(e).splitlines()[0][:120]}); "
                          "delete it to start over, or choose another out_dir") from None


def latest_good_checkpoint(path, map_location="cpu", warn=True):
    """(checkpoint, its path) of the latest readable one of ``path`` and ``previous_path(path)``,
    or (None, None) when there is neither; a damaged latest one is passed over with a warning,
    and two damaged ones are a ConfigError naming both."""
    prev = previous_path(path)
    errors = []
    for candidate in (path, prev):
        if not os.path.exists(candidate):
            continue
        try:
            ckpt = load_checkpoint(candidate, map_location=map_location)
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
