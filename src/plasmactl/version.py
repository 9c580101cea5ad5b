"""The installed package version, recorded in every audit log."""

from importlib.metadata import PackageNotFoundError, version

try:
    VERSION = version("plasmactl")
except PackageNotFoundError:  # running from a source tree that was never installed
    VERSION = "0+unknown"
