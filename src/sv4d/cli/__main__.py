"""``python -m sv4d.cli`` (as ``accelerate launch -m sv4d.cli train CONFIG`` runs it)."""

import sys

from . import main

sys.exit(main())
