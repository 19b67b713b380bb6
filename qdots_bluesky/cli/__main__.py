"""``python -m qdots_bluesky.cli``: the ``qdots`` command."""
import sys

from . import main

sys.exit(main())
