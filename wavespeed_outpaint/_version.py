"""The installed package's version, read once from its metadata (pyproject.toml has it)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("wavespeed-outpaint")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"
