"""Lets the checks import their helpers (deploycheck.py) and each other whatever
pytest's import mode, from any working directory."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
