"""`python -m nalar` is the `nalar` command."""

import sys

from nalar.cli import main

sys.exit(main())
