#!/usr/bin/env python3
"""Folds `perf script` output into stacks and draws them as a flame graph (SVG), stdlib only.

    perf script -i perf.data | bench/flamegraph.py --title "herald: connect storm" > out.svg
    bench/flamegraph.py --folded < perf.script > out.folded    # the folded stacks only
    bench/flamegraph.py --top 25 < perf.script                 # self time per function, text

Each sample of `perf script` is a header line (command, pid, time, event) followed by one frame
per line (address, symbol, object), innermost first, and a blank line.
"""

import argparse
import collections
import html
import re
import sys

FRAME = re.compile(r"^\s*[0-9a-f]+\s+(.+?)(?:\s+\((.*)\))?$")


def fold(lines):
    """Counts identical stacks (outermost first, ';'-joined)."""
    stacks = collections.Counter()
    frames = []
    comm = None

    def flush():
        if comm is not None:
            names = [comm] + list(reversed(frames))
            stacks[";".join(names)] += 1

    for line in lines:
        line = line.rstrip("\n")
        if not line.strip():
            flush()
            comm, frames = None, []
            continue
        if not line.startswith((" ", "\t")):
            flush()
            comm, frames = line.split()[0], []
            continue
        match = FRAME.match(line)
        if not match:
            continue
        name = match.group(1)
        if name == "[unknown]":
            obj = (match.group(2) or "").rsplit("/", 1)[-1]
            name = f"[{obj}]" if obj else name
        # Strip Rust's hash suffix and long generic arguments, which only make names unreadable.
        name = re.sub(r"\+0x[0-9a-f]+$", "", name)
        name = re.sub(r"::h[0-9a-f]{16}$", "", name)
        name = name.replace(";", ":")
        frames.append(name)
    flush()
    return stacks


# Parts of herald a sample can belong to, the first that matches along its stack.
BUCKETS = [
    ("PostgreSQL queries (diesel, tokio-postgres, pool)", ("tokio_postgres", "diesel", "deadpool")),
    ("RabbitMQ (lapin)", ("lapin",)),
    ("registry and routing", ("session::registry", "realtime::broker")),
    ("the session actor (fill, WebSocket context)", ("json_socket::WsSession", "actix_web_actors")),
    ("HTTP: accept, parse, middleware, upgrade", ("actix_http", "actix_web", "actix_server")),
    ("waiting for events (epoll_wait, park)", ("epoll_wait", "park_internal")),
    ("scheduler: switching threads", ("finish_task_switch", "__schedule")),
]


def bucket(stack):
    for name, needles in BUCKETS:
        if any(needle in stack for needle in needles):
            return name
    return "other (allocator, timers, runtime)"


def build_tree(stacks):
    root = {"name": "all", "value": 0, "children": {}}
    for stack, count in stacks.items():
        root["value"] += count
        node = root
        for name in stack.split(";"):
            child = node["children"].setdefault(name, {"name": name, "value": 0, "children": {}})
            child["value"] += count
            node = child
    return root


def color(name):
    h = 0
    for ch in name:
        h = (h * 31 + ord(ch)) & 0xFFFFFFFF
    if "[kernel" in name or name.startswith(("__", "sys_", "do_", "tcp_", "ip_", "entry_")):
        return f"rgb({200 + h % 55},{120 + h % 60},{60 + h % 40})"
    return f"rgb({220 + h % 35},{100 + h % 110},{h % 60})"


def render(root, title, width=1600, row=16):
    depth = [0]

    def measure(node, d):
        depth[0] = max(depth[0], d)
        for child in node["children"].values():
            measure(child, d + 1)

    measure(root, 0)
    height = (depth[0] + 3) * row + 40
    total = max(root["value"], 1)
    scale = (width - 20) / total
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="monospace" font-size="11">',
        f'<rect width="100%" height="100%" fill="#f8f8f8"/>',
        f'<text x="10" y="20" font-size="15">{html.escape(title)} ({total} samples)</text>',
    ]

    def draw(node, x, d):
        w = node["value"] * scale
        if w < 0.3:
            return
        y = height - (d + 1) * row - 10
        pct = 100.0 * node["value"] / total
        label = html.escape(node["name"])
        out.append(
            f'<g><title>{label} ({node["value"]} samples, {pct:.2f}%)</title>'
            f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{row - 1}" '
            f'fill="{color(node["name"])}"/>'
        )
        chars = int(w / 6.6)
        if chars >= 3:
            text = node["name"] if len(node["name"]) <= chars else node["name"][: chars - 2] + ".."
            out.append(f'<text x="{x + 2:.1f}" y="{y + row - 4}">{html.escape(text)}</text>')
        out.append("</g>")
        cx = x
        for child in sorted(node["children"].values(), key=lambda c: c["name"]):
            draw(child, cx, d + 1)
            cx += child["value"] * scale

    draw(root, 10, 0)
    out.append("</svg>")
    return "\n".join(out)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--title", default="flame graph")
    parser.add_argument("--folded", action="store_true", help="print folded stacks, no SVG")
    parser.add_argument("--top", type=int, help="print the N functions with most self time")
    parser.add_argument("--inclusive", type=int, help="print the N functions with most total time")
    parser.add_argument("--buckets", action="store_true",
                        help="share of samples per part of herald (first match along the stack)")
    args = parser.parse_args()
    stacks = fold(sys.stdin)
    if args.folded:
        for stack, count in stacks.most_common():
            print(f"{stack} {count}")
        return
    if args.buckets:
        total = sum(stacks.values()) or 1
        counter = collections.Counter()
        for stack, count in stacks.items():
            counter[bucket(stack)] += count
        for name, count in counter.most_common():
            print(f"{100.0 * count / total:6.2f}%  {name}")
        return
    if args.top or args.inclusive:
        total = sum(stacks.values()) or 1
        counter = collections.Counter()
        for stack, count in stacks.items():
            names = stack.split(";")
            if args.top:
                counter[names[-1]] += count
            else:
                for name in set(names):
                    counter[name] += count
        for name, count in counter.most_common(args.top or args.inclusive):
            print(f"{100.0 * count / total:6.2f}%  {name}")
        return
    sys.stdout.write(render(build_tree(stacks), args.title))


if __name__ == "__main__":
    main()
