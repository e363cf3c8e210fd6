"""The GPU run, planned to fit the device time one issue gets: which calls, in what order,
carrying what, each with its time limit.

  python benchmarks/gpu_plan.py          print the plan; exit 1 if it does not fit
  (bash benchmarks/gpu_check.sh --plan does the same)

The limits (DEVELOPERS.md, the device tool's README): 15 minutes of device time per issue,
counting the machine's start (1-2 min), every transfer, idle wait and run; at most 10 minutes
a call; 64 MiB travel with a call (the working tree plus the carried paths); the machine goes back
after 30 idle seconds, and with it everything written there, so the calls run back to back.
The plan keeps 2 MiB under the carry limit (62 MiB) and its calls' time limits under 11 minutes
in all, which leaves 4 minutes for the start and the transfers.

Order: what needs least comes first, so a lease cut short still brings numbers back.
1. probe + loss: the GPU, driver, NVDEC libraries, versions, then the loss tests on CUDA and a
   short sweep. Needs neither DALI nor extra wheels.
2. staging calls: one DALI part each (``.dali/part-*``, from ``--prepare``); the wheels the
   machine lacks (omegaconf, antlr4, PyAV) and the probe clips ride in the calls with room left.
3. the last staging call also unpacks DALI and runs the decode probe (seconds: order with
   B-frames, pixels against PyAV, MJPEG/AV1 refused) before anything long decodes.
4. data + train: the DALI-on-NVDEC pipeline benchmark and the R(2+1)D-18 training step.
"""
import glob
import os
import subprocess
import sys
from dataclasses import dataclass, field

MIB = 1 << 20
MAX_CARRY = 62 * MIB
MAX_CARRY_PATHS = 8
MAX_CALL_S = 600
MAX_TOTAL_S = 11 * 60
COMMAND_CHARS = 2000
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# time limits (s): each section's own timeouts in gpu_check.sh add up to less (see there)
PROBE_LOSS_S, STAGE_S, LAST_STAGE_S, DATA_TRAIN_S = 260, 20, 75, 240
EXTRAS = [".wheels", ".gpu-clips"]  # carried once, in whichever staging call has room


class PlanError(RuntimeError):
    pass


@dataclass
class Call:
    name: str
    command: str
    limit_s: int
    carry: list = field(default_factory=list)
    bytes: int = 0  # working tree + carried paths


def tree_bytes(repo: str) -> int:
    """Bytes of what travels with every call: tracked files and untracked ones git does not ignore."""
    out = subprocess.run(["git", "-C", repo, "ls-files", "-co", "--exclude-standard", "-z"], capture_output=True,
                         check=True).stdout
    return sum(os.path.getsize(os.path.join(repo, f)) for f in out.decode().split("\0")
               if f and os.path.isfile(os.path.join(repo, f)))


def path_bytes(repo: str, path: str) -> int:
    full = os.path.join(repo, path)
    if os.path.isfile(full):
        return os.path.getsize(full)
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(full) for f in files)


def plan(repo: str = REPO, tree: int | None = None) -> list[Call]:
    """The calls, from what ``--prepare`` left in ``repo`` (.dali parts, .wheels, .gpu-clips)."""
    parts = sorted(os.path.relpath(p, repo) for p in glob.glob(os.path.join(repo, ".dali", "part-*")))
    missing = [p for p in [".dali/SHA256SUMS", ".dali/unpack_dali.sh", *EXTRAS] if not os.path.exists(os.path.join(repo, p))]
    if not parts or missing:
        raise PlanError(f"not prepared ({', '.join(missing) or 'no .dali/part-*'} missing): "
                        "run bash benchmarks/gpu_check.sh --prepare first")
    tree = tree_bytes(repo) if tree is None else tree
    size = lambda paths: tree + sum(path_bytes(repo, p) for p in paths)  # noqa: E731
    calls = [Call("probe + loss", "bash benchmarks/gpu_check.sh probe loss", PROBE_LOSS_S)]
    stages = [Call(f"stage DALI {os.path.basename(p)}", "bash benchmarks/gpu_check.sh stage", STAGE_S,
                   [p, ".dali/SHA256SUMS"]) for p in parts]
    for extra in EXTRAS:  # into the staging call with the most room, or one of its own
        room = min(stages, key=lambda c: size(c.carry))
        if size(room.carry + [extra]) <= MAX_CARRY and len(room.carry) < MAX_CARRY_PATHS:
            room.carry.append(extra)
        else:
            stages.append(Call(f"stage {extra}", "bash benchmarks/gpu_check.sh stage", STAGE_S, [extra]))
    last = stages[-1]
    last.carry.append(".dali/unpack_dali.sh")
    last.name += " + unpack + decode probe"
    last.command += " unpack decode"
    last.limit_s = LAST_STAGE_S
    calls += stages
    calls.append(Call("data + train", "bash benchmarks/gpu_check.sh data train", DATA_TRAIN_S))
    for c in calls:
        c.bytes = size(c.carry)
    return calls


def problems(calls: list[Call]) -> list[str]:
    """Why the plan does not fit, one line per limit broken; empty when it fits."""
    out = [f"call {i} ({c.name}) carries {c.bytes / MIB:.1f} MiB > {MAX_CARRY / MIB:.0f} MiB"
           for i, c in enumerate(calls, 1) if c.bytes > MAX_CARRY]
    out += [f"call {i} ({c.name}) has a {c.limit_s} s limit > {MAX_CALL_S} s" for i, c in enumerate(calls, 1)
            if c.limit_s > MAX_CALL_S]
    out += [f"call {i} ({c.name}) carries {len(c.carry)} paths > {MAX_CARRY_PATHS}" for i, c in enumerate(calls, 1)
            if len(c.carry) > MAX_CARRY_PATHS]
    out += [f"call {i} ({c.name}): command longer than {COMMAND_CHARS} characters" for i, c in enumerate(calls, 1)
            if len(c.command) > COMMAND_CHARS]
    total = sum(c.limit_s for c in calls)
    if total > MAX_TOTAL_S:
        out.append(f"the calls' limits add up to {total} s > {MAX_TOTAL_S} s")
    return out


def main() -> int:
    try:
        calls = plan()
    except PlanError as e:
        print(f"gpu plan: {e}", file=sys.stderr)
        return 1
    print(f"{'#':>2}  {'call':<44} {'limit':>6} {'carry':>9}  command  [carried paths]")
    for i, c in enumerate(calls, 1):
        print(f"{i:>2}  {c.name:<44} {c.limit_s:>5}s {c.bytes / MIB:>7.1f}Mi  {c.command}  {c.carry}")
    total = sum(c.limit_s for c in calls)
    print(f"limits add up to {total} s ({total / 60:.1f} min of {MAX_TOTAL_S / 60:.0f}); the largest call carries "
          f"{max(c.bytes for c in calls) / MIB:.1f} MiB of {MAX_CARRY / MIB:.0f}. Calls back to back: the machine "
          "goes back after 30 idle seconds, and the staged files with it.")
    bad = problems(calls)
    for line in bad:
        print("DOES NOT FIT:", line, file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
