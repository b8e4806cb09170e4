"""Project exceptions: every message names the file, config key or device at fault."""

from __future__ import annotations


class EdgepruneError(Exception):
    """Base class for errors a user can act on (bad input, bad config, unreachable device)."""


class DataError(EdgepruneError):
    """A dataset file (image, annotation, image set) is missing or malformed."""


class ConfigError(EdgepruneError):
    """A configuration key has a wrong type or an impossible value."""


class TargetError(EdgepruneError):
    """A benchmark target (device) is disabled, unreachable or returned unusable output."""
