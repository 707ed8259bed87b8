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

import builtins
import errno
import os
import re
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


# ------------------------------------------------------------------ text that came from student code
_QUOTED = re.compile(r"'[^'\n]*'|\"[^\"\n]*\"|`[^`\n]*`")
_BRACKETED = re.compile(r"\([^()\n]*\)|\[[^\[\]\n]*\]|\{[^{}\n]*\}|<[^<>\n]*>")
_NUMBER = re.compile(r"[-+]?(?:0[xob][0-9a-f_]+|\d[\d_]*(?:\.\d*)?(?:e[-+]?\d+)?|\.\d+(?:e[-+]?\d+)?)", re.I)
_NOT_WORDY = re.compile(r"[^A-Za-z#.,:;!?()\[\]' _-]+")
STUDENT_TEXT_CHARS = 100


def scrub(text: Any, limit: int = STUDENT_TEXT_CHARS) -> str:
    """Student-made text (exception messages, type names) made unable to carry data: one line,
    quoted strings and bracketed reprs replaced by ``…``, every number by ``#``, nothing but
    letters and punctuation, at most ``limit`` characters. The words of the message stay (what
    the student's own ``raise`` says, or torch's "shapes cannot be multiplied (#x# and #x#)")."""
    text = str(text)
    line = next((ln for ln in text.splitlines() if ln.strip()), "")[: 4 * limit]
    line = _QUOTED.sub("'…'", line)
    for _ in range(3):  # nested brackets, innermost first
        line = _BRACKETED.sub(lambda m: m.group(0)[0] + "…" + m.group(0)[-1], line)
    line = _NUMBER.sub("#", line)
    line = _NOT_WORDY.sub(" ", line.replace("…", "...")).replace("...", "…")
    line = " ".join(line.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


_EXCEPTIONS = frozenset(n for n, v in vars(builtins).items() if isinstance(v, type) and issubclass(v, BaseException))
_EXCEPTIONS |= {"OutOfMemoryError", "LinAlgError", "AcceleratorError",  # torch's own
                "Skipped", "Failed", "Exit", "SkipTest"}  # pytest's and unittest's outcomes
_WHERE = re.compile(r"\((cell \d+)(?:, line \d+)?\)\s*$")


def exception_summary(message: Any, labels: Any = ()) -> str:
    """What the grader says about an exception raised by the student's code during official
    grading: its type when it is a built-in or torch exception ("an exception of the notebook's
    own class" otherwise) and the cell it came from when that is one of ``labels``. The
    exception's text is never shown: the student's code chose it, and could have written the hidden
    inputs into it. (The self-check, on public inputs, shows the full message.)"""
    text = str(message).strip()
    match = re.match(r"[A-Za-z_][A-Za-z0-9_.]*", text)
    name = match.group(0).rsplit(".", 1)[-1] if match else ""
    kind = name if name in _EXCEPTIONS else "an exception of the notebook's own class"
    where = _WHERE.search(text.splitlines()[0] if text else "")
    label = where.group(1) if where and where.group(1) in set(labels) else None
    return f"{kind} ({label})" if label else kind


def gradient_note(text: Any) -> str:
    """Why the worker could not take gradients, in the grader's words: the worker's own text is the
    student's to write (a harness can be replaced from a notebook cell), so only its category is kept."""
    text = str(text)
    if "not a tensor" in text:
        return "the output is not a tensor, so no gradient can flow"
    if "shape" in text:
        return "the output has another shape than expected, so gradients cannot be taken"
    if "require grad" in text:
        return "the output does not require grad: the computation was detached from the inputs"
    return "gradients could not be computed"
