"""What is recorded while a model trains: the probes and the metric table, the multipliers'
symmetric pairs, the scale-invariance test. Reads models, never changes the step's math."""
