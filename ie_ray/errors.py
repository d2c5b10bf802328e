"""Errors a user can act on. Raised before any model is loaded where possible, one line, naming the fix."""


class ConfigError(ValueError):
    """Bad input (config, model name, corpus, layer/position range): the message names the value and the fix."""


class EstimatorError(RuntimeError):
    """An MI estimate could not be produced (NaN, divergence) even after a retry."""


class StorageError(OSError):
    """The run directory or shard cache is out of space: the message names the path, the bytes needed and free,
    and where to make room. Nothing half-written is left for a rerun to trust, so the rerun resumes."""
