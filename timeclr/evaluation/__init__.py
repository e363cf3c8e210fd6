"""Measuring an encoder: frozen features of each split (``features``), the protocols on them
(``metrics``: linear probe, kNN, retrieval), and fine-tuning's model (``classifier``) and library
(``finetuning``)."""
