"""The package imports from a plain source checkout, with no ``pip install`` (as on a fresh GPU
machine running ``python -m pytest`` or ``benchmarks/gpu_loss.sh`` from the repository root):
``timeclr.kernels`` and ``timeclr.pipelines`` then come from the folders beside ``timeclr/``."""
import shutil
import subprocess
import sys


from tests.helpers.imports import REPO

PROBE = """
import sys
# drop the editable install's finder: only the copy on sys.path[0] may answer
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
import torch
import timeclr.kernels.nt_xent_chunked, timeclr.pipelines.loader.frame_selection
from timeclr import nt_xent
print(timeclr.__file__)
print(timeclr.kernels.nt_xent_chunked.__file__)
print(timeclr.pipelines.loader.frame_selection.__file__)
print(float(nt_xent(torch.eye(4)[:2], torch.eye(4)[:2], temperature=1.0)))
"""


def test_a_checkout_without_install_imports_kernels_and_pipelines(tmp_path):
    for folder in ("timeclr", "kernels", "pipelines"):
        shutil.copytree(REPO / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__"))
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    package, kernel, selection, loss = out.stdout.split()
    assert package == str(tmp_path / "timeclr" / "__init__.py"), package
    assert kernel == str(tmp_path / "kernels" / "nt_xent_chunked.py"), kernel
    assert selection == str(tmp_path / "pipelines" / "loader" / "frame_selection.py"), selection
    # two orthogonal items, aligned views, tau = 1: each row's loss is log(e + 2) - 1 (closed form)
    assert abs(float(loss) - 0.5514447139320511) < 1e-5, loss


BENCHMARKS_PROBE = """
import sys
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
import timeclr.benchmarks.harness
print(timeclr.benchmarks.harness.__file__)
"""


def test_a_checkout_without_install_imports_the_benchmarks(tmp_path):
    """``python benchmarks/X.py`` on a fresh GPU machine (``gpu_check.sh``, ``gpu_loss.sh``: no
    install, the repository on PYTHONPATH) imports ``timeclr.benchmarks`` from the folder beside
    ``timeclr/``, as ``timeclr.kernels`` and ``timeclr.pipelines``."""
    for folder in ("timeclr", "kernels", "pipelines", "benchmarks"):
        shutil.copytree(REPO / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__", "results"))
    out = subprocess.run([sys.executable, "-c", BENCHMARKS_PROBE], cwd=tmp_path, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == [str(tmp_path / "benchmarks" / "harness.py")], out.stdout
