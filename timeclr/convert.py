"""Convert a trusted old checkpoint to data only: ``python -m timeclr.convert OLD.pt NEW.pt --trusted``.

Every command loads checkpoints with ``weights_only=True`` (``timeclr.training.checkpoints``) and refuses one
that names a Python callable, since unpickling runs it. A checkpoint written by an older version
may hold such objects harmlessly (an OmegaConf config, numpy numbers); this command unpickles it
the old way, *which runs whatever code the file names*, so it runs only when the user says the file
is trusted, and rewrites it as tensors, numbers, strings and plain containers, then checks that
the new file loads data-only. Anything it cannot turn into plain data is named and nothing is written.
"""
import argparse
import pickle
import sys

import numpy as np
import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

from timeclr.files.atomic import atomic_path
from timeclr.training.checkpoints import load_checkpoint
from timeclr.errors import ConfigError

PLAIN = (str, int, float, bool, type(None), torch.Tensor, torch.Size, torch.dtype, torch.device)


def to_plain(obj, where: str = "checkpoint"):
    """``obj`` with OmegaConf containers as dicts and lists, numpy numbers as Python numbers and
    numpy arrays as tensors; raises ConfigError naming the key path of anything else."""
    if isinstance(obj, (DictConfig, ListConfig)):
        obj = OmegaConf.to_container(obj, resolve=True)
    if isinstance(obj, PLAIN):
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(obj.copy())
    if isinstance(obj, dict):
        return {to_plain(k, where): to_plain(v, f"{where}[{k!r}]") for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_plain(v, f"{where}[{i}]") for i, v in enumerate(obj))
    raise ConfigError(f"{where} is a {type(obj).__module__}.{type(obj).__qualname__}, which has no plain-data form")


def convert(src, dst):
    """Unpickle ``src`` in full (its code runs: trusted files only), write its plain form to ``dst``
    atomically and check that ``dst`` loads with ``weights_only=True``."""
    try:
        ckpt = torch.load(src, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, pickle.UnpicklingError, ValueError) as e:  # cut short, or no checkpoint
        detail = str(e).strip().split("\n")[0][:120]
        raise ConfigError(f"{src} is not a readable checkpoint "
                          f"({type(e).__name__}{': ' + detail if detail else ''})") from None
    plain = to_plain(ckpt, str(src))
    with atomic_path(dst) as tmp:
        torch.save(plain, tmp)
        load_checkpoint(tmp)  # raises if anything unsafe slipped through


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m timeclr.convert", description=__doc__.split("\n")[0])
    parser.add_argument("src", help="the old checkpoint")
    parser.add_argument("dst", help="where to write the data-only checkpoint")
    parser.add_argument("--trusted", action="store_true",
                        help="you wrote SRC yourself or trust who did: unpickling it runs the code it names")
    args = parser.parse_args(argv)
    if not args.trusted:
        raise SystemExit(f"timeclr.convert: converting {args.src} unpickles it, which runs any code it holds; "
                         "pass --trusted only for a file you wrote yourself or trust")
    try:
        convert(args.src, args.dst)
    except (ConfigError, OSError) as e:
        raise SystemExit(f"timeclr.convert: {e}") from None
    print(f"wrote {args.dst}: data only, loads with weights_only=True")
    return 0


if __name__ == "__main__":
    sys.exit(main())
