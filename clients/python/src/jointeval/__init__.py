"""jointeval for the people who run Inspect: a thin typed client of the API
(`jointeval.client`), an Inspect hook that uploads each task's log (`jointeval.hook`,
loaded by Inspect through the package's entry point) and a command line
(`jointeval-cli`)."""

from .client import ApiError, Client, Retry, Unavailable

__all__ = ["ApiError", "Client", "Retry", "Unavailable"]
