#!/usr/bin/env python3
"""Sanity check of a `tp7 profile --trace` file: it loads as JSON, every complete ("X") event has a name, pid, tid,
ts >= 0 and dur >= 0, events on one track (pid, tid) do not overlap unless nested (Chrome's rule for "X" events),
and it says how many events each track holds and how long the trace spans.

usage: python3 tools/check_trace.py out/profile/trace.json
"""
import collections
import json
import sys


def main(path):
    with open(path) as f:
        doc = json.load(f)
    events = doc["traceEvents"]
    names = {}
    for e in events:
        if e.get("ph") == "M" and e["name"] in ("process_name", "thread_name"):
            names[(e["pid"], e["tid"] if e["name"] == "thread_name" else None)] = e["args"]["name"]
    tracks = collections.defaultdict(list)
    for e in events:
        if e.get("ph") != "X":
            continue
        for key in ("name", "pid", "tid", "ts", "dur"):
            if key not in e:
                sys.exit(f"{path}: event without {key}: {e}")
        if e["ts"] < 0 or e["dur"] < 0:
            sys.exit(f"{path}: negative ts or dur: {e}")
        tracks[(e["pid"], e["tid"])].append(e)
    problems = 0
    for key, evs in sorted(tracks.items()):
        evs.sort(key=lambda e: (e["ts"], -e["dur"]))
        stack = []  # ends of the open enclosing spans
        for e in evs:
            start, end = e["ts"], e["ts"] + e["dur"]
            while stack and stack[-1] <= start + 1e-3:
                stack.pop()
            if stack and end > stack[-1] + 1e-3:
                problems += 1
                if problems <= 5:
                    print(f"  overlap on {names.get(key, key)}: {e['name']} [{start:.3f}, {end:.3f}] crosses the end of its enclosing span at {stack[-1]:.3f}")
            stack.append(end)
        first, last = evs[0]["ts"], max(e["ts"] + e["dur"] for e in evs)
        print(f"{names.get((key[0], None), key[0])} / {names.get(key, key[1])}: {len(evs)} events, {first / 1e3:.3f} to {last / 1e3:.3f} ms")
    if problems:
        sys.exit(f"{path}: {problems} events overlap without nesting")
    print(f"{path}: {sum(len(v) for v in tracks.values())} complete events on {len(tracks)} tracks, all with ts/dur, properly nested per track")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "out/profile/trace.json")
