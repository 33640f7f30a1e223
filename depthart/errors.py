"""User-facing errors: the CLI prints their message on one line (no traceback) and exits 1."""


class DepthartError(Exception):
    """Something the user can fix: a bad file, a mismatched checkpoint, a missing dependency."""
