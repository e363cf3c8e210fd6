"""TimeCLR: video-level contrastive learning with DALI video pipelines and a fused Triton NT-Xent loss.

The repository keeps the design's top-level folders (``timeclr/``, ``kernels/``, ``pipelines/``),
but PyPI already has packages named ``kernels`` and ``pipelines``, so the last two are installed
*inside* the ``timeclr`` namespace:

    folder        import name
    timeclr/      timeclr
    kernels/      timeclr.kernels
    pipelines/    timeclr.pipelines
    benchmarks/   timeclr.benchmarks (run as scripts, ``python benchmarks/X.py``; they import each
                  other and their harness as ``timeclr.benchmarks.X``)
"""
from setuptools import setup

setup(
    name="timeclr",
    version="0.1.0",
    description="Self-supervised video representation learning (TimeCLR) with DALI and Triton",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=["timeclr", "timeclr.training", "timeclr.evaluation", "timeclr.files", "timeclr.synthetic",
              "timeclr.kernels", "timeclr.pipelines", "timeclr.pipelines.ingest", "timeclr.pipelines.storage",
              "timeclr.pipelines.loader", "timeclr.benchmarks", "timeclr.benchmarks.experiments"],
    package_dir={
        "timeclr": "timeclr",
        "timeclr.kernels": "kernels",
        "timeclr.pipelines": "pipelines",
        "timeclr.pipelines.ingest": "pipelines/ingest",
        "timeclr.pipelines.storage": "pipelines/storage",
        "timeclr.pipelines.loader": "pipelines/loader",
        "timeclr.benchmarks": "benchmarks",
        "timeclr.benchmarks.experiments": "benchmarks/experiments",
    },
    package_data={"timeclr.pipelines": ["*.yaml", "recipes/*.yaml"]},
    install_requires=[
        # The GPU benchmark machine ships torch 2.11 + triton 3.6; this machine uses torch 2.13 + triton 3.9.
        "torch>=2.4",
        "triton>=3.0; platform_system == 'Linux'",
        "nvidia-dali-cuda120>=1.40",
        "numpy>=1.24",
        "omegaconf>=2.3",
        "av>=12",  # PyAV: writes and probes video files
        "pillow>=9",  # JPEG frame archives (prepare --codec jpeg) and their probe
        "matplotlib>=3.7",  # benchmark charts and loss curves
        "tqdm>=4.60",  # progress bars
    ],
    extras_require={
        # TensorBoard event files beside metrics.jsonl (loss, lr, evaluation metrics), no flag needed
        "tensorboard": ["tensorboard>=2.10"],
        # the tests read manifests with pandas, TensorBoard events and WebDataset shards back, and
        # run on two pytest-xdist workers (README)
        "dev": ["pytest>=7", "pytest-timeout>=2.1", "pytest-xdist>=3.2", "pandas", "tensorboard>=2.10",
                "webdataset>=0.2"],
    },
)
