"""Files a killed or concurrent job cannot spoil: written whole or not at all (``atomic``), one job
per output folder (``lock``), and what a folder on disk was made with (``recorded``)."""
