"""TimeCLR's benchmarks, installed as ``timeclr.benchmarks`` (setup.py's ``package_dir``, as
``kernels/`` and ``pipelines/``), run as scripts: ``python benchmarks/X.py ...``.

Speed (this folder):
    loss_kernel.py        the NT-Xent loss, four ways: time, memory, TFLOP/s
                          (+ loss_kernel_measure.py: one configuration; loss_kernel_report.py: table, CSV, figure)
    data_pipeline.py      the DALI video pipeline vs a PyAV DataLoader
                          (+ pipeline_timing.py, pyav_baseline.py, bench_videos.py)
    storage_layouts.py    VP9 GOP sizes and frame archives: clips/s against bytes
    shard_reading.py      WebDataset shards vs one file per video, local and HTTP
                          (+ prepared_sets.py, the prepared sets both share)
    train_throughput.py   the training step fed by DALI vs by tensors in memory
    prepare_speed.py      ``python -m timeclr.data prepare`` per 1000 videos
    content_check.py      what the CRC-32 content checks cost per sample
    gpu_check.sh, gpu_loss.sh, gpu_plan.py, gpu_decode_probe.py    the GPU run, planned to fit
    thread_contention.sh  the training step on a shared CPU
Method experiments (``experiments/``): ablation.py (+ ablation_setups.py, ablation_report.py),
finetune_synthetic.py, rotation_ceiling.py, readme_numbers.py.

Every one writes through ``harness.py``: a plain CSV in ``benchmarks/results/`` with the run's
metadata in a JSON sidecar of the same name; ``--quick`` runs write into ``benchmarks/results/quick/``,
which git ignores.
"""
