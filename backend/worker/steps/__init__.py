"""The worker's steps, in the order ``backend.worker.pipeline`` runs them: decode, validate,
attribute, classify, price, write. Each takes a typed batch and returns one; an event it drops
becomes a ``rejected_events`` row with its ``RejectReason``."""
