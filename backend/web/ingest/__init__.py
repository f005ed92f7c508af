"""Ingestion: request -> validated, stamped event -> Redis stream. Never reads reports."""
