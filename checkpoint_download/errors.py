"""Errors a user can cause or fix; the command line and the app print ``str(error)`` and nothing else."""


class DownloadError(Exception):
    """A download that cannot complete, with one line that says what to do."""


class DownloadCancelled(DownloadError):
    """The user cancelled; the ``.part`` file is kept so that the next run resumes."""
