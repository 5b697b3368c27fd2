"""`python -m benchmarks.reliability` (what `make reliability` runs)."""

import sys

from benchmarks.reliability.run import main

sys.exit(main())
