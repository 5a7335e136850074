"""Test-wide settings: lint as for transformers 4 unless a test says otherwise, whatever is installed; and a
private cfgtune home, so no test reads or appends to the real launch history."""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("CFGLINT_TRANSFORMERS", "4")
os.environ["CFGTUNE_HOME"] = tempfile.mkdtemp(prefix="cfgtune-home-")
