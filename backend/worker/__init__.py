"""The worker: stream -> enriched rows -> one transaction per batch -> XACK."""
