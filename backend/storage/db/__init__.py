"""Storage shared by ingestion, the worker and the reports: models, engines, migrations."""
