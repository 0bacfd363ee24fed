"""Training: datasets of the four tasks, the accelerate loop, checkpoints."""
