"""``python -m invariants``: see `invariants.cli`."""

import sys

from invariants.cli import main

if __name__ == "__main__":
    sys.exit(main())
