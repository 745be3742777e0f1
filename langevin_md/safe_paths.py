"""Writing files without writing anywhere else: the one helper every command writes through.

A file a command writes (a run folder's log, a report, an exported trajectory, a trained
model, a comparison table) is a path that someone else may have prepared: a symbolic link
planted at the name points the write at a file outside the folder, a FIFO makes ``open``
wait forever for a reader, a device node swallows or corrupts the data. Every writer in the
package therefore goes through these functions, which

* refuse an existing entry that is a symbolic link or not a regular file, with an error
  naming it (:class:`UnsafePathError`), before anything is opened;
* open with ``O_NOFOLLOW`` (a link planted between the check and the open still fails) and
  ``O_NONBLOCK`` (a FIFO cannot block the open; it is refused by ``fstat`` right after);
* create temporary files with ``O_EXCL`` in the target's own folder and ``rename`` them over
  the target, so a reader sees the old file or the new one, and a rename replaces a link
  instead of following it;
* create folders one component at a time, refusing a symbolic link at any component below
  the folder the caller owns (``inside``).

Used by every floor (like :mod:`langevin_md.errors`): it imports nothing from the package.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import tempfile
from pathlib import Path
from typing import Callable, Optional

__all__ = ["UnsafePathError", "check_target", "open_fd", "open_for_write", "atomic_write", "write_via_temp",
           "make_dirs", "fsync_dir"]


class UnsafePathError(OSError):
    """A path a command would write is a symbolic link, a FIFO, a device or a socket (or
    lies under a symbolic link inside a folder the command owns)."""

    def __init__(self, message: str):
        super().__init__(errno.ELOOP, message)
        self.message = message

    def __str__(self) -> str:
        return self.message


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISDIR, "a folder"), (stat.S_ISREG, "a regular file")):
        if test(mode):
            return name
    return "not a regular file"


def check_target(path) -> None:
    """Refuse ``path`` if it exists and is a symbolic link or anything but a regular file.

    Raises
    ------
    UnsafePathError
        Naming the path, what it is and what to do.
    """
    path = Path(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        raise UnsafePathError(f"{path} is a symbolic link (to {os.readlink(path)!r}); refusing to write "
                              "through it, which would change a file elsewhere. Remove the link or "
                              "choose another output path")
    if not stat.S_ISREG(st.st_mode):
        raise UnsafePathError(f"{path} is {_kind(st.st_mode)}, not a regular file; refusing to write to "
                              "it. Remove it or choose another output path")


def open_fd(path, flags: int) -> int:
    """``os.open(path, flags)`` for a regular file only: never through a symbolic link, never
    blocking on a FIFO, never truncating anything but a regular file.

    Parameters
    ----------
    path : str or PathLike
    flags : int
        ``os.O_*`` flags (``O_CREAT``, ``O_TRUNC``, ``O_APPEND``, ``O_RDWR`` ...).

    Returns
    -------
    int
        A blocking file descriptor.
    """
    path = Path(path)
    check_target(path)
    truncate = bool(flags & os.O_TRUNC)
    try:
        fd = os.open(path, (flags & ~os.O_TRUNC) | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENXIO):  # a link or FIFO planted since the check
            check_target(path)
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafePathError(f"{path} is {_kind(st.st_mode)}, not a regular file; refusing to write to it")
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        if truncate:
            os.ftruncate(fd, 0)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_for_write(path, mode: str = "w", encoding: Optional[str] = "utf-8", newline: Optional[str] = None):
    """Open a regular file for writing (``"w"``, ``"wb"``, ``"a"``, ``"ab"``), never through a
    symbolic link and never a FIFO or device.

    The file is created when missing; ``"w"`` truncates it only after it was checked to be a
    regular file.

    Returns
    -------
    file object
    """
    if mode not in ("w", "wb", "a", "ab"):
        raise ValueError(f"mode must be 'w', 'wb', 'a' or 'ab', got {mode!r}")
    fd = open_fd(path, os.O_WRONLY | os.O_CREAT | (os.O_APPEND if mode.startswith("a") else os.O_TRUNC))
    if "b" in mode:
        return os.fdopen(fd, mode)
    return os.fdopen(fd, mode, encoding=encoding, newline=newline)


def fsync_dir(path) -> None:
    """fsync a folder so a rename or new file inside it survives a power cut."""
    fd = os.open(os.fspath(path), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_via_temp(path, write: Callable[[str], object]) -> Path:
    """Have ``write(tmp)`` write a new file under a fresh temporary name in ``path``'s folder,
    then rename it over ``path``.

    For libraries that write by file name (matplotlib, mdtraj, h5py, safetensors, ASE), and
    outputs that need no fsync (reports, exports; :func:`atomic_write` is the durable one): the
    temporary name is created with ``O_EXCL | O_NOFOLLOW`` and keeps ``path``'s suffix (some
    writers choose the format from it). ``path`` is refused first if it is a link or not a
    regular file.

    Parameters
    ----------
    path : str or PathLike
    write : callable
        Called with the temporary file's name (str); must write the whole file there.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    path = Path(path)
    check_target(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent or ".")
    os.close(fd)
    try:
        write(tmp)
        st = os.lstat(tmp)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafePathError(f"the temporary file {tmp} was replaced by {_kind(st.st_mode)} while it "
                                  "was written; refusing to use it")
        # mkstemp makes the file private (0600); the result gets the permissions a plain open()
        # would have given it (0666 less the umask).
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
        check_target(path)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def atomic_write(path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that ``path`` is always either the old or the new file
    (temporary file, fsync, rename, fsync of the folder). A link at ``path`` is replaced,
    never followed; on any error ``path`` is untouched."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    if os.path.lexists(tmp):  # left by a killed writer with our pid; unlink never follows a link
        os.unlink(tmp)
    try:
        # O_EXCL | O_NOFOLLOW: a file or symlink planted at the temporary name is never written
        # through. The rename then replaces ``path`` itself, even when ``path`` is a symlink.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise
    fsync_dir(path.parent)


def make_dirs(path, inside=None) -> Path:
    """Create the folder ``path`` (and missing parents) and check it is a real folder.

    Parameters
    ----------
    path : str or PathLike
    inside : str or PathLike, optional
        A folder the caller owns (a run folder) that ``path`` lies in: every component of
        ``path`` below it must be a real folder, not a symbolic link. Without it only
        ``path`` itself is checked (components above are the user's choice of location).

    Raises
    ------
    UnsafePathError
        A component is a symbolic link or not a folder.
    """
    path = Path(path)
    if inside is not None:
        inside = Path(inside)
        try:
            parts = path.relative_to(inside).parts
        except ValueError:
            raise ValueError(f"{path} is not inside {inside}") from None
        current = inside
        for part in parts:
            current = current / part
            _make_one(current)
        return path
    if not os.path.lexists(path):
        path.parent.mkdir(parents=True, exist_ok=True)
    _make_one(path)
    return path


def _make_one(path: Path) -> None:
    try:
        os.mkdir(path)
        return
    except FileExistsError:
        pass
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        raise UnsafePathError(f"{path} is a symbolic link (to {os.readlink(path)!r}); refusing to write "
                              "into it, which would create files elsewhere. Remove the link or choose "
                              "another output folder")
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafePathError(f"{path} exists and is {_kind(st.st_mode)}, not a folder")
