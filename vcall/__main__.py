"""`python -m vcall`: the same as the `vcall` console script."""

from vcall.cli import main

raise SystemExit(main())
