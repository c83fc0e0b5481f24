"""``python -m sigledger``: the same as the ``sigledger`` command."""

import sys

from sigledger.client.cli.main import main

# Guarded: worker processes started with "spawn" import this module again.
if __name__ == "__main__":
    sys.exit(main())
