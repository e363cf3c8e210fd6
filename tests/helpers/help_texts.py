"""Print the ``--help`` of several commands as JSON, each run inside this one process.

    python tests/helpers/help_texts.py '[["-m", "timeclr.train", "--help"], ["benchmarks/x.py", "--help"]]'

One process for all: torch and DALI are imported once, not once per command (a second or two of
CPU each). Each command runs as ``python -m`` or ``python SCRIPT`` would run it (``runpy``, as
``__main__``), with its own ``sys.argv``; argparse prints the help and exits, which ends it here.
A command that returns without exiting has ignored ``--help``: that is reported as rc None.
"""
import contextlib
import io
import json
import runpy
import sys


def help_text(argv: list) -> tuple:
    """(exit code, stdout + stderr) of ``python *argv`` run in this process."""
    out, saved = io.StringIO(), sys.argv
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            if argv[0] == "-m":
                sys.argv = [argv[1], *argv[2:]]
                runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
            else:
                sys.argv = list(argv)
                runpy.run_path(argv[0], run_name="__main__")
            rc = None
        except SystemExit as e:  # as the interpreter reads it: None is 0, a message is printed and 1
            rc = 0 if e.code is None else e.code if isinstance(e.code, int) else 1
            if rc == 1 and not isinstance(e.code, int):
                print(e.code)
        except BaseException as e:  # noqa: BLE001 -- report it as that command's failure
            rc = 1
            print(f"{type(e).__name__}: {e}")
        finally:
            sys.argv = saved
    return rc, out.getvalue()


if __name__ == "__main__":
    results = [help_text(argv) for argv in json.loads(sys.argv[1])]
    sys.stdout.write(json.dumps(results))
