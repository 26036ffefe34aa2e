"""Publishing outputs safely: atomic files, folder locks, staged folders swapped in when complete.

Three guarantees every command that writes relies on (README "Outputs, --force, Ctrl-C, locking"):

* **Atomic files.** A file is written to a temp file beside it (``.NAME.<host>-<pid>-<rand>.tmp``)
  and renamed into place, so a reader sees the old file or the new one, never a torn one. The
  file gets the permissions the umask allows (0666 & ~umask), not ``mkstemp``'s 0600. Temp files
  left by a killed process (its pid is gone on this host) are removed the next time sgan writes
  that output or locks that folder; readers never look at them. A picture of a data file
  (``atoms.png``, ``reconstructions.png``) is a companion in its :class:`AtomicGroup`: the old
  one goes before the data file is renamed in, the new one comes after it.
* **Locked folders.** ``sgan train`` holds an OS lock (``fcntl.flock``) on ``OUT/.sgan.lock`` for
  its whole run, ``sgan sample`` on its output folder: a second process is refused with a message
  naming the holder (pid, host, command, start time). The kernel drops the lock when its holder
  dies (even by kill -9), so a stale lock is simply taken over. On network file systems flock is
  as good as the file system's lock support (NFSv4: works across hosts; without lock support the
  error says so and ``SGAN_NO_LOCK=1`` runs unlocked).
* **Staged folders.** New outputs are built in a staging folder beside ``OUT``
  (``.OUT.sgan-staging-*``, holding its own lock) and swapped in when complete (:class:`Staging`):
  the entries of ``OUT`` that are not replaced are carried over (hard links), then one atomic
  exchange of the two folders (Linux ``renameat2(RENAME_EXCHANGE)``) makes the complete new folder
  ``OUT``. At every moment of a kill -9, ``OUT`` is the old folder or the complete new one; the
  leftover folder beside it is removed by the next sgan process that locks ``OUT``. Where the
  exchange is not available (another OS, a file system without it, ``OUT`` the working folder),
  the swap is a handful of renames inside ``OUT`` guarded by a marker file
  (``OUT/.sgan-publishing``): while it exists, readers refuse the folder as incomplete, and the
  next sgan process that locks the folder finishes the swap.

Length: the three guarantees are one protocol. Temp files, the lock file, staging and trash
folders and the publishing marker are told apart by the names declared at the top; locking a
folder removes what killed writers of the other two left (:func:`remove_stale_temps`,
:func:`remove_staging_beside`, :func:`recover`), a staging folder holds its own lock, and a
swap's plan is replayed under the lock. Split, each part would have to know the others' names
and leftovers; together, every rule about what may be left on disk is read in one place.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from .errors import SganError

LOCK_NAME = ".sgan.lock"
PUBLISHING = ".sgan-publishing"  # marker: a swap of staged outputs is under way (or was interrupted)
STAGING_PREFIX = ".sgan-staging-"
TRASH_PREFIX = ".sgan-trash-"
SIBLING_INFIX = ".sgan-staging-"  # staging folder beside OUT: ".OUT.sgan-staging-<8 chars>"

_HOST_TAG = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]
# temp files: ".NAME.<host tag>-<pid>-<random>.tmp" (sgan since 0.x) or mkstemp's ".NAME.<8 chars>.tmp" (older)
_TMP = re.compile(r"^\.(?P<name>.+)\.(?:(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-[A-Za-z0-9_]+|[A-Za-z0-9_]{8})\.tmp$")
_umask_lock = threading.Lock()


# ----------------------------------------------------------------------------- permissions


def current_umask() -> int:
    """The process umask (read by setting and restoring it, under a lock)."""
    with _umask_lock:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode a plain ``open(path, "w")`` would give a new file: 0666 & ~umask."""
    return 0o666 & ~current_umask()


def folder_mode() -> int:
    return 0o777 & ~current_umask()


# ----------------------------------------------------------------------------- temp files


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def temp_path(path: Path) -> Path:
    """A fresh temp file beside ``path`` (created empty, umask-respecting mode), named so that a
    later run can tell whether its writer is still alive."""
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.{_HOST_TAG}-{os.getpid()}-", suffix=".tmp", dir=path.parent)
    os.close(fd)
    return Path(name)


def is_stale_temp(p: Path) -> bool:
    """An sgan temp file whose writer is gone: a dead pid on this host, or the older mkstemp
    naming (written before pids were recorded) untouched for an hour."""
    m = _TMP.match(p.name)
    if m is None:
        return False
    if m.group("pid") is None:
        try:
            return time.time() - p.stat().st_mtime > 3600
        except OSError:
            return False
    return m.group("host") == _HOST_TAG and not _pid_alive(int(m.group("pid")))


def remove_stale_temps(folder: Path, name: str | None = None) -> int:
    """Delete stale sgan temp files in ``folder`` (only those of output ``name`` when given).
    Returns how many were removed. Readers call it too (the next command that touches a folder
    tidies what a killed writer left); a folder it may not change is left as it is."""
    try:
        if not folder.is_dir():
            return 0
        pattern = f".{glob_escape(name)}.*.tmp" if name is not None else ".*.tmp"
        removed = 0
        for p in folder.glob(pattern):
            m = _TMP.match(p.name)
            if m is not None and (name is None or m.group("name") == name) and is_stale_temp(p):
                p.unlink(missing_ok=True)
                removed += 1
        return removed
    except OSError:  # a read-only folder, or one that went away: nothing to tidy here
        return 0


def glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temp file beside ``path``, then rename it into place.

    A crash or Ctrl-C leaves either the old file or none, never a truncated one; an OS error
    (no permission, disk full) is one SganError naming the file.
    """
    with AtomicGroup() as group:
        group.add(path, write)


class AtomicGroup:
    """Several files written to temp files first, then renamed into place together when the
    block ends. Leaving the block with an exception removes the temp files and changes nothing.

    Data files (``companion=False``, the default) are renamed in in the order added, so the
    first one added — a checkpoint — is never behind the others. Companions (a picture of a
    data file: ``atoms.png``, ``reconstructions.png``) describe the data files of the group,
    so their renames bracket the data files' renames:

    1. every companion already in place is removed;
    2. the data files are renamed in, in the order added;
    3. the companions are renamed in.

    At every moment of a kill -9 a reader therefore finds the old data with its old picture,
    the old data with no picture (after 1), the new data with no picture (after 2), or the
    new data with its new picture: a missing picture is truthful, a picture of other contents
    than the file beside it never exists, and the data file is never missing or torn.
    Renaming the picture in first (as sgan once did) let a kill leave a new picture beside
    the old data. Recording the data's hash in the picture would only let readers that check
    it notice the mismatch; removing the old picture first keeps every reader (an image viewer
    included) truthful. SIGINT and SIGTERM wait until the renames are done; an OS error part
    way leaves one of the states above and is raised as one SganError naming the file.
    """

    def __init__(self) -> None:
        self.pending: list[tuple[Path, Path]] = []
        self.companions: list[tuple[Path, Path]] = []

    def add(self, path: Path, write: Callable[[Path], None], *, companion: bool = False) -> None:
        """Write ``path``'s new contents: ``write(tmp)`` on a temp file beside it, renamed in when
        the block ends. ``companion``: the file is a picture of the group's data files (see the
        class). Raises SganError when the temp file cannot be made or written."""
        path = Path(path)
        try:
            ensure_folder(path.parent)
            tmp = temp_path(path)
        except OSError as exc:
            raise _os_error(exc, path) from None
        (self.companions if companion else self.pending).append((tmp, path))
        try:
            write(tmp)
            os.chmod(tmp, file_mode())  # after writing: some writers (safetensors) replace the file
        except OSError as exc:
            raise _os_error(exc, path) from None

    def __enter__(self) -> AtomicGroup:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None:
            self._discard()
            return
        path = None
        try:
            with _signals_held():  # Ctrl-C waits for the renames (each state between them is truthful, but partial)
                for _, path in self.companions:
                    path.unlink(missing_ok=True)  # 1: no old picture outlives the old data
                for tmp, path in self.pending:  # 2: the data files, in the order added
                    os.replace(tmp, path)
                for tmp, path in self.companions:  # 3: the pictures of the data now in place
                    os.replace(tmp, path)
        except OSError as err:
            self._discard()
            raise _os_error(err, path if path is not None else Path(err.filename or ".")) from None

    def _discard(self) -> None:
        for tmp, _ in (*self.pending, *self.companions):
            tmp.unlink(missing_ok=True)


def _os_error(exc: OSError, path: Path) -> SganError:
    why = exc.strerror or str(exc)
    return SganError(
        f"cannot write {path}: {why}",
        where=str(path),
        fix="choose an output location you can write to (free space, permissions)",
    )


# ----------------------------------------------------------------------------- folders


def _file_in_the_way(folder: Path) -> Path | None:
    """The nearest existing ancestor of ``folder`` (itself included) when it is not a folder."""
    for p in (folder, *folder.parents):
        if p.exists():
            return None if p.is_dir() else p
    return None


def ensure_folder(folder: Path) -> None:
    """``mkdir -p folder``, or one SganError when an existing file is in the way or the folder
    cannot be created."""
    blocker = _file_in_the_way(folder)
    if blocker is not None:
        raise SganError(
            f"cannot create the folder {folder}: {blocker} is a file",
            where=str(folder),
            fix="choose an output path that is not inside a file",
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SganError(
            f"cannot create the folder {folder}: {exc.strerror or exc}",
            where=str(folder),
            fix="choose a folder you can write to with --out",
        ) from None


def check_folder_writable(folder: Path) -> None:
    """Before any work: sgan can create files in ``folder`` (or create it). Probes by creating
    and removing a temp file in the nearest existing folder, so a read-only folder, a read-only
    file system or a full quota is refused up front rather than after the work."""
    blocker = _file_in_the_way(folder)
    if blocker is not None:
        raise SganError(
            f"cannot write into {folder}: {blocker} is a file, not a folder",
            where=str(folder),
            fix="choose an output path that is not inside a file",
        )
    existing = next((p for p in (folder, *folder.parents) if p.exists()), Path("."))
    try:
        with tempfile.TemporaryFile(dir=existing, prefix=".sgan-probe-"):
            pass
    except OSError as exc:
        raise SganError(
            f"cannot write into {existing if existing == folder else folder}: {exc.strerror or exc}",
            where=str(existing),
            fix="choose a folder you can write to with --out (or fix its permissions)",
        ) from None


def check_folder_complete(folder: Path) -> None:
    """Readers: refuse a folder whose outputs are being swapped in (or were, when a process was
    killed in the middle); remove what killed writers left in it and beside it."""
    remove_staging_beside(folder, held=False)
    remove_stale_temps(folder)
    if (folder / PUBLISHING).exists():
        raise SganError(
            f"the folder {folder} is incomplete: sgan was writing new outputs "
            "into it (still running, or killed while swapping them in)",
            where=str(folder),
            fix=(
                "wait for the writing process to finish; if none is running, "
                "any sgan train/sample into that folder completes the swap"
            ),
        )


# ----------------------------------------------------------------------------- locks


def _holder_text(command: str) -> str:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    return json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "command": command, "since": stamp})


def _describe_holder(text: str) -> str:
    try:
        info = json.loads(text)
        return f"pid {info['pid']} on {info['host']}, {info['command']}, since {info['since']}"
    except (ValueError, KeyError, TypeError):
        return "a process that did not say who it is"


class FolderLock:
    """An exclusive ``flock`` on ``folder/.sgan.lock``, held until :meth:`release`."""

    def __init__(self, folder: Path, fd: int | None, created: bool = False) -> None:
        self.folder = folder
        self.fd = fd
        self.created = created  # this process made the lock file (removed again if the command fails)

    def release(self) -> None:
        if self.fd is not None:
            try:
                os.ftruncate(self.fd, 0)
            except OSError:
                pass
            os.close(self.fd)  # closing drops the flock
            self.fd = None


def acquire_lock(folder: Path, command: str) -> FolderLock:
    """Lock ``folder`` (created if needed) for ``command`` or raise SganError naming the holder."""
    try:
        import fcntl
    except ImportError:  # not a POSIX system: no locking
        return FolderLock(folder, None)
    check_folder_writable(folder)
    ensure_folder(folder)
    path = folder / LOCK_NAME
    while True:
        created = False
        try:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
                created = True
            except FileExistsError:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            raise SganError(
                f"cannot create the lock file {path}: {exc.strerror or exc}",
                where=str(folder),
                fix="choose a folder you can write to with --out",
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe_holder(os.pread(fd, 4096, 0).decode(errors="replace"))
            os.close(fd)
            raise SganError(
                f"the folder {folder} is in use by another sgan process ({holder})",
                where=str(folder),
                fix="wait for it to finish or stop it, or choose another --out",
            ) from None
        except OSError as exc:
            os.close(fd)
            if (
                exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)
                and os.environ.get("SGAN_NO_LOCK") == "1"
            ):
                return FolderLock(folder, None)
            raise SganError(
                f"cannot lock {path}: the file system does not support file locks ({exc.strerror or exc})",
                where=str(folder),
                fix=(
                    "write to a local folder, or set SGAN_NO_LOCK=1 to run without "
                    "locking (then make sure no other process writes there)"
                ),
            ) from None
        # the lock file may have been removed (and recreated) between open and flock: retry then
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.pwrite(fd, _holder_text(command).encode(), 0)
    return FolderLock(folder, fd, created)


@contextmanager
def locked_folder(folder: Path, command: str) -> Iterator[FolderLock]:
    """Hold the folder's lock; finish an interrupted swap and remove stale temp files and
    staging folders first (nobody else can be using them while we hold the lock). A folder this
    call created is removed again when the block wrote nothing into it (it failed or stopped
    early); so is a lock file it created when the block fails (a refused ``--resume`` leaves
    the folder as it found it)."""
    created = not folder.exists()
    lock = acquire_lock(folder, command)
    key = _key(folder)
    _HELD[key] = lock
    failed = True
    try:
        recover(folder)
        yield lock
        failed = False
    finally:
        _HELD.pop(key, None)
        if lock.fd is not None and lock.created and (failed or (created and _only_lock_left(lock.folder))):
            # unlinked while still held: a process waiting on it retries on the path (acquire_lock)
            (lock.folder / LOCK_NAME).unlink(missing_ok=True)
        if created and lock.fd is not None:
            try:
                folder.rmdir()  # only when empty
            except OSError:
                pass
        lock.release()


_HELD: dict[str, FolderLock] = {}  # the folders this process has locked (a Staging takes its lock over)


def _key(folder: Path) -> str:
    return os.path.abspath(folder)


def _only_lock_left(folder: Path) -> bool:
    try:
        return [p.name for p in folder.iterdir()] == [LOCK_NAME]
    except OSError:
        return False


# ----------------------------------------------------------------------------- staging and swap


class Staging:
    """A staging folder where new outputs of ``folder`` are built, swapped in by :meth:`publish`.

    Only use it while holding the folder's lock (:func:`locked_folder`). Beside ``folder`` when
    the parent can be written and the folder is not the working folder (the swap is then one
    atomic exchange), else inside it (the marker-guarded renames). Leaving without publishing
    (an error, Ctrl-C) removes the staging folder; a kill -9 leaves it for the next lock holder
    to remove.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.published = False
        self._lock_fd: int | None = None
        self._carried: list[str] = []  # entries of the old folder linked into the staging folder
        ensure_folder(folder)
        self.beside = _may_exchange(folder)
        if self.beside:
            try:
                self.dir = Path(tempfile.mkdtemp(prefix=f".{folder.name}{SIBLING_INFIX}", dir=folder.parent))
                os.chmod(self.dir, folder_mode())
                self._lock_fd = _lock_new_folder(self.dir)
                return
            except OSError:  # the parent cannot be written: stage inside
                if "dir" in vars(self):
                    shutil.rmtree(self.dir, ignore_errors=True)
                self.beside = False
        self.dir = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=folder))
        os.chmod(self.dir, folder_mode())

    def publish(self, remove: Sequence[str], commit: str | None) -> None:
        """Swap the staged outputs in, replacing the old outputs named in ``remove`` (``commit``,
        the file that says the folder is complete, goes last where the swap is several renames)."""
        if self.beside:
            with _signals_held():  # Ctrl-C waits for the exchange and its bookkeeping
                try:
                    _carry_over(self.folder, self.dir, set(remove) | {LOCK_NAME}, self._carried)
                    os.chmod(self.dir, os.stat(self.folder).st_mode & 0o7777)  # the folder keeps its mode
                    exchange(self.dir, self.folder)
                except (OSError, _CannotCarry):
                    self._stage_inside()
                else:
                    self._exchanged()
                    return
        trash = tempfile.mkdtemp(prefix=TRASH_PREFIX, dir=self.folder)
        plan = {
            "staging": self.dir.name,
            "trash": Path(trash).name,
            "remove": list(remove),
            "commit": commit,
            "phase": 1,
        }
        with _signals_held():  # Ctrl-C waits for the few renames of the swap
            _write_plan(self.folder, plan)
            self.published = True  # from here on the staged files belong to the swap (finished by recover)
            _apply(self.folder, plan)

    def _exchanged(self) -> None:
        """After the exchange: the new folder is ``folder`` (its lock is ours: hand it to the
        folder's lock holder), the old one sits at ``self.dir`` and goes."""
        self.published = True
        old = self.dir
        lock = _HELD.get(_key(self.folder))
        if lock is not None and lock.fd is not None:
            os.close(lock.fd)  # the old folder's lock: nobody can reach it by the path any more
            lock.fd, lock.created, self._lock_fd = self._lock_fd, True, None
        shutil.rmtree(old, ignore_errors=True)

    def _stage_inside(self) -> None:
        """The exchange failed (the file system lacks it, or something cannot be carried over):
        move the staged entries into a staging folder inside ``folder`` for the marker swap."""
        inside = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=self.folder))
        os.chmod(inside, folder_mode())
        for p in list(self.dir.iterdir()):
            if p.name == LOCK_NAME or p.name in self._carried:
                continue
            os.replace(p, inside / p.name)
        self._release_own_lock()
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir, self.beside = inside, False

    def _release_own_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def discard(self) -> None:
        if not self.published:
            self._release_own_lock()
            shutil.rmtree(self.dir, ignore_errors=True)
        elif self._lock_fd is not None:  # exchanged without a registered holder: the new folder's lock
            self._release_own_lock()

    def __enter__(self) -> Staging:
        return self

    def __exit__(self, *exc: object) -> None:
        self.discard()


class _CannotCarry(Exception):
    """An entry of the old folder that cannot be carried into the new one (a pipe, a socket)."""


def _carry_over(old: Path, new: Path, replaced: set[str], carried: list[str]) -> None:
    """Give ``new`` every entry of ``old`` that is neither replaced nor staged (their names
    appended to ``carried``): files by hard link (a copy where the file system has none),
    folders entry by entry, symlinks as links."""
    staged = {p.name for p in new.iterdir()}
    for p in old.iterdir():
        if p.name in replaced or p.name in staged or _is_sgan_leftover(p.name):
            continue
        carried.append(p.name)
        _link_entry(p, new / p.name)


def _link_entry(src: Path, dst: Path) -> None:
    import stat

    st = os.lstat(src)
    if stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(src), dst)
    elif stat.S_ISREG(st.st_mode):
        try:
            os.link(src, dst, follow_symlinks=False)
        except OSError:
            shutil.copy2(src, dst, follow_symlinks=False)
    elif stat.S_ISDIR(st.st_mode):
        os.mkdir(dst)
        for p in src.iterdir():
            _link_entry(p, dst / p.name)
        shutil.copystat(src, dst, follow_symlinks=False)
    else:
        raise _CannotCarry(str(src))


def _is_sgan_leftover(name: str) -> bool:
    return name == PUBLISHING or name.startswith(STAGING_PREFIX) or name.startswith(TRASH_PREFIX)


def _lock_new_folder(folder: Path) -> int | None:
    """Create and hold ``folder/.sgan.lock`` of a new staging folder (so that once it is
    exchanged in, the folder is locked by us from its first moment); None without flock."""
    try:
        import fcntl
    except ImportError:
        return None
    fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    os.pwrite(fd, _holder_text("sgan (staging)").encode(), 0)
    return fd


def _may_exchange(folder: Path) -> bool:
    """Whether new outputs of ``folder`` are staged beside it and exchanged in: on Linux, unless
    ``folder`` is (or holds) the working folder, whose processes would be left in the old one,
    or a symlink (the link itself would be swapped)."""
    if _renameat2() is None or folder.is_symlink():  # a link would be swapped for a folder
        return False
    try:
        here, target = Path.cwd().resolve(), folder.resolve()
    except OSError:
        return False
    return here != target and target not in here.parents


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


@functools.lru_cache(maxsize=1)
def _renameat2() -> Callable[..., int] | None:
    """libc's ``renameat2`` (Linux, glibc ≥ 2.28), or None."""
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


def exchange(a: Path, b: Path) -> None:
    """Atomically swap the two paths ``a`` and ``b`` (both must exist): at no moment does
    either name miss or show a mix. Raises OSError where the system or file system cannot."""
    import ctypes

    fn = _renameat2()
    if fn is None:
        raise OSError(errno.ENOSYS, "renameat2 is not available")
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), str(a))


@contextmanager
def _signals_held() -> Iterator[None]:
    """Block SIGINT and SIGTERM for the block; a signal that arrives meanwhile acts after it."""
    held = {signal.SIGINT, signal.SIGTERM}
    try:
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    except (AttributeError, OSError, ValueError):  # not POSIX
        yield
        return
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _write_plan(folder: Path, plan: dict[str, object]) -> None:
    text = json.dumps(plan)
    atomic_write(folder / PUBLISHING, lambda tmp: tmp.write_text(text))


def _apply(folder: Path, plan: dict) -> None:  # type: ignore[type-arg]
    """The swap, idempotent per phase so that an interrupted one can be rolled forward:
    phase 1 moves old outputs to the trash folder, phase 2 moves staged entries in."""
    staging, trash = folder / plan["staging"], folder / plan["trash"]
    if plan["phase"] == 1:
        trash.mkdir(exist_ok=True)
        for name in plan["remove"]:
            p = folder / name
            if p.exists() or p.is_symlink():
                os.replace(p, trash / name)
        plan["phase"] = 2
        _write_plan(folder, plan)
    if staging.is_dir():
        commit = plan.get("commit")
        names = sorted(p.name for p in staging.iterdir() if p.name != commit)
        if commit is not None and (staging / commit).exists():
            names.append(commit)
        for name in names:
            target = folder / name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)  # a folder of the same name that was not listed as old
            os.replace(staging / name, target)
    (folder / PUBLISHING).unlink(missing_ok=True)
    shutil.rmtree(trash, ignore_errors=True)
    shutil.rmtree(staging, ignore_errors=True)


def remove_staging_beside(folder: Path, held: bool) -> None:
    """Remove the staging folders beside ``folder`` that no live process is building (and old
    folders a killed swap left there). ``held``: the caller holds ``folder``'s lock, so none is
    live; otherwise (a reader) one is removed only when its own lock file can be taken, i.e.
    its builder is dead."""
    beside = re.compile(rf"^\.{re.escape(folder.name)}{re.escape(SIBLING_INFIX)}[A-Za-z0-9_]{{8}}$")
    try:
        found = [p for p in folder.parent.iterdir() if beside.match(p.name) and p.is_dir() and not p.is_symlink()]
    except OSError:
        return
    for p in found:
        if held or _abandoned(p):
            shutil.rmtree(p, ignore_errors=True)


def _abandoned(staging: Path) -> bool:
    """A staging folder whose lock file exists and is held by nobody."""
    try:
        import fcntl

        fd = os.open(staging / LOCK_NAME, os.O_RDONLY)
    except (ImportError, OSError):  # no lock file yet (being made), or none to be had: leave it
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def recover(folder: Path) -> None:
    """Under the folder's lock: finish a swap a killed process left half done, then remove
    staging and trash folders (inside the folder and beside it) and temp files nobody is
    writing any more."""
    remove_staging_beside(folder, held=True)
    marker = folder / PUBLISHING
    if marker.exists():
        try:
            plan = json.loads(marker.read_text())
            plan["phase"], plan["remove"], plan["staging"], plan["trash"]
        except (ValueError, KeyError, TypeError, OSError):
            raise SganError(
                f"the folder {folder} holds an unreadable swap record {marker}",
                where=str(folder),
                fix=f"inspect the folder; delete {marker} when its outputs are as you want them",
            ) from None
        _apply(folder, plan)
    for p in folder.iterdir():
        if p.is_dir() and (p.name.startswith(STAGING_PREFIX) or p.name.startswith(TRASH_PREFIX)):
            shutil.rmtree(p, ignore_errors=True)
        elif p.is_dir() and not p.is_symlink():
            remove_stale_temps(p)  # e.g. grids/
    remove_stale_temps(folder)
