"""How a dataset sits on disk: the manifest CSV, frame archives, GOP packet indexes, WebDataset
shards and their streams, and the one PyAV encode loop (with its self-describing test pattern)."""
