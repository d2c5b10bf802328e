"""Ray job entry point: `python jobs/sweep.py` (embedded default) or
`ray job submit --working-dir . -- python jobs/sweep.py --config jobs/configs/smoke.yaml --out /abs/dir`.

Thin on purpose: parse arguments, call ie_ray. Everything here is callable from Python and tests.
"""
import sys
from pathlib import Path

# Under `ray job submit --working-dir .` the package may not be installed on the cluster: import it from the
# uploaded working directory.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ie_ray.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["sweep", *sys.argv[1:]]))
