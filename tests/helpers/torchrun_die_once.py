"""``timeclr.train`` whose rank 0 is SIGKILLed right after writing the checkpoint of step
``TIMECLR_TEST_DIE_AT_STEP``, on the first attempt only (torchrun counts attempts in
``TORCHELASTIC_RESTART_COUNT``): what a node lost mid-run looks like to the other ranks."""
import os
import signal
import sys

from timeclr import run
from timeclr.train import main

if __name__ == "__main__":
    die_at = int(os.environ["TIMECLR_TEST_DIE_AT_STEP"])
    if os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0" and os.environ.get("RANK") == "0":
        real_save = run.save_checkpoint

        def save_then_die(path, model, optimizer, step, loader, cfg):
            real_save(path, model, optimizer, step, loader, cfg)
            if step == die_at:
                os.kill(os.getpid(), signal.SIGKILL)

        run.save_checkpoint = save_then_die
    sys.exit(main(sys.argv[1:]))
