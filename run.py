"""Subgate's entry point as a script: ``python run.py [COMMAND] ...`` is ``subgate [COMMAND] ...``
(the command line lives in ``server/cli/``; ``python run.py --help`` lists the commands)."""

from __future__ import annotations

import sys

from server.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
