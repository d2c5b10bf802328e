"""The reduce stage: readings of MI(block in; block out), one scheduler, typed rows, cached as tasks return.

Where things live:
- `reading.py`: the `Reading` protocol and its registry (config, tables and cache take names from it);
- `smoothed_reading.py`, `entropy_limit_reading.py`, `mine_reading.py`: the three built-in readings;
- `jobs.py`: the estimates a cell needs (`EstimateJob`, `plan_jobs`);
- `layer_states.py`: one layer's macro and micro states joined (`LayerStates`), expanded or as weighted atoms;
- `row.py`: `MIRow`, the mi.parquet schema, built in one place;
- `row_cache.py`: the cache wrapper (look up, fit the rest, store each task's rows as it returns);
- `scheduler.py`: one bounded window of Ray tasks for every reading (`reduce_cell`).
"""
from ie_ray.reduce.jobs import LEVEL_CODES, EstimateJob, plan_jobs
from ie_ray.reduce.reading import (
    Reading,
    TaskResources,
    reading_class,
    reading_names,
    register_reading,
    table_prefixes,
    unregister_reading,
)
from ie_ray.reduce.row import COLUMNS, MIRow, rows_frame

# The built-in readings register themselves on import, in this order (the order of `reading_names()`).
from ie_ray.reduce.smoothed_reading import SmoothedMIReading  # isort: skip
from ie_ray.reduce.entropy_limit_reading import EntropyLimitReading  # isort: skip
from ie_ray.reduce.mine_reading import (  # isort: skip
    ABOVE_CEILING_TOLERANCE_BITS,
    MAX_INTERVAL_BITS,
    MAX_RETRIES,
    MEMORISED_MARGIN_BITS,
    RETRY_FLAGS,
    MineReading,
    mine_row,
    reading_flag,
)

__all__ = [
    "ABOVE_CEILING_TOLERANCE_BITS", "COLUMNS", "LEVEL_CODES", "MAX_INTERVAL_BITS", "MAX_RETRIES",
    "MEMORISED_MARGIN_BITS", "RETRY_FLAGS", "EntropyLimitReading", "EstimateJob", "MIRow", "MineReading", "Reading",
    "SmoothedMIReading", "TaskResources", "mine_row", "plan_jobs", "reading_class", "reading_flag", "reading_names",
    "register_reading", "rows_frame", "table_prefixes", "unregister_reading",
]
