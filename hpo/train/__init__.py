"""Training one configuration: datasets as device tensors, optimizers and schedules, the loop,
and checkpoints of the trained weights."""
