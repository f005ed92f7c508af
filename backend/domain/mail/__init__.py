"""Outgoing e-mail: ``enqueue`` writes a rendered mail into the mail outbox in the caller's
transaction; the worker sends it (``backend.domain.mail.delivery``)."""

from backend.domain.mail.outbox import enqueue, notify_admins

__all__ = ["enqueue", "notify_admins"]
