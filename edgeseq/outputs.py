"""Where a command's reports go: the folder asked for, else the default, else a stated fallback.

Nothing measured is lost to an unwritable location: an explicit destination is checked before any
measuring starts (and refused in one line), and a default one that cannot be written (a bundle on a
read-only mount) gives way to a fallback folder, with a note saying where the reports went.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Optional, Tuple

from edgeseq.errors import OutputError

FALLBACK = "edgeseq-reports"


def writable(folder: Path) -> Optional[str]:
    """None when files can be written in ``folder``, else why not. Folders it had to create for the
    probe are removed again, so that asking leaves no trace."""
    folder = Path(folder)
    created = [p for p in (folder, *folder.parents) if not p.exists()]
    try:
        if folder.exists() and not folder.is_dir():
            return "it is a file, not a folder"
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".edgeseq-probe-", dir=folder)
        try:
            os.write(fd, b"x" * 4096)  # a full disk refuses data, not always the empty file
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as exc:
        return exc.strerror or str(exc)
    finally:
        for made in created:  # deepest first
            try:
                made.rmdir()
            except OSError:
                break
    return None


def require_writable(folder: Path) -> Path:
    """``folder``, once files can be written there; else one :class:`OutputError` line saying why not."""
    why = writable(Path(folder))
    if why:
        raise OutputError(f"cannot write reports to {folder} ({why})")
    return Path(folder)


def report_dir(requested: Optional[Path], default: Path, label: str) -> Tuple[Path, Optional[str]]:
    """(folder, note): ``requested`` when given (refused when unwritable), else ``default``, else
    ``./edgeseq-reports/<label>``, else the same under the system's temporary folder."""
    if requested is not None:
        return require_writable(requested), None
    why = writable(default)
    if why is None:
        return default, None
    for base in (Path.cwd(), Path(tempfile.gettempdir())):
        fallback = base / FALLBACK / label
        if writable(fallback) is None:
            return fallback, f"{default} is not writable ({why}); reports go to {fallback} instead"
    raise OutputError(f"cannot write reports to {default} ({why}), nor to a fallback folder")
