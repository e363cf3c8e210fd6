"""The errors that several layers raise, in one leaf module that imports nothing of ours.

Every command turns these into a one-line message (``SystemExit``) instead of a traceback, so each
message names the file or the config key at fault.
"""


class ConfigError(ValueError):
    """A config file, override or setting that does not fit; the message names the key."""


class UnsafeCheckpoint(ConfigError):
    """A checkpoint whose unpickling would run Python code (a callable it names, not tensors and
    plain data): refused without running any of it. Never a reason to fall back to another file."""


class DiskFull(OSError):
    """A write ran out of disk space (ENOSPC, or the user's quota): the message names the file and
    what was kept, since a full disk is the user's to fix and the job's outputs so far are whole."""


class VideoError(Exception):
    """One video the pipelines cannot use (indexing rejects it, preparing cannot transcode it).

    ``reason`` starts with a stable keyword (``truncated``, ``not a video``, ``unreadable`` ...), so
    a rejects or failures CSV can be grouped by it.
    """

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class ManifestError(Exception):
    """A problem with a command's input as a whole: a missing root, no videos, a bad manifest."""


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or inf: the run stops, naming the step and the batch's videos."""
