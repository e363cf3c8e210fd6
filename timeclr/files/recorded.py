"""How a thing on disk was made, against how it is asked for now.

A dataset folder keeps the parameters it was generated with, a prepared tree its encoder settings,
a run directory its resolved config. Reusing one made differently would mix two experiments
silently, so each caller compares the record with the request and refuses, naming what differs.
"""


def _select(record, key: str):
    """``record[a][b]`` for the dotted key ``a.b`` (plain dicts or omegaconf configs); None if absent."""
    for part in key.split("."):
        try:
            record = record[part]
        except (KeyError, TypeError, IndexError):
            return None
    return record


def _plain(value):
    """omegaconf containers as plain dicts and lists, so a saved dict and a live config compare equal."""
    try:
        from omegaconf import OmegaConf

        if OmegaConf.is_config(value):
            return OmegaConf.to_container(value, resolve=True)
    except ImportError:
        pass
    return value


def differences(recorded, wanted, keys=None) -> list[str]:
    """``["key: A there, B now", ...]`` for each of ``keys`` (dotted paths; default: every top-level
    key of either side) whose values differ; empty when the record matches the request."""
    recorded, wanted = _plain(recorded) or {}, _plain(wanted) or {}
    if keys is None:
        keys = sorted(set(recorded) | set(wanted))
    out = []
    for key in keys:
        a, b = _plain(_select(recorded, key)), _plain(_select(wanted, key))
        if a != b:
            out.append(f"{key}: {a!r} there, {b!r} now")
    return out
