"""From a dataset's download to files the loader reads: the known datasets and their annotation
formats, probing each video, re-encoding a tree (``prepare``, ``transcode``), indexing it into a
manifest (``index``), one worker process per file (``pool``)."""
