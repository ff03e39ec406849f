"""A FUSE file system that passes everything through to a directory but refuses flock with ENOLCK, as NFS
without its lock daemon and some network file systems do (for tests/test_media_faults.py).

    python tests/fuse_without_flock.py ROOT MOUNTPOINT     (root; runs in the foreground until unmounted)
"""

from __future__ import annotations

import errno
import os
import sys

import mfusepy as fuse


class PassThroughWithoutFlock(fuse.Operations):
    """Every operation a run directory needs, done on the real files under ``root``; flock is refused."""

    def __init__(self, root: str) -> None:
        self.root = root

    def _real(self, path: str) -> str:
        return os.path.join(self.root, path.lstrip("/"))

    def getattr(self, path, fh=None):
        status = os.lstat(self._real(path))
        return {
            key: getattr(status, key)
            for key in ("st_mode", "st_nlink", "st_uid", "st_gid", "st_size", "st_atime", "st_mtime", "st_ctime")
        }

    def readdir(self, path, fh):
        return [".", "..", *os.listdir(self._real(path))]

    def access(self, path, amode):
        if not os.access(self._real(path), amode):
            raise fuse.FuseOSError(errno.EACCES)

    def mkdir(self, path, mode):
        os.mkdir(self._real(path), mode)

    def rmdir(self, path):
        os.rmdir(self._real(path))

    def unlink(self, path):
        os.unlink(self._real(path))

    def rename(self, old, new):
        os.replace(self._real(old), self._real(new))

    def chmod(self, path, mode):
        os.chmod(self._real(path), mode)

    def utimens(self, path, times=None):
        os.utime(self._real(path), times)

    def truncate(self, path, length, fh=None):
        os.truncate(self._real(path), length)

    def create(self, path, mode, fi=None):
        return os.open(self._real(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)

    def open(self, path, flags):
        return os.open(self._real(path), flags)

    def read(self, path, size, offset, fh):
        return os.pread(fh, size, offset)

    def write(self, path, data, offset, fh):
        return os.pwrite(fh, data, offset)

    def fsync(self, path, datasync, fh):
        os.fsync(fh)

    def flush(self, path, fh):
        return 0

    def release(self, path, fh):
        os.close(fh)

    def statfs(self, path):
        status = os.statvfs(self._real(path))
        return {
            key: getattr(status, key)
            for key in ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail", "f_files", "f_ffree", "f_namemax")
        }

    def flock(self, path, fh, op):
        raise fuse.FuseOSError(errno.ENOLCK)


def serve(root: str, mountpoint: str) -> None:
    """Mount the pass-through of ``root`` at ``mountpoint``; returns when it is unmounted."""
    fuse.FUSE(PassThroughWithoutFlock(root), mountpoint, foreground=True, nothreads=True, default_permissions=True)


if __name__ == "__main__":
    serve(sys.argv[1], sys.argv[2])
