"""``python -m al_bench.report PATH...``: the same as ``al-bench-report``."""

import sys

from al_bench.report.cli import main

sys.exit(main())
