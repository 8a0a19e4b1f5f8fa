"""``python -m checkpoint_download``: see cli.py."""

import sys


def run(argv=None) -> int:
    try:
        from .cli import main
    except ImportError as exc:
        if exc.name not in ("requests", "tqdm", "yaml"):
            raise
        print(f"error: the Python package {exc.name} is missing. Run `python install.py` (or "
              "`python -m pip install requests tqdm pyyaml`), then try again.", file=sys.stderr)
        return 2
    return main(argv)


if __name__ == "__main__":
    sys.exit(run())
