"""The handler's `ctx` now lives in the installable `taskhub` distribution (`taskhub.context`);
this name stays for the worker's child process, which builds one per attempt."""

from taskhub.context import (
    PROGRESS_INTERVAL,
    CheckpointStore,
    NonRetryableError,
    StopFlag,
    TaskCancelled,
    TaskContext,
    TaskPaused,
    TaskStopped,
)

__all__ = [
    "PROGRESS_INTERVAL",
    "CheckpointStore",
    "NonRetryableError",
    "StopFlag",
    "TaskCancelled",
    "TaskContext",
    "TaskPaused",
    "TaskStopped",
]
