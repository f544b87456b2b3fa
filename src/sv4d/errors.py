"""The one exception type that user-caused problems raise."""


class Sv4dError(Exception):
    """An error the user can fix (bad path, wrong checkpoint, bad option).

    The CLI prints its message without a traceback and exits with status 2.
    """
