"""`python -m vggt`: the `vggt` command."""

import sys

from vggt.cli import main

if __name__ == "__main__":
    sys.exit(main())
