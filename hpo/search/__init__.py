"""What to try next: the spec's search space as Optuna suggestions, and the samplers."""
