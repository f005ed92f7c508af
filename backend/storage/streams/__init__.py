"""The Redis stream of events: the group-commit writer and its spool on the web side."""
