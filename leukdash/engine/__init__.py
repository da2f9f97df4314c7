"""The experiment engine: augmentation, training one fold, the runner and its scheduler (local
pool or Dask), sweeps, the run store, progress and time estimates. Imports data/, models/ and the
foundation."""
