"""Download model files: resumable, from ordered mirrors, verified by size and SHA-256.

    from checkpoint_download import download_model, ProgressEvent, DownloadError
    paths = download_model("llama2", progress=on_event, cancel=cancel_event, pause=pause_event)

The command line is ``python -m checkpoint_download`` (cli.py); the models are in models.yaml.
Importing this package does not import requests or tqdm; calling it does.
"""

from .errors import DownloadCancelled, DownloadError
from .progress import ProgressEvent, State

__all__ = ["download_model", "fetch", "model_status", "list_models", "ProgressEvent", "State",
           "DownloadError", "DownloadCancelled", "RetryPolicy"]


def __getattr__(name):
    """The API is loaded on first use, so importing the package stays cheap for the app's start-up."""
    if name in ("download_model", "fetch", "model_status", "list_models"):
        from . import api
        return getattr(api, name)
    if name == "RetryPolicy":
        from .fetcher import RetryPolicy
        return RetryPolicy
    raise AttributeError(f"module 'checkpoint_download' has no attribute {name!r}")
