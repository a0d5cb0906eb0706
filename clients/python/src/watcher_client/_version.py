"""The client version (its own, apart from the server's)."""

__version__ = "0.2.0"
