"""Running a study: one trial end to end, the worker loop against the study's target, the
terminal display, and the `run` / `create` / `worker` commands."""
