"""One run and many: the trainer, the launchers, the coordinate check's plan, sweeps, the record
store and checkpoints. Writes the records everything after it reads."""
