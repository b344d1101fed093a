"""The metric fields of a record (shared/metric_fields.py: core clamps worker reports with the
same rules when it takes a task's metrics summary from its completion)."""

from shared.metric_fields import (  # noqa: F401 - re-exported for monitoring's modules
    BIG,
    FLOAT_FIELDS,
    INT_FIELDS,
    MEASURED,
    NUMERIC,
    RANGES,
    WEEK_MS,
    reported_value,
)
