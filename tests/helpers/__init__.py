"""What several test modules share: videos whose frames say their index, float64 references,
tiny training runs, processes with a deadline, the worker pool's stub tasks (``pool_tasks``). Imported as ``tests.helpers.NAME``."""
