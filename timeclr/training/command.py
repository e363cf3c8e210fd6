"""What every run command's ``main`` is: ``python -m timeclr.NAME CONFIG [key=value ...]``.

The config is loaded in its layers and handed to the command's run function. What a user can
fix (a config key, a missing file, a non-finite loss, a damaged checkpoint) ends the command with
one line naming it, not a traceback; so do Ctrl-C and a dead or stuck rank (a failed collective),
with where the last checkpoint is.
"""
import argparse
import os
import sys

from timeclr.config import load_config
from timeclr.errors import ConfigError, NonFiniteLoss


def command_main(name: str, description: str, run_fn, argv=None, config_help: str = "experiment YAML",
                 overrides_help: str = "config overrides, e.g. train.epochs=5") -> int:
    """What every run command's ``main`` is: ``python -m timeclr.NAME CONFIG [key=value ...]``,
    the config loaded in its layers and passed to ``run_fn``; the errors a user can fix (a config
    key, a missing file, a non-finite loss) end the command with one line naming what is wrong,
    not a traceback. The process group is left whatever happens. Returns the exit status 0."""
    parser = argparse.ArgumentParser(prog=f"python -m timeclr.{name}", description=description)
    parser.add_argument("config", help=config_help)
    parser.add_argument("overrides", nargs="*", metavar="key=value", help=overrides_help)
    args = parser.parse_args(argv)
    cfg = None
    try:
        cfg = load_config(args.config, args.overrides)
        run_fn(cfg)
    except (ConfigError, OSError, NonFiniteLoss) as e:  # after a NaN the last checkpoint stays: rerun resumes
        raise SystemExit(f"timeclr.{name}: {e}") from None
    except KeyboardInterrupt:  # checkpoints are written atomically: the last one is whole
        raise SystemExit(f"timeclr.{name}: interrupted; {_last_checkpoint(cfg)}") from None
    except RuntimeError as e:  # a dead or stuck rank: a collective failed, or ran past dist.timeout_s
        failed = None
        if "torch.distributed" in sys.modules:
            from timeclr.training.distributed import collective_failure

            failed = collective_failure(e, cfg)
        if failed is None:
            raise
        raise SystemExit(f"timeclr.{name}: {failed}; {_last_checkpoint(cfg)}") from None
    finally:
        if "torch.distributed" in sys.modules:  # only a run that got as far as torch can have a group
            from timeclr.training.distributed import teardown_distributed

            teardown_distributed()
    return 0


def _last_checkpoint(cfg) -> str:
    """Where a stopped run can go on from, in words."""
    from timeclr.training.run import RunDir

    ckpt = RunDir(cfg.out_dir).checkpoint if cfg is not None and "out_dir" in cfg else None
    return (f"the last checkpoint is {ckpt}; the same command resumes from it" if ckpt and os.path.exists(ckpt)
            else "no checkpoint was written yet")
