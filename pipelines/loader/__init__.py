"""The DALI pipeline: per sample, which frames a view sees (``frame_selection``), how it is
augmented (``augment``), what DALI decodes (``clip_source``, ``shard_source``), the pipeline and
loader (``video``), which video broke a batch (``culprits``) and one batch written out (``preview``)."""
