"""TimeCLR: video-level contrastive learning (segment and interval frame selection + NT-Xent)."""
import importlib.util as _util
import os as _os
import sys as _sys


def _map_sibling_folders():
    """Make ``timeclr.kernels``, ``timeclr.pipelines`` and ``timeclr.benchmarks`` importable from a
    source checkout too.

    Installed (``pip install .`` or ``-e .``), setup.py's ``package_dir`` puts the top-level
    folders ``kernels/``, ``pipelines/`` and ``benchmarks/`` inside this package. Run from the checkout without an
    install (``python -m pytest`` on a fresh GPU machine, say), Python finds ``./timeclr`` first
    and it has no such sub-folders; then the folders beside it are loaded under the same names,
    so the package imports the same way everywhere.
    """
    repo = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
    for name in ("kernels", "pipelines", "benchmarks"):
        full = f"{__name__}.{name}"
        init = _os.path.join(repo, name, "__init__.py")
        if full in _sys.modules or _util.find_spec(full) is not None or not _os.path.isfile(init):
            continue
        spec = _util.spec_from_file_location(full, init, submodule_search_locations=[_os.path.dirname(init)])
        module = _util.module_from_spec(spec)
        _sys.modules[full] = module
        spec.loader.exec_module(module)
        globals()[name] = module  # what `import timeclr.kernels` binds on the parent


_map_sibling_folders()

__all__ = ["nt_xent", "NTXentLoss", "load_encoder"]


def __getattr__(name):
    """``from timeclr import nt_xent, NTXentLoss, load_encoder``, loaded on first use: they import
    torch (seconds), which a command's ``--help`` or a config error should not wait for."""
    if name in ("nt_xent", "NTXentLoss"):
        from timeclr import loss

        return getattr(loss, name)
    if name == "load_encoder":
        from timeclr import encoder

        return encoder.load_encoder
    raise AttributeError(f"module 'timeclr' has no attribute {name!r}")
__version__ = "0.1.0"
