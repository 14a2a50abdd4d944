"""User-facing errors: the CLI prints them as one line (no traceback) and exits non-zero."""


class VlmprobeError(Exception):
    """A problem with the user's input (spec, file, field, option) stated in one line."""


class ModelLoadError(VlmprobeError):
    """A model spec that cannot be resolved or loaded."""


class DataError(VlmprobeError):
    """A dataset spec, manifest, class list or template file that cannot be used."""


class RunDirError(VlmprobeError):
    """A run directory that cannot be (re)used, e.g. holding a different config."""


class LockError(VlmprobeError):
    """A file system that cannot lock files (no flock), stated with its mount and what to do."""
