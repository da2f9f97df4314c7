"""How the dashboard is deployed: ``open`` (train and upload, within limits) or ``viewer``.

Each setting is read from an environment variable, else from the app's secrets (the dashboard
passes ``st.secrets`` in as a plain dict; the engine never imports streamlit), else its default.
The environment wins, so whoever starts the server can override a committed secrets file.

- ``LEUKDASH_MODE`` / secret ``mode``: ``open`` (default) or ``viewer`` (no training, no uploads);
- ``LEUKDASH_MAX_JOBS`` / ``max_jobs``: jobs computing at once, more wait in a queue (2; 1 on a
  small machine, see ``SMALL_MACHINE_MB``);
- ``LEUKDASH_MAX_UPLOAD_MB`` / ``max_upload_mb``: one uploaded zip (200);
- ``LEUKDASH_MAX_UNPACKED_MB`` / ``max_unpacked_mb``: what one zip may unpack to (1024);
- ``LEUKDASH_UPLOADS_MB`` / ``uploads_mb``: all uploads together, least recently used evicted (2048);
- ``LEUKDASH_JOB_WORKERS`` / ``job_workers``: folds one job computes at once (``--n-jobs``;
  the engine's choice, 1 on a small machine).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from leukdash.engine import machine
from leukdash.errors import ConfigError
from leukdash.service.uploads import MB, UploadLimits

MODES = ("open", "viewer")
# Below this much memory (Streamlit Community Cloud gives ~2.7 GB) a job computes one fold at a
# time and one job runs at once: a CNN fold's TensorFlow process takes up to ~1 GB, and two of
# them beside the server (~0.8 GB with TensorFlow loaded for Grad-CAM) pass 2.5 GB.
SMALL_MACHINE_MB = 4096
SMALL_MACHINE_DEFAULTS = {"max_jobs": 1, "job_workers": 1}
# Each numeric limit (a field of Deployment) is read from this environment variable or the
# secret named like the field.
VARIABLES = {"max_jobs": "LEUKDASH_MAX_JOBS", "max_upload_mb": "LEUKDASH_MAX_UPLOAD_MB",
             "max_unpacked_mb": "LEUKDASH_MAX_UNPACKED_MB", "uploads_mb": "LEUKDASH_UPLOADS_MB",
             "job_workers": "LEUKDASH_JOB_WORKERS"}


@dataclass(frozen=True)
class Deployment:
    """The mode and the limits that hold for every visitor of one server together."""

    mode: str = "open"
    max_jobs: int = 2
    max_upload_mb: int = 200
    max_unpacked_mb: int = 1024
    uploads_mb: int = 2048
    job_workers: int | None = None  # None: the engine's choice

    @property
    def viewer(self) -> bool:
        """No training and no dataset uploads: browse, compare and predict with stored runs."""
        return self.mode == "viewer"

    def upload_limits(self) -> UploadLimits:
        return UploadLimits(max_zip_bytes=self.max_upload_mb * MB, max_unpacked_bytes=self.max_unpacked_mb * MB,
                            quota_bytes=self.uploads_mb * MB)


def read_deployment(secrets: Mapping | None = None, environ: Mapping | None = None) -> Deployment:
    """The deployment from ``environ`` (default ``os.environ``), then ``secrets``, then defaults.

    Raises :class:`ConfigError` naming the setting when a value is not allowed.
    """
    environ = os.environ if environ is None else environ
    secrets = secrets or {}

    def lookup(variable: str, key: str, default):
        if environ.get(variable, "").strip():
            return variable, environ[variable].strip()
        if key in secrets and str(secrets[key]).strip():
            return f"secret '{key}'", str(secrets[key]).strip()
        return variable, default

    source, mode = lookup("LEUKDASH_MODE", "mode", "open")
    if str(mode).lower() not in MODES:
        raise ConfigError(f"{source} must be 'open' or 'viewer', got {mode!r}")
    memory = machine.machine_memory_mb()
    defaults = SMALL_MACHINE_DEFAULTS if memory is not None and memory < SMALL_MACHINE_MB else {}
    values = {}
    for name, variable in VARIABLES.items():
        source, value = lookup(variable, name, defaults.get(name, Deployment.__dataclass_fields__[name].default))
        if value is None:  # the engine's choice
            values[name] = None
            continue
        try:
            values[name] = int(value)
        except ValueError:
            raise ConfigError(f"{source} must be a whole number, got {value!r}") from None
        if values[name] < 1:
            raise ConfigError(f"{source} must be at least 1, got {value!r}")
    return Deployment(mode=str(mode).lower(), **values)
