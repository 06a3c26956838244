"""The study database: storage URLs and connections, outage retries, the study's stored spec,
direct SQL reads of Optuna's tables, SQL views and the model artifact store.

`hpo.store.optuna_internals` is the one module allowed to touch Optuna's private API."""
