#!/usr/bin/env python3
"""Writes contrib/static/hot-text.txt: the functions the daemon runs, by section name.

`make text-layout` runs this on a profiling build of the static binary (every Rust function
aligned to its own 4 KiB page, symbols kept): the bench's scale phase at 0 and 100 pods drives it (100 pods
started, adopted after a restart, idle, deleted, idle with none) while this script reads
`/proc/PID/pagemap` of each daemon once a second to see which pages of its text were ever
mapped. build.rs turns the list into a linker script that puts those functions first in `.text`
(docs/PERFORMANCE.md, "Text layout").

Why this measures what ran: the kernel maps file pages 64 KiB around every fault
(fault-around), but only pages already in the page cache. With the binary's cached pages
dropped and readahead off on its block device for the run, a page is cached, hence mapped,
only if some daemon executed in it. A Rust function on its own page is then in the list iff
it ran; C and C++ functions (gRPC's core, built without that alignment) are listed when they
share a page with code that ran, a superset.

Needs root (readahead setting, the bench's containerd). The device's readahead is restored on
exit.
"""

import argparse
import json
import os
import re
import struct
import subprocess
import sys
import threading


def block_queue(path):
    """The read_ahead_kb file of the block device holding `path` (its disk, for a partition)."""
    st = os.stat(path)
    dev = f"/sys/dev/block/{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
    for d in (dev, os.path.join(dev, "..")):
        f = os.path.join(d, "queue", "read_ahead_kb")
        if os.path.exists(f):
            return f
    sys.exit(f"text-layout: no read_ahead_kb for the device of {path} ({dev})")


def drop_cached_pages(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def text_mappings(pid, exe):
    """(start, end, file offset) of the executable mappings of `exe` in process `pid`."""
    out = []
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            p = line.split()
            if len(p) >= 6 and p[5] == exe and p[1] == "r-xp":
                s, e = (int(x, 16) for x in p[0].split("-"))
                out.append((s, e, int(p[2], 16)))
    return out


def poll(exe, pages, stop):
    """Adds the file offsets of the mapped text pages of every process running `exe`."""
    while not stop.is_set():
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                maps = text_mappings(pid, exe)
                with open(f"/proc/{pid}/pagemap", "rb") as pm:
                    for s, e, off in maps:
                        pm.seek(s // 4096 * 8)
                        data = pm.read((e - s) // 4096 * 8)
                        for i in range(len(data) // 8):
                            if struct.unpack_from("<Q", data, i * 8)[0] >> 63:
                                pages.add(off + i * 4096)
            except OSError:
                continue  # gone, or not ours to read
        stop.wait(1.0)


def load_segments(exe):
    segs = []
    out = subprocess.run(["readelf", "-lW", exe], capture_output=True, text=True, check=True)
    for line in out.stdout.splitlines():
        p = line.split()
        if p and p[0] == "LOAD" and "E" in p[6:-1]:  # executable: the r-xp mappings
            segs.append((int(p[1], 16), int(p[2], 16), int(p[4], 16)))
    return segs


def functions(exe):
    out = subprocess.run(["nm", "-S", "--defined-only", exe], capture_output=True, text=True, check=True)
    syms = []
    for line in out.stdout.splitlines():
        p = line.split()
        if len(p) == 4 and p[2] in "tTwW" and int(p[1], 16):
            syms.append((int(p[0], 16), int(p[1], 16), p[3]))
    return syms


def pattern(name):
    """A section-name pattern for `name` that survives rebuilds, or None for local names."""
    if name.startswith(("__cxx_global_var_init", "_GLOBAL__sub_I")):
        return None  # static initialisers: build.rs places all of .text.startup
    # Legacy Rust mangling ends in a hash of the crate's metadata (then maybe `.llvm.N`): any
    # hash matches. Its paths may hold `..` (`::` inside generic arguments).
    legacy = re.match(r"^(_ZN.*17h)[0-9a-f]{16}E", name)
    if legacy:
        return legacy.group(1) + "*"
    if name.startswith("_R"):  # v0 mangling (the standard library): crate disambiguators
        return re.sub(r"Cs[0-9A-Za-z]+_", "Cs*_", name.split(".")[0]) + "*"
    if "." in name:
        return None  # a compiler-made local part (`.cold`, `.part.N`) or zig's libc names
    return name


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--daemon", required=True, help="the profiling build of the static binary")
    ap.add_argument("--bench", required=True, help="the bench binary (make bench builds it)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--idle-secs", default="30")
    ap.add_argument("--pages", help="also write the touched pages (file offsets) here, as JSON")
    args = ap.parse_args()
    exe = os.path.realpath(args.daemon)

    ra_file = block_queue(exe)
    with open(ra_file) as f:
        ra = f.read().strip()
    pages, stop = set(), threading.Event()
    try:
        with open(ra_file, "w") as f:
            f.write("0")
        os.sync()  # dirty pages (a fresh build) cannot be dropped
        drop_cached_pages(exe)
        poller = threading.Thread(target=poll, args=(exe, pages, stop))
        poller.start()
        subprocess.run(
            [args.bench, "--phases", "scale", "--scale-levels", "0,100", "--no-charts",
             "--idle-secs", args.idle_secs, "--daemon", exe, "--out", "/dev/null"],
            check=True,
        )
    finally:
        stop.set()
        with open(ra_file, "w") as f:
            f.write(ra)
    if not pages:
        sys.exit("text-layout: no daemon text page was seen")
    if args.pages:
        with open(args.pages, "w") as f:
            json.dump(sorted(pages), f)

    segments = load_segments(exe)

    def vaddr(off):
        # A segment's first page starts below its (unaligned) file offset.
        for o, v, size in segments:
            if o & ~4095 <= off < o + size:
                return off - o + v
        return None

    touched = {v // 4096 for v in map(vaddr, pages) if v is not None}
    names, seen, ran, near = [], set(), 0, 0
    for addr, size, name in sorted(functions(exe)):
        if not any(p in touched for p in range(addr // 4096, (addr + size - 1) // 4096 + 1)):
            continue
        if addr % 4096 == 0:
            ran += size
        else:
            near += size
        p = pattern(name)
        if p and p not in seen:
            seen.add(p)
            names.append(p)
    with open(args.out, "w") as f:
        f.write(
            "# Generated by `make text-layout` (contrib/static/text-layout.py): the functions the\n"
            "# static daemon ran in the bench's scale phase (0 and 100 pods), by section name; build.rs places\n"
            "# them first in .text. Regenerate after large changes (docs/PERFORMANCE.md).\n"
        )
        f.writelines(n + "\n" for n in names)
    print(
        f"text-layout: {len(touched)} text pages touched; Rust functions that ran "
        f"{ran / 1024:.0f} KiB, C/C++ on touched pages {near / 1024:.0f} KiB; "
        f"{len(names)} patterns in {args.out}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
