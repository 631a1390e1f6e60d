"""Class-name files (darknet ``.names``: one class name per line). Python 3.8, torch-free."""

import os
from typing import List, Union

from ..errors import DataError

PathLike = Union[str, "os.PathLike[str]"]


def load_names(path: PathLike) -> List[str]:
    """Read a class-names file, darknet's ``.names`` format (``data/coco.names``).

    Args:
        path: text file, UTF-8 (a BOM is tolerated), one class name per line; the line index (after
            dropping empty lines) is the class id, as darknet's ``get_labels`` reads it.

    Returns:
        list of class names, each stripped of surrounding whitespace; empty lines are skipped.

    Raises:
        DataError: the file is missing, unreadable, not UTF-8 text, or holds no name.
    """
    spath = os.fspath(path)
    if not os.path.isfile(spath):
        raise DataError("class-names file not found", spath)
    try:
        with open(spath, encoding="utf-8-sig") as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise DataError(f"class-names file is not UTF-8 text ({e.reason})", spath) from None
    except OSError as e:
        raise DataError(f"cannot read class-names file ({e.strerror or e})", spath) from None
    names = [line.strip() for line in text.splitlines()]
    names = [n for n in names if n]
    if not names:
        raise DataError("class-names file holds no class name", spath)
    return names
