"""The output folder's life: refuse unusable paths, lock ``OUT``, build in a temporary sibling, swap it in.

``staged(OUT, overwrite)`` holds ``.OUT.lock`` (``flock``, released by the kernel when the build dies, even by
``kill -9``) for the whole build, so a second build into the same folder fails at once naming the first one's
pid instead of racing it. Under the lock no other live build can own a ``.OUT.<pid>-<hex>.partial`` or
``.OUT.old-*`` folder, so any found are a dead build's debris: removed, or, when a build died between setting
the previous ``OUT`` aside and moving its own in (the two-rename fallback), the previous folder is put back.
The finished folder replaces ``OUT`` in one atomic ``renameat2(RENAME_EXCHANGE)`` where the filesystem allows
it: at no instant is ``OUT`` missing or half-written.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

from yamlllm_export.errors import BuildError, YamlllmError

try:
    import fcntl
except ImportError:  # Windows: no flock; builds into one folder are then not serialised
    fcntl = None  # type: ignore[assignment]

# errnos of a write the machine refused: the build's fault is the disk, a quota, a file-size limit or a mode
WRITE_ERRNOS = {errno.ENOSPC: "no space left on the device", errno.EFBIG: "file too large (a file-size limit, ulimit -f?)",
                errno.EDQUOT: "disk quota exceeded", errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
                errno.EPERM: "operation not permitted"}  # fmt: skip


def prepare_out_dir(out_dir: Path, overwrite: bool) -> None:
    """Refuse unusable output paths before any work starts."""
    if out_dir.exists() and not out_dir.is_dir():
        raise BuildError(f"{out_dir}: exists and is not a directory")
    if out_dir.exists() and not overwrite:
        raise BuildError(f"{out_dir}: output folder exists; pass --overwrite to replace it")
    for parent in out_dir.parents:
        if parent.exists():
            if not parent.is_dir():
                raise BuildError(f"{out_dir}: parent {parent} is not a directory")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise BuildError(f"{out_dir}: cannot write into {parent} (permission denied); nothing was written")
            break


def write_error(out_dir: Path, err: BaseException) -> BuildError | None:
    """The one-line error for a write the machine refused (``err`` or an error it wraps), else None."""
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in WRITE_ERRNOS and _ours(seen, out_dir):
            where = f" ({Path(seen.filename).name})" if seen.filename else ""
            return BuildError(f"{out_dir}: cannot write the build: {WRITE_ERRNOS[seen.errno]}{where}; nothing was written")
        if isinstance(seen, OSError) and seen.errno is None:  # numpy's tofile drops the errno ("problem writing element")
            said = " ".join(str(seen).split()) or type(seen).__name__
            return BuildError(f"{out_dir}: cannot write the build ({said}: a full disk or a file-size limit?); nothing was written")
        seen = seen.__cause__ or seen.__context__
    return None


def _ours(err: OSError, out_dir: Path) -> bool:
    """A refused write of the build, not a refused read elsewhere (a weights file we may not open)."""
    if err.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT) or not err.filename:
        return True
    return Path(os.path.abspath(err.filename)).is_relative_to(os.path.abspath(out_dir.parent))


@contextlib.contextmanager
def staged(out_dir: Path, overwrite: bool) -> Iterator[Path]:
    """Yield an empty temporary sibling of ``out_dir`` to build in; on a normal exit it replaces ``out_dir``,
    on any error (``KeyboardInterrupt`` too) it is removed. ``BuildError`` when another build holds the lock."""
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise write_error(out_dir, err) or err from None
    with _locked(out_dir):
        clear_debris(out_dir)
        prepare_out_dir(out_dir, overwrite)  # again, under the lock: a build that finished meanwhile counts
        tmp = _make_tmp(out_dir)
        try:
            yield tmp
            move_into_place(tmp, out_dir)
        except BaseException as err:
            shutil.rmtree(tmp, ignore_errors=True)
            refused = write_error(out_dir, err) if isinstance(err, Exception) and not isinstance(err, YamlllmError) else None
            if refused is not None:
                raise refused from err
            raise


@contextlib.contextmanager
def _locked(out_dir: Path) -> Iterator[None]:
    if fcntl is None:
        yield
        return
    path = out_dir.with_name(f".{out_dir.name}.lock")
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise write_error(out_dir, err) or err from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.read(fd, 32).decode(errors="replace").strip()
            os.close(fd)
            who = f"another build (pid {owner})" if owner.isdigit() else "another build"
            raise BuildError(f"{out_dir}: {who} is writing this folder; wait for it to finish or choose another -o") from None
        with contextlib.suppress(FileNotFoundError):
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                break  # still the file at that name (a finishing build may have unlinked the one we opened)
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        path.unlink(missing_ok=True)  # while still holding it: a waiting opener sees the inode change and retries
        os.close(fd)


def _debris(out_dir: Path) -> re.Pattern[str]:
    """Temporary folders of builds into ``out_dir`` (this tool's ``<pid>-<hex>`` and older ``mkdtemp`` names);
    ``out.v2``'s folders never match ``out``'s pattern."""
    name = re.escape(out_dir.name)
    partial = rf"\.{name}\.(?:\d+-[0-9a-f]{{8}}|[a-z0-9_]{{8}})\.partial"
    return re.compile(rf"^(?:{partial}|\.{name}\.old-{partial})$")


def clear_debris(out_dir: Path) -> None:
    """Remove dead builds' temporary folders beside ``out_dir`` (call with the lock held); a previous build
    set aside by a build that died before its own folder was in place goes back to ``out_dir``."""
    pattern = _debris(out_dir)
    found = sorted(p for p in out_dir.parent.iterdir() if pattern.match(p.name))
    for path in found:
        if path.name.startswith(f".{out_dir.name}.old-") and not out_dir.exists():
            path.rename(out_dir)
        else:
            shutil.rmtree(path, ignore_errors=True)


def _make_tmp(out_dir: Path) -> Path:
    while True:
        tmp = out_dir.with_name(f".{out_dir.name}.{os.getpid()}-{secrets.token_hex(4)}.partial")
        try:
            tmp.mkdir(mode=0o755)  # the finished folder should read like any other
        except FileExistsError:
            continue
        except OSError as err:
            raise write_error(out_dir, err) or err from None
        return tmp


def _exchange(a: Path, b: Path) -> None:
    """Swap two paths atomically (Linux ``renameat2(RENAME_EXCHANGE)``); ``OSError`` where unsupported."""
    libc = ctypes.CDLL(None, use_errno=True)
    if not hasattr(libc, "renameat2"):
        raise OSError(errno.ENOSYS, "renameat2 is not available")
    at_fdcwd, rename_exchange = -100, 2
    if libc.renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def move_into_place(tmp: Path, out_dir: Path) -> None:
    """Swap the finished folder in: atomically where the filesystem can, else by setting the previous folder
    aside and putting it back if the second rename fails, so the user keeps either the old build or the new one."""
    if not out_dir.exists():
        _rename(tmp, out_dir, kept="")
        return
    try:
        _exchange(tmp, out_dir)
    except OSError as err:
        if err.errno not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise BuildError(
                f"{out_dir}: cannot move the finished build into place ({err.strerror or err}); the previous folder is unchanged"
            ) from err
    else:
        shutil.rmtree(tmp, ignore_errors=True)  # now the previous build
        return
    old = out_dir.with_name(f".{out_dir.name}.old-{tmp.name}")
    out_dir.rename(old)
    try:
        _rename(tmp, out_dir, kept="; the previous folder is unchanged")
    except BuildError:
        old.rename(out_dir)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _rename(src: Path, dst: Path, kept: str) -> None:
    try:
        src.rename(dst)
    except OSError as err:
        raise BuildError(f"{dst}: cannot move the finished build into place ({err.strerror or err}){kept}") from err
