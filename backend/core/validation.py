"""Field errors: one exception for a value that cannot be accepted, wherever it was typed.

It is a Litestar ``ValidationException``, so the API answers it as a 400 with
``extra=[{"key": field, "message": ...}]`` without a handler; the admin pages catch it and show
``message`` next to the form field named ``field``.
"""

from __future__ import annotations

from litestar.exceptions import ValidationException


class FieldError(ValidationException):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(
            detail=f"Validation failed: {field}", extra=[{"key": field, "message": message}]
        )
        self.field = field
        self.message = message
