"""Test set-up. Without an NVIDIA GPU, Triton kernels run in Triton's CPU interpreter, which must
be switched on before triton is first imported, so it happens here, before any test module loads."""
import os
import sys

if not os.path.exists("/dev/nvidiactl"):
    os.environ.setdefault("TRITON_INTERPRET", "1")

sys.path.insert(0, os.path.dirname(__file__))  # tests/reference.py, also for spawned workers
