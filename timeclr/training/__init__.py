"""What every run command shares: its ``main`` (``command``), the run folder and the loop
(``run``), checkpoints, processes and devices (``distributed``, ``threads``), the optimiser
(``optim``), what a step minimises (``objectives``) and the run's pictures (``plots``)."""
