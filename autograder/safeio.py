"""Reading only what was submitted, and writing names that cannot turn into formulas.

A submission is a *regular file* reached through real directories. A symbolic link anywhere in the
part of the path the student controls (for nbgrader's layout: ``submitted/<student>/<assignment>/
<notebook>``) would let a student hand in the instructor's solution, another student's work or a
device that never ends, so :func:`read_submitted` walks that part one directory at a time with
``O_NOFOLLOW`` (``openat``, no check-then-open race) and refuses anything that is not a regular file.

:func:`cell` neutralises what spreadsheets read as a formula (a text cell starting with ``=``,
``+``, ``-``, ``@``, a tab or a carriage return gets a leading ``'``) and drops control characters;
every CSV the grader writes goes through it.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Any

from .errors import UnusableInput

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n", "|", "%")


def _refuse(path: Path, what: str) -> UnusableInput:
    return UnusableInput(f"{path}: {what}; only regular files are graded and it was not read")


def read_submitted(path: str | Path, *, below: str | Path | None = None, limit: int) -> bytes:
    """The bytes of the regular file ``path`` (at most ``limit``, else :class:`UnusableInput`).

    Every component of ``path`` below ``below`` (default: the file's own folder) must be a real
    directory and the last one a regular file: no symbolic link, FIFO, device or socket is opened.
    """
    path = Path(path)
    base = Path(below) if below is not None else path.parent
    try:
        parts = path.relative_to(base).parts
    except ValueError:
        raise UnusableInput(f"{path}: not under {base}") from None
    if not parts or any(p in ("..", ".") for p in parts):
        raise UnusableInput(f"{path}: not a file under {base}")
    try:
        fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise UnusableInput(f"{base}: cannot be read ({exc.strerror})") from None
    try:
        for index, part in enumerate(parts[:-1]):
            try:
                nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            except OSError as exc:
                where = base.joinpath(*parts[: index + 1])
                if exc.errno in (errno.ELOOP, errno.ENOTDIR) and _is_link(part, fd):
                    raise _refuse(path, f"{where} is a symbolic link") from None
                raise UnusableInput(f"{path}: cannot be read ({exc.strerror})") from None
            os.close(fd)
            fd = nxt
        try:
            leaf = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC,
                           dir_fd=fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise _refuse(path, "a symbolic link") from None
            if exc.errno == errno.ENOENT:
                raise UnusableInput(f"{path}: no such file") from None
            raise UnusableInput(f"{path}: cannot be read ({exc.strerror})") from None
    finally:
        os.close(fd)
    try:
        info = os.fstat(leaf)
        if not stat.S_ISREG(info.st_mode):
            kind = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file (a device, FIFO or socket)"
            raise _refuse(path, kind)
        if info.st_size > limit:
            raise UnusableInput(f"{path}: {info.st_size / 2**20:.0f} MiB is larger than the {limit >> 20} MiB limit")
        chunks, total = [], 0
        while True:
            chunk = os.read(leaf, min(1 << 20, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise UnusableInput(f"{path}: larger than the {limit >> 20} MiB limit")
        return b"".join(chunks)
    except OSError as exc:
        raise UnusableInput(f"{path}: cannot be read ({exc.strerror})") from None
    finally:
        os.close(leaf)


def _is_link(name: str, dir_fd: int) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(name, dir_fd=dir_fd).st_mode)
    except OSError:
        return False


def no_links_below(path: str | Path, below: str | Path) -> str | None:
    """None when every component of ``path`` below ``below`` is a real directory or regular file;
    else one line naming the first that is not (a symbolic link, a device...)."""
    path, base = Path(path), Path(below)
    try:
        parts = path.relative_to(base).parts
    except ValueError:
        return f"{path} is not under {base}"
    current = base
    for index, part in enumerate(parts):
        current = current / part
        try:
            mode = os.lstat(current).st_mode
        except OSError as exc:
            return f"{current}: {exc.strerror}"
        if stat.S_ISLNK(mode):
            return f"{current} is a symbolic link"
        last = index == len(parts) - 1
        if not last and not stat.S_ISDIR(mode):
            return f"{current} is not a folder"
        if last and not stat.S_ISREG(mode):
            return f"{current} is not a regular file"
    return None


def cell(value: Any) -> Any:
    """A CSV cell that no spreadsheet evaluates: text starting like a formula gets a leading ``'``;
    control characters (but tab) are replaced by spaces. Numbers, booleans and None pass through."""
    if not isinstance(value, str):
        return value
    text = "".join(ch if ch.isprintable() or ch == "\t" else " " for ch in value)
    if text.startswith(_FORMULA_START):
        text = "'" + text
    return text


def row(values: list[Any]) -> list[Any]:
    return [cell(v) for v in values]
