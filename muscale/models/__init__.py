"""What is trained: the families, their data and losses, the modes that turn them μP or give them
learnable multipliers, and the optimizers. Imports only config."""
