"""User-facing errors: the CLI turns these into one line on stderr and exit code 2."""


class UserError(Exception):
    """Bad input from the user (unknown task, bad config value, missing/corrupt file...)."""


class ConfigError(UserError):
    """A configuration value or key is invalid."""


class CheckpointError(UserError):
    """A checkpoint is missing, truncated, tampered with or of the wrong kind."""
