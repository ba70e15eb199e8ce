"""What is recorded while a model trains: the metric table, the probes that compose one
collector per target (activations, matrices, multipliers, optimizer), the multipliers'
symmetric pairs, the scale-invariance test. Reads models, never changes the step's math."""
