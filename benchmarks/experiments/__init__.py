"""Method experiments on the synthetic set (``timeclr.benchmarks.experiments``): what the views,
the budget and fine-tuning are worth, rather than how fast anything runs. Run as scripts,
``python benchmarks/experiments/X.py``; results in ``benchmarks/results/``."""
