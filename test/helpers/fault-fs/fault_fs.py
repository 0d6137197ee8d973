#!/usr/bin/python3
"""A fault-injecting FUSE filesystem for the tests: a passthrough of one backing image file.

The mount point shows two files:
  disk.img  the backing image, read and written through this process (put a loop device on it with
            `losetup --direct-io=off`); every request obeys the faults set below.
  control   write `key=value` lines to change the faults at run time; read it for the state and
            the counters, as JSON.

Faults (control keys; `clear` resets them all):
  write_eio_from=OFFSET  every write that reaches OFFSET or beyond fails with EIO (`off` to lift)
  read_eio=START-END     every read that touches bytes [START, END) fails with EIO (`off` to lift)
  unplugged=1            every read, write and flush fails with EIO, as on a stick pulled out
  read_bps=N, write_bps=N  bandwidth limits in bytes per second (0: unlimited), e.g. 40000000
                         for a 40 MB/s USB stick

The mount uses direct_io, so the kernel keeps no page cache of disk.img: every I/O of the loop
device reaches this process and its faults. Run it with Debian's /usr/bin/python3 (python3-fusepy
installs the module as `fusepy`):

  /usr/bin/python3 fault_fs.py BACKING_IMAGE MOUNT_POINT [key=value ...]

It stays in the foreground and exits once the mount point is unmounted.
"""
import errno
import json
import os
import stat
import sys
import threading
import time

from fusepy import FUSE, FuseOSError, Operations


class Throttle:
    """A shared bandwidth budget: each request waits its turn at `bps` bytes per second."""

    def __init__(self):
        self.lock = threading.Lock()
        self.bps = 0
        self.next_free = 0.0

    def take(self, size):
        with self.lock:
            if self.bps <= 0:
                return
            now = time.monotonic()
            # Up to 0.1 s of unused budget carries over, so the time each request spends in the
            # kernel and in Python does not come off the rate a serial reader or writer sees.
            self.next_free = max(self.next_free, now - 0.1) + size / self.bps
            wait = self.next_free - now
        if wait > 0:
            time.sleep(wait)


class FaultFs(Operations):
    def __init__(self, backing):
        self.backing = backing
        self.fd = os.open(backing, os.O_RDWR)
        self.mutex = threading.Lock()
        self.reads = Throttle()
        self.writes = Throttle()
        self.clear()
        self.counters = {'bytes_read': 0, 'bytes_written': 0, 'max_write_end': 0, 'last_write_end': 0, 'failed_reads': 0, 'failed_writes': 0}
        self.started = time.time()

    # --- control -------------------------------------------------------------------------------
    def clear(self):
        self.write_eio_from = None
        self.read_eio = None
        self.unplugged = False
        self.reads.bps = 0
        self.writes.bps = 0

    def apply(self, text):
        for word in text.replace(',', ' ').split():
            key, _, value = word.partition('=')
            off = value in ('', 'off', 'none')
            if key == 'clear':
                self.clear()
            elif key == 'write_eio_from':
                self.write_eio_from = None if off else int(value)
            elif key == 'read_eio':
                if off:
                    self.read_eio = None
                else:
                    start, _, end = value.partition('-')
                    self.read_eio = (int(start), int(end))
            elif key == 'unplugged':
                self.unplugged = value in ('1', 'true', 'yes')
            elif key == 'read_bps':
                self.reads.bps = int(value)
            elif key == 'write_bps':
                self.writes.bps = int(value)
            else:
                raise FuseOSError(errno.EINVAL)

    def state(self):
        with self.mutex:
            return json.dumps({
                'write_eio_from': self.write_eio_from,
                'read_eio': list(self.read_eio) if self.read_eio else None,
                'unplugged': self.unplugged,
                'read_bps': self.reads.bps,
                'write_bps': self.writes.bps,
                **self.counters,
            }).encode() + b'\n'

    # --- filesystem ----------------------------------------------------------------------------
    def getattr(self, path, fh=None):
        now = self.started
        if path == '/':
            return {'st_mode': stat.S_IFDIR | 0o755, 'st_nlink': 2, 'st_atime': now, 'st_mtime': now, 'st_ctime': now}
        if path == '/disk.img':
            size = os.fstat(self.fd).st_size
            return {'st_mode': stat.S_IFREG | 0o600, 'st_nlink': 1, 'st_size': size, 'st_atime': now, 'st_mtime': now, 'st_ctime': now, 'st_blocks': (size + 511) // 512}
        if path == '/control':
            return {'st_mode': stat.S_IFREG | 0o600, 'st_nlink': 1, 'st_size': 0, 'st_atime': now, 'st_mtime': now, 'st_ctime': now}
        raise FuseOSError(errno.ENOENT)

    def readdir(self, path, fh):
        return ['.', '..', 'disk.img', 'control']

    def open(self, path, flags):
        if path not in ('/disk.img', '/control'):
            raise FuseOSError(errno.ENOENT)
        return 0

    def truncate(self, path, length, fh=None):
        if path != '/control':
            raise FuseOSError(errno.EPERM)

    def read(self, path, size, offset, fh):
        if path == '/control':
            return self.state()[offset:offset + size]
        with self.mutex:
            fail = self.unplugged or (self.read_eio is not None and offset < self.read_eio[1] and offset + size > self.read_eio[0])
            if fail:
                self.counters['failed_reads'] += 1
        if fail:
            raise FuseOSError(errno.EIO)
        self.reads.take(size)
        data = os.pread(self.fd, size, offset)
        with self.mutex:
            self.counters['bytes_read'] += len(data)
        return data

    def write(self, path, data, offset, fh):
        if path == '/control':
            with self.mutex:
                self.apply(data.decode())
            return len(data)
        with self.mutex:
            fail = self.unplugged or (self.write_eio_from is not None and offset + len(data) > self.write_eio_from)
            if fail:
                self.counters['failed_writes'] += 1
        if fail:
            raise FuseOSError(errno.EIO)
        self.writes.take(len(data))
        written = os.pwrite(self.fd, data, offset)
        with self.mutex:
            self.counters['bytes_written'] += written
            self.counters['max_write_end'] = max(self.counters['max_write_end'], offset + written)
            self.counters['last_write_end'] = offset + written
        return written

    def fsync(self, path, datasync, fh):
        if path == '/disk.img':
            if self.unplugged:
                raise FuseOSError(errno.EIO)
            os.fdatasync(self.fd)
        return 0

    def flush(self, path, fh):
        return 0

    def release(self, path, fh):
        return 0


def main():
    if len(sys.argv) < 3:
        sys.stderr.write(__doc__)
        sys.exit(2)
    backing, mountpoint = sys.argv[1], sys.argv[2]
    fs = FaultFs(backing)
    fs.apply(' '.join(sys.argv[3:]))
    # direct_io: no page cache between the loop device and the faults; big_writes: 128 KiB requests.
    FUSE(fs, mountpoint, foreground=True, direct_io=True, big_writes=True, max_write=131072, max_read=131072, fsname='fault-fs', subtype='fault-fs')


if __name__ == '__main__':
    main()
