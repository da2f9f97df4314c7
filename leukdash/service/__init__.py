"""The service around the dashboard: background jobs and their supervisor, uploads and their
quotas, deployment mode and limits. Imports the engine and everything beneath it."""
