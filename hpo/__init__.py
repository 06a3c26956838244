"""hpo: hyperparameter optimization for CIFAR CNNs, accuracy vs fused-inference latency.

The command line (`hpo run`, `hpo best`, ...) is the main interface; the modules below it are
importable for scripts: `hpo.spec.load_spec`, `hpo.objective.run_trial`,
`hpo.fusion.fold_batchnorm`, `hpo.latency.measure_latency`, `hpo.results`.
"""

from importlib.metadata import version

__version__ = version("hpo")
