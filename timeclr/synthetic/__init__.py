"""The embedded synthetic dataset: one video's random draw and frames (``render``), and the
folder of them, generated once and reused (``dataset``)."""
