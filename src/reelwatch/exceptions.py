"""One exception root; a class per failure a caller handles; the docstring is the message."""

from __future__ import annotations


class ReelwatchError(Exception):
    """reelwatch failed."""

    code = "error"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())

    @property
    def message(self) -> str:
        return str(self)


class ConfigError(ReelwatchError):
    """The configuration is invalid."""

    code = "config_error"


class InvalidInput(ReelwatchError):
    """The request is invalid."""

    code = "invalid_request"


class NotFound(ReelwatchError):
    """No such generation."""

    code = "not_found"


class NotAllowed(ReelwatchError):
    """That action is not allowed in the generation's current status."""

    code = "not_allowed"


class DatabaseUnavailable(ReelwatchError):
    """The database cannot be reached."""

    code = "database_unavailable"


class NoDatabase(ReelwatchError):
    """There is no database yet: nothing has been submitted."""

    code = "no_database"


class SchemaMismatch(ReelwatchError):
    """The database schema is not this version's: run `reelwatch db upgrade`."""

    code = "schema_mismatch"


class LeaseLost(ReelwatchError):
    """Another worker or an admin action took over this generation; the write was dropped."""

    code = "lease_lost"


class ProviderError(ReelwatchError):
    """The video provider answered with an error."""

    code = "provider_error"


class ProviderNotFound(ProviderError):
    """The provider does not know this video (404)."""

    code = "not_found"


class AssetGone(ProviderNotFound):
    """A finished job's file can no longer be fetched (expired or removed): no retry helps."""

    code = "asset_expired"


class ProviderRateLimited(ProviderError):
    """The provider asked us to slow down (429)."""

    code = "rate_limited"

    def __init__(self, message: str | None = None, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ProviderUnavailable(ProviderError):
    """The provider could not answer now (5xx, timeout, connection error); try again later."""

    code = "provider_unavailable"


class ProviderUnreachable(ProviderUnavailable):
    """The request never reached the provider (connection refused, unknown host, connect
    timeout): whatever it asked for was not done."""


class ProviderRejected(ProviderError):
    """The provider refused the request for good (a 4xx other than 404 and 429)."""

    code = "provider_rejected"

    def __init__(
        self, message: str | None = None, *, error_code: str, http_status: int | None
    ) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.http_status = http_status


class Busy(ReelwatchError):
    """A client asked for more than its share (too many running, too many requests)."""

    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
