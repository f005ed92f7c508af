"""The web process: the app factory, the ingest routes, the management API, the admin and
report pages, health and metrics endpoints. Never imported by the worker.
"""
