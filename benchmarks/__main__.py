"""`python -m benchmarks` (what `make bench` and `nimbus bench` run)."""

import sys

from benchmarks.run import main

sys.exit(main())
