"""Studies: a YAML file of models x datasets x measurements, run as one resumable matrix, and
the report of the paper's tables and figures.

``schema`` (load + validate the file, with line numbers), ``measures`` (the measurement
table), ``plan`` (expand to runs), ``runner`` (execute, reuse, resume), ``collect`` (read a
study directory into tables), ``findings`` (the paper's six findings as numbers), ``figures``
and ``report`` (report.html / report.md).
"""
from .schema import Study, StudyFileError, load_study
from .runner import run_study

__all__ = ["Study", "StudyFileError", "load_study", "run_study", "read_study"]


def read_study(path):
    """A study directory -> its collected tables (``collect.StudyData``)."""
    from .collect import read_study as _read

    return _read(path)
