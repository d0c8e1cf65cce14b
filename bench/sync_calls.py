#!/usr/bin/env python3
"""What a WAL commit's sync costs the block device: fsync against fdatasync, on a file that
grows (each commit appends, as a new WAL does) and on one overwritten in place (a WAL that has
started over). Each commit writes FRAMES frames of a 4 KiB page the way SQLite does (two
pwrites per frame: the 24-byte header, then the page), then syncs. Prints the device's
completed writes per sync (/sys/block/DEV/stat: other writers on the device add to it) and
the wall time per sync. Stops by itself; removes its file.

    python3 bench/sync_calls.py DIR DEV            # e.g. /tmp vda, or a mount of loop0
    SYNCS=300 FRAMES=20 REPEAT=3 python3 bench/sync_calls.py /tmp vda
"""
import os
import sys
import time

directory, device = sys.argv[1], sys.argv[2]
syncs = int(os.environ.get("SYNCS", 300))
frames = int(os.environ.get("FRAMES", 20))
repeat = int(os.environ.get("REPEAT", 3))
header, page = b"h" * 24, b"x" * 4096
path = os.path.join(directory, f"sync_calls.{os.getpid()}")


def device_writes():
    # Field 5 of /sys/block/DEV/stat: writes completed.
    return int(open(f"/sys/block/{device}/stat").read().split()[4])


for _ in range(repeat):
    for call in (os.fsync, os.fdatasync):
        for layout in ("appending", "in place"):
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                if layout == "in place":
                    os.write(fd, b"\0" * (syncs * frames * 4120 + 8192))
                    os.fsync(fd)
                    time.sleep(0.3)
                writes, started, offset = device_writes(), time.perf_counter(), 0
                for _ in range(syncs):
                    for _ in range(frames):
                        os.pwrite(fd, header, offset)
                        os.pwrite(fd, page, offset + 24)
                        offset += 24 + 4096
                    call(fd)
                elapsed = time.perf_counter() - started
                writes = device_writes() - writes
            finally:
                os.close(fd)
                os.unlink(path)
            print(f"{call.__name__:9} {layout:9} device writes per sync {writes / syncs:5.2f}"
                  f"  wall per sync {elapsed / syncs * 1e6:7.0f} µs")
