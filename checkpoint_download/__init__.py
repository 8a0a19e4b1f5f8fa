"""Download scripts for the model files (see download.py)."""
