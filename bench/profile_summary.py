"""Summarize a py-spy raw profile (``--threads``, and ``--subprocesses``: threads named
by their process): share of samples per thread, and the functions (own time) that take
most of each thread.

    .venv/bin/python bench/profile_summary.py FILE [--top 15]
"""

from __future__ import annotations

import argparse
import collections
import re


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("file")
    ap.add_argument("--top", type=int, default=15)
    args = ap.parse_args()
    threads: collections.Counter[str] = collections.Counter()
    own: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    incl: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    total = 0
    with open(args.file) as f:
        text = f.read()
    for line in text.splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack:
            continue
        count = int(n)
        frames = stack.split(";")
        # with py-spy --subprocesses the stack starts with its processes, then the thread
        procs = [f for f in frames if f.startswith("process ")]
        frames = frames[len(procs) :]
        thread = re.sub(r"\s*\(?0x[0-9a-f]+\)?", "", frames[0])
        if procs:
            cmd = procs[-1].split(":", 1)[1].strip('"').split()
            thread = f"{' '.join(cmd[1:3])}: {thread}"
        threads[thread] += count
        total += count
        own[thread][frames[-1]] += count
        for f in set(frames[1:]):
            incl[thread][f] += count
    for thread, n in threads.most_common():
        print(f"{thread}: {n / total:.0%} of samples")
        for f, k in own[thread].most_common(args.top):
            print(f"    own {k / n:5.1%}  {f}")
        print("    -- inclusive:")
        for f, k in incl[thread].most_common(args.top):
            print(f"    inc {k / n:5.1%}  {f}")


if __name__ == "__main__":
    main()
