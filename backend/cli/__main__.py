"""``python -m backend.cli``: the ``clicktrail`` command."""

from backend.cli import main

main()
