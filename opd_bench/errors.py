"""User-facing errors: the CLI turns these into one line on stderr and an exit code.

* :class:`UserError` (and its subclasses): bad input, exit 2 -- nothing was run.
* :class:`RunStopped`: a run stopped mid-way (a non-finite loss / gradient / reward / weight, a full or
  read-only disk), exit 3 -- the last good state in the run folder stays resumable.
"""


class UserError(Exception):
    """Bad input from the user (unknown task, bad config value, missing/corrupt file...)."""


class ConfigError(UserError):
    """A configuration value or key is invalid."""


class CheckpointError(UserError):
    """A checkpoint is missing, truncated, tampered with or of the wrong kind."""


class RunStopped(Exception):
    """A run stopped mid-way on purpose (exit code 3); its last good state stays resumable."""

    exit_code = 3


class NonFiniteError(RunStopped):
    """A loss, gradient norm, reward or weight became NaN or infinite."""
