"""The one exception of the data package, so every module can raise it without importing the registry."""


class DatasetError(Exception):
    """Bad dataset settings or files; the message tells the user what to do (the CLI exits 2)."""
