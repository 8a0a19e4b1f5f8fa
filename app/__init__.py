"""The PySide6 desktop chat. It talks to ``engine``'s public API only (see engine/__init__.py)."""
