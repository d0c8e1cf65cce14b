#!/usr/bin/env python3
"""Which B-tree each page in a SQLite WAL belongs to, per commit: reads the log frame by frame
(the page number in each frame header, up to the first frame of an older generation) and
matches pages to trees with SQLite's dbstat, on a copy of the database and its log (the data
directory is not touched). For a server's log, stop it with SIGKILL: a clean shutdown
checkpoints and deletes the log. docs/performance.md, "The store thread's syncs".

    python3 bench/wal_pages.py DATA_DIR [REQUESTS_PER_COMMIT]
"""
import collections
import os
import shutil
import sqlite3
import struct
import sys
import tempfile

source = sys.argv[1]
per_commit = float(sys.argv[2]) if len(sys.argv) > 2 else None
copy = tempfile.mkdtemp()
try:
    for name in ("switchboard.db", "switchboard.db-wal"):
        shutil.copy(os.path.join(source, name), copy)
    log = open(os.path.join(copy, "switchboard.db-wal"), "rb").read()
    page_size = struct.unpack(">I", log[8:12])[0]
    salts = log[16:24]
    commits, frames, offset = [], [], 32
    while offset + 24 + page_size <= len(log):
        page, size_after_commit = struct.unpack(">II", log[offset:offset + 8])
        if log[offset + 8:offset + 16] != salts:
            break  # a frame of an earlier generation of the log
        frames.append(page)
        if size_after_commit:
            commits.append(frames)
            frames = []
        offset += 24 + page_size
    # dbstat needs a SQLite built with it (Debian's python3 has it).
    conn = sqlite3.connect(os.path.join(copy, "switchboard.db"))
    owner = {page: name for name, page in conn.execute("SELECT name, pageno FROM dbstat")}
    conn.close()
finally:
    shutil.rmtree(copy)
pages = collections.Counter()
for commit in commits:
    for page in set(commit):
        pages[owner.get(page, "(free or new)")] += 1
n = max(len(commits), 1)
total = sum(len(set(c)) for c in commits)
print(f"{len(commits)} commits, {sum(map(len, commits))} frames, "
      f"{total / n:.2f} distinct pages per commit")
for tree, count in pages.most_common():
    per_message = f"  {count / n / per_commit:5.2f} per request" if per_commit else ""
    print(f"  {tree:28} {count / n:6.2f} per commit{per_message}")
