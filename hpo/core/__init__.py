"""The vocabulary: errors, names, the hyperparameter catalog, study specs, trial configs and
results. Plain Python (no torch, no Optuna), so a spec is validated in milliseconds."""
