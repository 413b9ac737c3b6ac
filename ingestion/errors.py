"""Error hierarchy: every error names what failed, where, and what to do about it."""


class FitLakeError(Exception):
    """Base class; the CLI prints the message and exits non-zero."""

    exit_code = 1


class ConfigError(FitLakeError):
    """A setting is missing or invalid."""

    exit_code = 2


class SourceUnreachable(FitLakeError):
    """A source (database or broker) did not answer after the bounded retries."""

    exit_code = 3


class SchemaDriftError(FitLakeError):
    """A configured table or column is not in the source."""

    exit_code = 4


class LandingError(FitLakeError):
    """The landing zone is in a state the lander will not write over."""

    exit_code = 5


class LandingDiskFull(LandingError):
    """The landing zone's filesystem has no space left."""


class StackError(FitLakeError):
    """The embedded stack could not be started or reached."""

    exit_code = 6
