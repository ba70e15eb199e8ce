"""What the records say: exponent fits and their intervals, derived metrics, divergence, the
theory's expected exponents, and the gate. Reads records only."""
