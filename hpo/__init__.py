"""hpo: hyperparameter optimization for CIFAR CNNs, accuracy vs fused-inference latency.

The command line (`hpo run`, `hpo best`, ...) is the main interface; the modules below it are
importable for scripts: `hpo.core.spec.load_spec`, `hpo.run.objective.train_configuration`,
`hpo.measure.fusion.fold_batchnorm`, `hpo.measure.runtimes.measure_latency`,
`hpo.store.queries`. The subpackages are layered, lowest first: core (specs, names, results;
no torch) -> device -> measure / train / search -> store (the database) -> run / present ->
cli; `tests/test_layers.py` holds the contract.
"""

from importlib.metadata import version

__version__ = version("hpo")
