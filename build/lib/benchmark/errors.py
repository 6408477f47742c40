"""User-facing errors: one clear line naming the thing and the fix, never a traceback."""


class XdkdError(Exception):
    """An error a person can act on; the CLI prints its message on one line and exits 2."""
