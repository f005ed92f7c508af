"""The management API (JSON, bearer API keys, OpenAPI at /schema)."""
