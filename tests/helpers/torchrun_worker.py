"""The entry every torchrun worker of the tests runs: ``timeclr.train``, guarded so a stuck rank
ends with its stacks in the log instead of waiting out gloo's 30-minute collective timeout.

- It dies with its agent (the kernel SIGKILLs it when the agent goes), so killing the agents at
  run_agents' deadline leaves no worker behind; torchrun starts workers in sessions of their own,
  out of reach of a kill of the agent's process group.
- A C-level faulthandler watchdog (``TIMECLR_TEST_WATCHDOG_S``) prints every thread's stack and
  exits when a rank has made no progress for that long: it is re-armed at the end of every step
  (start-up, under load, gets at least ``STARTUP_S``), so a slow start is not taken for a hang. It
  needs no GIL, so it fires wherever the rank is stuck, and the agent then sees a failed worker
  and ends the job. The ranks it SIGTERMs then print their stacks as they go.
- With ``TIMECLR_TEST_DIE_AT_STEP`` set, rank ``TIMECLR_TEST_STOP_RANK`` (default 0) SIGKILLs itself
  right after that step (for rank 0: after writing its checkpoint), on the first attempt only
  (torchrun counts attempts in ``TORCHELASTIC_RESTART_COUNT``): what a node lost mid-run looks like
  to the other ranks. With ``TIMECLR_TEST_HANG_AT_STEP``, it sleeps there instead, and the other
  ranks wait in their next collective: a hung job.
- ``TIMECLR_TEST_GRACE_S``: how long a rank that saw a collective fail waits for the others to
  check in (``timeclr.training.distributed.GRACE_S``), shorter in the tests that wait it out.
- ``TIMECLR_TEST_PID_DIR``: each worker writes its pid there, so a test can check none survives,
  and the stopping rank writes the time it stopped to ``stopped``.
"""
import faulthandler
import os
import signal
import sys
import time

from tests.helpers.spawn import die_with_parent
from timeclr.training import distributed, run
from timeclr.train import main

STARTUP_S = 120  # imports, the pipeline and the first step, on a loaded 2-core machine

if __name__ == "__main__":
    die_with_parent()
    watchdog_s = float(os.environ.get("TIMECLR_TEST_WATCHDOG_S", "270"))
    faulthandler.dump_traceback_later(max(watchdog_s, STARTUP_S), exit=True)
    real_end_step = run.Loop.end_step

    def end_step_rearmed(loop, *args, **kwargs):
        real_end_step(loop, *args, **kwargs)
        faulthandler.dump_traceback_later(watchdog_s, exit=True)  # no progress for watchdog_s from here: stuck

    run.Loop.end_step = end_step_rearmed
    if os.environ.get("TIMECLR_TEST_GRACE_S"):
        distributed.GRACE_S = float(os.environ["TIMECLR_TEST_GRACE_S"])
    # the first rank whose watchdog fires makes the agent SIGTERM the others: they print their stacks too
    faulthandler.register(signal.SIGTERM, chain=True)
    if os.environ.get("TIMECLR_TEST_PID_DIR"):
        open(os.path.join(os.environ["TIMECLR_TEST_PID_DIR"], str(os.getpid())), "w").close()
    die_at = os.environ.get("TIMECLR_TEST_DIE_AT_STEP")
    hang_at = os.environ.get("TIMECLR_TEST_HANG_AT_STEP")
    if (die_at or hang_at) and os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0" \
            and os.environ.get("RANK") == os.environ.get("TIMECLR_TEST_STOP_RANK", "0"):
        def end_step_then_stop(loop, *args, **kwargs):
            end_step_rearmed(loop, *args, **kwargs)  # rank 0 writes the step's checkpoint here
            if loop.step == int(die_at or hang_at):
                if os.environ.get("TIMECLR_TEST_PID_DIR"):  # when it stopped, for the test's clock
                    with open(os.path.join(os.environ["TIMECLR_TEST_PID_DIR"], "stopped"), "w") as f:
                        f.write(repr(time.time()))
                if die_at:
                    os.kill(os.getpid(), signal.SIGKILL)
                # the waiting ranks' watchdogs fire first, in their collective; this rank's stack
                # then comes from the SIGTERM the agent sends it
                faulthandler.dump_traceback_later(watchdog_s + 15, exit=True)
                time.sleep(10 ** 6)

        run.Loop.end_step = end_step_then_stop
    sys.exit(main(sys.argv[1:]))
