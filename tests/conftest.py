"""Test-wide settings: a private cfgtune home, so no test reads or appends to the real launch history. (Lint
targets need no setting: they are fixed defaults, never read from the environment.)"""

from __future__ import annotations

import os
import tempfile

os.environ["CFGTUNE_HOME"] = tempfile.mkdtemp(prefix="cfgtune-home-")
