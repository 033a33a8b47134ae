"""One exception type for every mistake a user can make, so entry points print one clear line."""


class BenchError(Exception):
    """A user-fixable problem: the message names the file or field and says how to fix it."""
