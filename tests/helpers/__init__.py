"""What several test modules share: videos whose frames say their index, float64 references,
tiny training runs, processes with a deadline. Imported as ``tests.helpers.NAME``."""
