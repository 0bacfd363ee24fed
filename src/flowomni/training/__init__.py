"""Training: datasets of the tasks, the accelerate loop, codec fitting, flow-student distillation, export."""
