"""Results files that a rerun adds to: the benchmark scripts that run cell by cell keep the cells they do not redo."""

from __future__ import annotations

import json
import pathlib
from collections.abc import Callable, Mapping


def kept_rows(path: pathlib.Path, settings: Mapping, redone: Callable[[dict], bool]) -> list[dict]:
    """The rows of the results file at `path` that a run with `settings` keeps: none where there is no file, else
    those for which `redone(row)` is false (the run writes them back beside its own).

    A file written with other settings is refused (`SystemExit`, naming the file): every key of `settings` must be in
    it with the same value. A value with a `from_dict` (an estimator) is compared as the object its stored dict reads
    back to, so a file written before a field existed matches a run that uses that field's default.
    """
    if not path.exists():
        return []
    before = json.loads(path.read_text())
    if not all(key in before and _same(before[key], value) for key, value in settings.items()):
        raise SystemExit(f"{path} holds a run with other settings; move it away or run with its settings.")
    return [row for row in before["rows"] if not redone(row)]


def _same(stored, value) -> bool:
    from_dict = getattr(type(value), "from_dict", None)
    return from_dict(stored) == value if from_dict is not None else stored == value
