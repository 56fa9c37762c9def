"""`python -m raftsql ...` is the same as the `raftsql` command."""

import sys

from raftsql.cli import main

sys.exit(main())
