"""Does one model's bias band hold on another model's laws? Each calibration's band applied to the other's samples.

Why: before Gemma 3's own calibration (results/validation/smoothed-real-gemma3), Gemma's calibrated verdicts read
SmolLM2's band as an assumption. With both calibrations committed the assumption can be measured: apply the band
fitted on every law of calibration A (its `bias_bands.json`) to the `undersampled` samples of calibration B
(n/K = 0.02-0.5, the band's regime, `ie_ray.bias_band`) and count how often the interval holds B's truth. The
diagonal (a band on its own laws) is in-sample, so it is printed beside the leave-one-law-out coverage that each
calibration's README reports (`band` / `band_bracket` columns of its calibration table), which is the honest
own-model figure.

    python benchmarks/band_transfer.py [--out results/validation/band_transfer.md]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ie_ray.bias_band import BAND_FLAG, band_interval, bands_models, load_bands  # noqa: E402
from ie_ray.brackets import committed_bands_files  # noqa: E402
from ie_ray.validate_smoothed_real import _covered  # noqa: E402

#: Band kind -> the calibration table's column of its leave-one-law-out interval.
LEAVE_ONE_OUT = {"relative": "band", "bracket": "band_bracket"}


def in_regime(table: pd.DataFrame) -> pd.DataFrame:
    """The samples a band answers: flagged `undersampled` (every calibration sample has n/K in the band's range)."""
    return table[table.flag == BAND_FLAG]


def transfer_rows(calibrations: list[Path]) -> pd.DataFrame:
    """Per (bands of A, samples of B, band kind, tau, kind of law): coverage of B's truth and the mean width."""
    rows = []
    for bands_file in calibrations:
        bands = load_bands(bands_file)
        for samples_dir in calibrations:
            table = in_regime(pd.read_parquet(samples_dir.parent / "calibration.parquet"))
            for (kind, tau), band in sorted(bands.items()):
                at = table[np.isclose(table.tau, tau)]
                for law_kind, part in at.groupby("kind", sort=True):
                    low, high = band_interval(part.plugin.to_numpy(), band, part.loo.to_numpy(),
                                              part.plugin_low.to_numpy(), part.plugin_high.to_numpy())
                    truth, se = part.truth_bits.to_numpy(), part.truth_se_bits.to_numpy()
                    own = (part[f"{LEAVE_ONE_OUT[kind]}_low"].to_numpy(), part[f"{LEAVE_ONE_OUT[kind]}_high"].to_numpy())
                    rows.append(dict(
                        band_of=", ".join(bands_models(bands_file)), samples_of=", ".join(bands_models(samples_dir)),
                        band=kind, tau=tau, laws=law_kind, populations=part.population.nunique(), samples=len(part),
                        band_low=round(band.low, 3), band_high=round(band.high, 3),
                        coverage=float(np.mean(_covered(low, high, truth, se))),
                        strict=float(np.mean((low <= truth) & (truth <= high))),
                        leave_one_law_out=float(np.mean(_covered(*own, truth, se))),
                        leave_one_law_out_strict=float(np.mean((own[0] <= truth) & (truth <= own[1]))),
                        mean_width_bits=float(np.mean(high - low))))
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results/validation/band_transfer.md"))
    args = parser.parse_args(argv)
    calibrations = committed_bands_files()
    if len(calibrations) < 2:
        raise SystemExit(f"needs two calibrations (results/validation/smoothed-real*/), found {len(calibrations)}")
    rows = transfer_rows(calibrations)
    text = "\n".join([
        "# Bias bands across models (`python benchmarks/band_transfer.py`)", "",
        __doc__.split("\n\n")[1].replace("\n", " "), "",
        "`coverage`: the band fitted on every law of `band_of`, applied to the samples of `samples_of`;"
        " `leave_one_law_out`: the samples' own calibration with each law left out of its fit (the figure its README"
        " adopts by); both widened by the sample's own 95% interval, and counted with the truth's Monte Carlo error"
        " allowed for, as the calibration tables count (`strict`: without it). 95% is the target, 90% the adoption"
        " bar.", "",
        rows.to_markdown(index=False, floatfmt=".3f"), ""])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
