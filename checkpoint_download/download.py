"""Kept for ``python checkpoint_download/download.py llama2``: the same as ``python -m checkpoint_download llama2``.

Run by path, so it puts the project folder (not this one, whose module names could shadow
others) first on the import path.
"""

import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path[0] = str(Path(__file__).resolve().parent.parent)
    from checkpoint_download.__main__ import run
    sys.exit(run())
