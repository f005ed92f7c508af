"""Server-rendered report pages: views, install tags, charts and CSV exports."""
