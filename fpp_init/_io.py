"""Files: bounded reads of regular files, writability checks before work, atomic writes.

Every OS error becomes a one-line :class:`~fpp_init.errors.FPPError` that names the path.
Writes go to a temp file in the destination folder, are flushed to disk and renamed over the
destination, so a reader sees the old file or the new one, never a part. Where the platform
allows (Linux ``O_TMPFILE``), the temp file has no name until its data is complete: it is
written unnamed, linked as ``.NAME.<pid>-<random>.tmp`` and renamed, so a process killed while
writing leaves nothing. Elsewhere it is written under that name from the start; a temp file
left by a killed process is then removed by the next write of the same file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import stat
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import constants as const
from .errors import ConfigError, FPPError, OutputError, PromptFileError

__all__ = [
    "default_cache_dir",
    "os_errors",
    "path_stat",
    "read_regular_file",
    "check_readable_file",
    "read_toml",
    "check_writable_file",
    "check_writable_dir",
    "atomic_write_bytes",
    "first_line",
    "pid_alive",
    "os_reason",
    "remove_stale_temps",
    "NESTED_TOO_DEEPLY",
]

_TMP_SUFFIX = ".tmp"
#: What a parser's RecursionError means for a file (the parsers recurse once per nesting level).
NESTED_TOO_DEEPLY = "is nested too deeply to be read (thousands of levels of arrays or tables: not a real file?)"
_MAX_TOML_FILE = 16 * 2**20
_STALE_SECONDS = 24 * 3600


def default_cache_dir() -> Path:
    """``$FPP_INIT_CACHE``, else ``$XDG_CACHE_HOME/fpp-init``, else ``~/.cache/fpp-init``."""
    env = os.environ.get(const.CACHE_ENV)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "fpp-init"


def first_line(exc: BaseException) -> str:
    """The first non-blank line of an exception's message (libraries' messages can run to pages)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def os_reason(exc: OSError | ValueError) -> str:
    """One line saying why an OS call failed, with what to do for the usual causes.

    A ``ValueError`` is a path the OS cannot even be handed: a NUL byte, or characters that
    cannot be encoded for the file system (a lone surrogate such as ``'\\ud800'``)."""
    if isinstance(exc, UnicodeError):
        return "the path holds characters the file system cannot encode (a lone surrogate?)"
    if isinstance(exc, ValueError):
        text = " ".join(str(exc).split())
        return "the path holds a NUL byte" if "null" in text else text
    hints = {
        errno.EACCES: "permission denied",
        errno.EPERM: "operation not permitted",
        errno.EROFS: "read-only file system",
        errno.ENOSPC: "no space left on the device",
        errno.EDQUOT: "disk quota exceeded",
        errno.ENAMETOOLONG: "file name too long",
        errno.EISDIR: "is a directory",
        errno.ENOTDIR: "a parent is not a folder",
        errno.ENOENT: "no such file or folder",
    }
    return hints.get(exc.errno or -1) or " ".join((exc.strerror or str(exc)).split())


@contextlib.contextmanager
def os_errors(error: type[FPPError], message: str) -> Iterator[None]:
    """Turn an ``OSError`` raised inside into ``error("MESSAGE: reason")``, and a ``ValueError`` too
    (inside these blocks only a path raises one: a NUL byte, an unencodable name). An
    :class:`FPPError` raised inside passes unchanged (some are ``OSError`` / ``ValueError``
    subclasses: they must not be wrapped twice)."""
    try:
        yield
    except FPPError:
        raise
    except (OSError, ValueError) as exc:
        raise error(f"{message}: {os_reason(exc)}") from None


def _encodable(path: str | os.PathLike[str], error: type[FPPError], message: str) -> None:
    """Raise ``error("MESSAGE: reason")`` unless the OS can be handed ``path`` at all (no NUL byte,
    every character encodable): checked first, so no later call meets such a path half-way."""
    try:
        if "\0" in os.fsdecode(path):
            raise ValueError("embedded null byte")
        os.fsencode(path)
    except ValueError as exc:
        raise error(f"{message}: {os_reason(exc)}") from None


def path_stat(path: str | os.PathLike[str], *, what: str, error: type[FPPError]) -> os.stat_result | None:
    """``os.stat(path)``, or ``None`` when nothing is there; any other refusal of the OS (permission
    denied, name too long, a parent that is a file, an unencodable name) is ``error`` naming the path.

    Use it instead of ``Path.exists()`` / ``is_file()``, which raise bare ``OSError`` or
    ``UnicodeEncodeError`` for such paths, or (``os.path.exists``) answer "absent" for a file that
    is only unreadable."""
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise error(f"cannot read {what} {os.fspath(path)!r}: {os_reason(exc)}") from None


# -- reading --------------------------------------------------------------------------------------
def _open_regular(path: str | os.PathLike[str], what: str, error: type[FPPError]) -> int:
    """A read-only descriptor of the regular file ``path`` (opened non-blocking: a FIFO never blocks)."""
    shown = os.fspath(path)
    _encodable(path, error, f"cannot read {what} {shown!r}")
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise error(f"{what} not found: {shown!r}") from None
    except (OSError, ValueError) as exc:
        raise error(f"cannot read {what} {shown!r}: {os_reason(exc)}") from None
    try:
        with os_errors(error, f"cannot read {what} {shown!r}"):
            mode = os.fstat(fd).st_mode
            if stat.S_ISDIR(mode):
                raise error(f"{shown!r} is a folder; pass the {what} inside it")
            if not stat.S_ISREG(mode):
                kind = (
                    "a FIFO"
                    if stat.S_ISFIFO(mode)
                    else "a device"
                    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
                    else "not a regular file"
                )
                raise error(f"{shown!r} is {kind}; only regular files are read as a {what}")
    except BaseException:
        os.close(fd)
        raise
    return fd


def check_readable_file(
    path: str | os.PathLike[str], *, what: str = "file", error: type[FPPError] = PromptFileError
) -> Path:
    """Raise ``error`` now unless ``path`` is a regular file this process can open for reading (the
    messages of :func:`read_regular_file`); cheap, so that a mistake is answered before slow imports."""
    os.close(_open_regular(path, what, error))
    return Path(path)


def read_regular_file(
    path: str | os.PathLike[str],
    *,
    limit: int,
    what: str = "file",
    error: type[FPPError] = PromptFileError,
) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes; never blocks, never reads more.

    FIFOs, devices, sockets and folders are refused before anything is read (the file is opened
    non-blocking, then checked with ``fstat``), and reading stops after ``limit + 1`` bytes.
    """
    shown = os.fspath(path)
    fd = _open_regular(path, what, error)
    try:
        with os_errors(error, f"cannot read {what} {shown!r}"):
            chunks, total = [], 0
            while total <= limit:
                chunk = os.read(fd, min(1 << 20, limit + 1 - total))
                if not chunk:
                    break
                chunks.append(chunk)
                total += len(chunk)
    finally:
        os.close(fd)
    if total > limit:
        raise error(f"{shown!r} is larger than {limit} bytes; no {what} is that large (a wrong file?)")
    return b"".join(chunks)


def read_toml(path: str | os.PathLike[str], what: str, param: str) -> dict[str, Any]:
    """A TOML file (at most 16 MiB) as a dict; :class:`ConfigError` naming ``param`` if it is not valid TOML."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    data = read_regular_file(path, limit=_MAX_TOML_FILE, what=what, error=ConfigError)
    try:
        return tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(
            f"{what} {os.fspath(path)!r} is not valid TOML: {' '.join(str(exc).split())}", param=param
        ) from None
    except RecursionError:
        raise ConfigError(f"{what} {os.fspath(path)!r} {NESTED_TOO_DEEPLY}", param=param) from None


# -- checking outputs before work -----------------------------------------------------------------
def _existing_ancestor(path: Path) -> Path:
    p = path.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


#: errno of an ``O_TMPFILE`` open where the kernel or the file system does not support it
_NO_TMPFILE = {errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL}


def _unnamed_file(folder: Path) -> int | None:
    """A write descriptor of a new file in ``folder`` that has no name yet (``O_TMPFILE``), or ``None``
    where that is not supported; the usual ``0666`` minus the umask, as for any new file."""
    flag = getattr(os, "O_TMPFILE", 0)
    if not flag:
        return None
    try:
        return os.open(folder, flag | os.O_WRONLY | getattr(os, "O_CLOEXEC", 0), 0o666)
    except OSError as exc:
        if exc.errno in _NO_TMPFILE:
            return None
        raise


def _probe(folder: Path, shown: str, what: str) -> None:
    """Create (and remove) a file in ``folder``: the only check that root, ACLs and read-only mounts all obey."""
    if not folder.is_dir():
        raise OutputError(f"cannot write {what} {shown!r}: {str(folder)!r} is a file, not a folder")
    try:
        fd = _unnamed_file(folder)  # leaves nothing behind even if this process is killed now
        if fd is not None:
            os.close(fd)
            return
        probe = folder / f".fpp-init-probe.{os.getpid()}-{secrets.token_hex(4)}{_TMP_SUFFIX}"
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise OutputError(f"cannot write {what} {shown!r}: {os_reason(exc)} (in {str(folder)!r})") from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)


def _name_max(folder: Path) -> int:
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):
        return 255


def check_writable_file(path: str | os.PathLike[str], what: str = "output") -> Path:
    """Raise :class:`OutputError` now, before any work, unless a file can be written at ``path``."""
    # (OSError: e.g. stat of a name longer than the file system allows)
    _encodable(path, OutputError, f"cannot write {what} {os.fspath(path)!r}")
    with os_errors(OutputError, f"cannot write {what} {os.fspath(path)!r}"):
        checked = _check_writable_file(Path(path).expanduser(), os.fspath(path), what)
    return checked


def _check_writable_file(p: Path, shown: str, what: str) -> Path:
    if p.is_dir():
        raise OutputError(f"cannot write {what} {shown!r}: it is an existing folder; give a file name")
    if p.exists() and not p.is_file():
        raise OutputError(f"cannot write {what} {shown!r}: it exists and is not a regular file")
    folder = _existing_ancestor(p.parent)
    if len(os.fsencode(p.name)) > _name_max(folder):
        raise OutputError(f"cannot write {what} {shown!r}: the file name is too long for this file system")
    _probe(folder, shown, what)
    return p


def check_writable_dir(path: str | os.PathLike[str], what: str = "output folder") -> Path:
    """Raise :class:`OutputError` unless ``path`` is (or can become) a folder we can write into."""
    _encodable(path, OutputError, f"cannot write {what} {os.fspath(path)!r}")
    with os_errors(OutputError, f"cannot write {what} {os.fspath(path)!r}"):
        checked = _check_writable_dir(Path(path).expanduser(), os.fspath(path), what)
    return checked


def _check_writable_dir(p: Path, shown: str, what: str) -> Path:
    if p.exists() and not p.is_dir():
        raise OutputError(f"cannot write {what} {shown!r}: it exists and is not a folder")
    folder = _existing_ancestor(p)
    if not p.exists() and len(os.fsencode(p.name)) > _name_max(folder):
        raise OutputError(f"cannot write {what} {shown!r}: the folder name is too long for this file system")
    _probe(folder, shown, what)
    return p


# -- writing --------------------------------------------------------------------------------------
def remove_stale_temps(folder: Path, name: str) -> None:
    """Remove temp files of ``name`` left by writers that no longer run (killed with SIGKILL, power loss)."""
    prefix = f".{name[:200]}."
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    now = time.time()
    for entry in entries:
        if not (entry.name.startswith(prefix) and entry.name.endswith(_TMP_SUFFIX)):
            continue
        tag = entry.name[len(prefix) : -len(_TMP_SUFFIX)]
        pid_text = tag.split("-", 1)[0]
        try:
            alive = pid_text.isdigit() and pid_alive(int(pid_text))
            old = now - entry.stat(follow_symlinks=False).st_mtime > _STALE_SECONDS
        except OSError:
            continue
        if not alive or old:
            with contextlib.suppress(OSError):
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path)
                else:
                    os.unlink(entry.path)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` of this machine exists (a zombie counts: it has not been reaped)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, what: str = "output") -> Path:
    """Write ``data`` to ``path`` atomically; the usual file mode (``0666`` minus the umask).

    Creates missing parent folders. Any OS error becomes :class:`OutputError` naming the path;
    nothing is left behind on failure or interruption (SIGINT, or SIGTERM in the CLI).
    """
    p = Path(path).expanduser()
    shown = os.fspath(path)
    _encodable(path, OutputError, f"cannot write {what} {shown!r}")
    tmp = None
    try:
        with os_errors(OutputError, f"cannot write {what} {shown!r}"):
            if p.is_dir():
                raise OutputError(f"cannot write {what} {shown!r}: it is an existing folder; give a file name")
            folder = _existing_ancestor(p.parent)
            if not folder.is_dir():
                raise OutputError(f"cannot write {what} {shown!r}: {str(folder)!r} is a file, not a folder")
            p.parent.mkdir(parents=True, exist_ok=True)
            remove_stale_temps(p.parent, p.name)
            tmp = p.parent / f".{p.name[:200]}.{os.getpid()}-{secrets.token_hex(4)}{_TMP_SUFFIX}"
            if not _write_then_name(p.parent, tmp, data):
                # the kernel applies the umask to 0o666, as for any newly created file
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
                _write_all(fd, data)
            os.replace(tmp, p)
            tmp = None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    return p


def _write_all(fd: int, data: bytes) -> None:
    """Write ``data`` to ``fd`` and flush it to disk; closes ``fd``."""
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _write_then_name(folder: Path, name: Path, data: bytes) -> bool:
    """Write ``data`` into an unnamed file in ``folder``, then give it the name ``name`` (``linkat``
    through ``/proc/self/fd``): the name exists only once the data is complete. ``False`` where the
    platform does not allow it (no ``O_TMPFILE``, no ``/proc``): the caller writes the usual way."""
    fd = _unnamed_file(folder)
    if fd is None:
        return False
    try:
        _write_all(os.dup(fd), data)  # errors here (a full disk) are real: they propagate
        try:
            os.link(f"/proc/self/fd/{fd}", name, follow_symlinks=True)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.EPERM, errno.EACCES, errno.EXDEV, errno.EINVAL, errno.EOPNOTSUPP):
                return False  # the unnamed file goes with its descriptor
            raise
    finally:
        os.close(fd)
    return True
