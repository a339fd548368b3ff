"""One exception type for bad input, so every command line can print it as a single line."""


class DataError(Exception):
    """Bad input from the user (a file, a folder, a config or an option): say what and where."""
