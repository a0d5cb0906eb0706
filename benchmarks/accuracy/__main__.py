"""`python -m benchmarks.accuracy`: see `benchmarks.accuracy`."""

from benchmarks.accuracy.run import main

raise SystemExit(main())
