"""taskhub for the people who use the platform rather than run it: the handler SDK
(`taskhub.sdk`), a Python client (`taskhub.Client`) and the `taskhub` command. Installed with
`pip install .` at the repository's root; the services are not part of this distribution."""

from .client import Client, Page, TaskHandle
from .errors import ApiError, TaskCancelledError, TaskFailedError, WaitTimeout

__version__ = "0.1.0"

__all__ = [
    "ApiError",
    "Client",
    "Page",
    "TaskCancelledError",
    "TaskFailedError",
    "TaskHandle",
    "WaitTimeout",
    "__version__",
]
