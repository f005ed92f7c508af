"""Report queries over the rollups and raw rows, each scoped by a ``Viewer``."""
