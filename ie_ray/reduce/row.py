"""One row of mi.parquet: the typed record every reading returns, built in one place.

The file's schema is this dataclass: column order is field order, and a reading cannot invent a column (or
forget one) without changing it here. Columns that only one reading fills are NaN (floats) or "" (strings) in
the others' rows, so the table stays rectangular and numeric.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import numpy as np
import pandas as pd

from ie_ray.reduce.jobs import EstimateJob

NAN = math.nan
#: The sort order of an MI table.
ROW_ORDER = ["model", "corpus", "shots", "reading", "layer", "position", "level", "seed", "tau"]


@dataclass(frozen=True)
class MIRow:
    """One MI estimate of one reading: identity, value, interval, flag, and the reading's own diagnostics."""

    # identity: which cell, reading and estimate
    model: str
    corpus: str
    shots: int
    reading: str
    estimator: str
    layer: int
    position: int
    level: str
    seed: int
    estimator_seed: int
    attempt: int
    # what the states allow
    ceiling_bits: float
    n_distinct: int
    n_samples: int
    # the reading
    mi_bits: float
    ci_low: float
    ci_high: float
    flag: str
    readout: str
    objective: str
    wall_s: float = 0.0
    bound_cap_bits: float = NAN
    bootstrap_bits: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    # smoothed MI (NaN elsewhere)
    tau: float = NAN
    sigma: float = NAN
    plugin_bits: float = NAN
    half_sample_bits: float = NAN
    loo_bits: float = NAN
    mc_se_bits: float = NAN
    n_draws: float = NAN
    n_atoms: float = NAN
    interval: str = ""  # "bootstrap" (a reported tau), "none" (a secondary tau: estimate and N/2 only), "exact"
    scale_rule: str = ""
    # MINE (NaN elsewhere)
    heldout_bits: float = NAN
    max_train_bits: float = NAN
    last_train_bits: float = NAN
    n_train: float = NAN
    n_heldout: float = NAN
    steps: float = NAN
    # entropy limit (NaN elsewhere)
    n_states: float = NAN
    n_merged: float = NAN
    max_within_prefix_rms: float = NAN

    @classmethod
    def for_job(cls, job: EstimateJob, reading: str, *, mi_bits: float, flag: str = "ok",
                ci_low: float | None = None, ci_high: float | None = None, readout: str | None = None,
                objective: str | None = None, estimator: str | None = None, attempt: int = 0,
                ceiling_bits: float | None = None, **values: Any) -> MIRow:
        """The row of `job` under `reading`: the job's identity and ceiling, then the reading's values.
        Cell columns (model, corpus, shots) are filled by the scheduler (`in_cell`): a reading knows its layer,
        not its cell."""
        return cls(model="", corpus="", shots=0, reading=reading, estimator=estimator or reading,
                   layer=job.layer, position=job.position, level=job.level, seed=job.seed,
                   estimator_seed=job.seed_for_attempt(attempt), attempt=attempt,
                   ceiling_bits=float(job.ceiling_bits if ceiling_bits is None else ceiling_bits),
                   n_distinct=job.n_distinct, n_samples=job.n_samples, mi_bits=float(mi_bits),
                   ci_low=float(mi_bits if ci_low is None else ci_low),
                   ci_high=float(mi_bits if ci_high is None else ci_high), flag=flag,
                   readout=readout or reading, objective=objective or reading, **values)

    def in_cell(self, model: str, corpus: str, shots: int) -> MIRow:
        return replace(self, model=model, corpus=corpus, shots=int(shots))

    def to_record(self) -> dict[str, Any]:
        """JSON-able mapping (floats round-trip exactly through `repr`; the bootstrap as a list)."""
        record = asdict(self)
        record["bootstrap_bits"] = np.asarray(self.bootstrap_bits, dtype=np.float64).tolist()
        return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in record.items()}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> MIRow:
        """Inverse of `to_record`; a record with unknown or missing columns is not ours: KeyError/TypeError."""
        values = dict(record)
        values["bootstrap_bits"] = np.asarray(values.get("bootstrap_bits", []), dtype=np.float64)
        return cls(**values)


COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(MIRow))


def rows_frame(rows: list[MIRow]) -> pd.DataFrame:
    """The tidy MI table of `rows`, in the schema's column order, sorted by cell, reading and estimate."""
    if not rows:
        return pd.DataFrame(columns=list(COLUMNS))
    frame = pd.DataFrame([{f: getattr(r, f) for f in COLUMNS} for r in rows], columns=list(COLUMNS))
    return frame.sort_values(ROW_ORDER, na_position="first", kind="stable").reset_index(drop=True)
