"""One odebench process per run folder: an advisory lock on ``runs/<id>/.lock``.

Two processes appending to the same results.jsonl would each skip the cases the other has not
finished yet and run them twice, and a resume reading the folder while a run still writes it
would drop that run's last line as torn. :class:`RunLock` takes ``fcntl.flock`` on the folder's
``.lock`` file for as long as a run writes; a second taker is refused with
:class:`RunFolderBusy`, which says who holds it. The kernel drops a flock when its holder dies,
``kill -9`` included, so a lock file left behind never blocks anyone: only a live holder does.

The lock is advisory (it binds only odebench) and POSIX-only (``fcntl``); on NFS, flock is
emulated with byte-range locks, which works on modern Linux clients.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from harness.results import RunFolderError

LOCK_FILE = ".lock"


class RunFolderBusy(RunFolderError):
    """Another live process holds the run folder's lock."""


@dataclass(frozen=True)
class LockHolder:
    """Who holds a run folder's lock, as the holder wrote it into the lock file."""

    pid: int | None
    host: str | None
    since: str | None

    def describe(self) -> str:
        if self.pid is None:
            return "holder unknown"
        return f"pid {self.pid} on host {self.host or 'unknown'}, since {self.since or 'unknown'}"


def _read_holder(fd: int) -> LockHolder:
    """What the lock file says; all None when it is empty or unreadable (a holder between
    taking the lock and writing its name, or a file from something else)."""
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode("utf-8"))
    except (OSError, ValueError):
        return LockHolder(None, None, None)
    if not isinstance(info, dict):
        return LockHolder(None, None, None)
    pid, host, since = info.get("pid"), info.get("host"), info.get("since")
    return LockHolder(pid if isinstance(pid, int) and not isinstance(pid, bool) else None,
                      host if isinstance(host, str) else None,
                      since if isinstance(since, str) else None)


class RunLock:
    """Hold ``run_dir/.lock`` exclusively while a run writes the folder (a context manager).

    ``with RunLock(run_dir):`` takes ``flock(LOCK_EX | LOCK_NB)`` or raises
    :class:`RunFolderBusy`; it never waits. The holder writes its pid, host and start time into
    the file for the message a refused process prints. The descriptor is close-on-exec, so a
    subprocess the run starts does not keep the lock alive (a ``fork`` without exec does
    share it, as flock is per open file). Leaving the block unlocks and closes; the file stays.
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> RunLock:
        if self._fd is not None:
            raise RuntimeError(f"this RunLock already holds {self.path}")
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except FileNotFoundError:
            raise RunFolderError(f"run folder {self.run_dir} does not exist; create it before "
                                 "locking it") from None
        except OSError as exc:
            raise RunFolderError(f"cannot open {self.path} ({exc.strerror or exc}): check that "
                                 f"{self.run_dir} is a writable folder") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise RunFolderBusy(
                f"run folder {self.run_dir} is in use by another odebench run "
                f"({holder.describe()}); wait for it to end, or choose another --out") from None
        except BaseException:
            os.close(fd)
            raise
        try:
            since = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
            info = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": since})
            os.ftruncate(fd, 0)
            os.pwrite(fd, (info + "\n").encode("utf-8"), 0)
        except BaseException:
            os.close(fd)  # closing releases the flock
            raise
        self._fd = fd
        return self

    def release(self) -> None:
        """Unlock and close; a no-op when not held. The file is emptied, not removed: removing
        it could let two later processes lock two different files at once (one that opened
        the old file before the removal, one that created a new one after it)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            with contextlib.suppress(OSError):  # the name is a courtesy; the unlock is what counts
                os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
