"""Errors raised by keras_lm.data."""


class DataUnavailableError(RuntimeError):
    """Raised when an embedded dataset cannot be fetched from the package registry.

    The message names the package and carries pip's last error line, so that one
    line tells the user what was being fetched and why it failed.
    """
