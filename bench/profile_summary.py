"""Summarise a py-spy ``--format raw`` profile (collapsed stacks): where the server's samples go.

    python bench/profile_summary.py bench/results/profile-cc_idp-mcp.txt [--top 25]

Prints the share of samples in a few categories (inclusive: a sample counts when any frame of the stack is in
the category), the top functions by inclusive share, and the top leaf (self) functions.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")

# (label, predicate on "func (file)") — inclusive shares; a stack may count in several.
CATEGORIES: list[tuple[str, str]] = [
    ("SQLAlchemy + sqlite3 (all DB work)", r"sqlalchemy/|sqlite3|_sqlite|pysqlite"),
    (
        "  of which connect / PRAGMAs (NullPool)",
        r"pool/base\.py.*(__connect|_create_connection)|_sqlite_pragmas|"
        r"default\.py\).*connect|do_close|_close_connection",
    ),
    ("  of which BEGIN IMMEDIATE", r"_sqlite_begin_immediate"),
    ("  of which commit", r"_connection_commit_impl|do_commit"),
    ("  of which SQL compile", r"_compiler|compiled_cache|compile \(|_compile_w_cache|sql/compiler\.py"),
    ("audit log write", r"idp_mcp/core/audit\.py.*write|_audit_call"),
    ("JWT sign / verify (PyJWT, cryptography, joserfc)", r"jwt/api_jw|jwt/algorithms|joserfc/|cryptography/"),
    ("authlib (grant logic)", r"authlib/"),
    ("MCP SDK (session, transport, JSON-RPC)", r"mcp/server/|mcp/shared/|mcp_types/"),
    ("pydantic (validation / dump)", r"pydantic|model_validate|model_dump"),
    ("json", r"json/(encoder|decoder|__init__)"),
    ("starlette (routing, forms, responses)", r"starlette/"),
    ("uvicorn / httptools", r"uvicorn/|httptools"),
    (
        "hand-off to worker threads, event-loop side (run_in_threadpool)",
        r"run_in_threadpool|to_thread\.py|"
        r"run_sync_in_worker_thread",
    ),
    ("asyncio / uvloop event loop", r"asyncio/|uvloop"),
    ("logging", r"logging/"),
]


def parse(path: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in path.read_text(errors="replace").splitlines():
        line = line.strip()
        if not line:
            continue
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        stacks.append((stack.split(";"), int(count)))
    return stacks


def short(frame: str) -> str:
    match = FRAME.match(frame)
    if not match:
        return frame
    file = match.group("file")
    for marker in ("site-packages/", "src/", "lib/python3"):
        if marker in file:
            file = file.split(marker, 1)[1]
            break
    return f"{match.group('func')} ({file})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    stacks = parse(args.profile)
    total = sum(count for _, count in stacks)
    if not total:
        print("no samples")
        return
    print(f"{args.profile.name}: {total} samples")
    roles: Counter[str] = Counter()
    for frames, count in stacks:
        if any("WorkerThread.run" in f for f in frames):
            idle = "Condition.wait" in frames[-1] or "Queue.get" in frames[-1] or "_queue" in frames[-1]
            roles["worker thread, waiting for work" if idle else "worker thread (run_in_threadpool / to_thread)"] += (
                count
            )
        elif any("_run_module_as_main" in f or "uvicorn" in f for f in frames):
            roles["event-loop thread (uvicorn, Starlette, MCP SDK, async code)"] += count
        else:
            roles["other / truncated stacks"] += count
    print("\nthreads:")
    for role, count in roles.most_common():
        print(f"  {100 * count / total:5.1f}%  {role}")
    print("\ncategories (inclusive share of samples):")
    for label, pattern in CATEGORIES:
        regex = re.compile(pattern)
        hits = sum(count for frames, count in stacks if any(regex.search(f) for f in frames))
        print(f"  {100 * hits / total:5.1f}%  {label}")
    inclusive: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    for frames, count in stacks:
        names = [short(f) for f in frames]
        for name in set(names):
            inclusive[name] += count
        leaf[names[-1]] += count
    print(f"\ntop {args.top} functions, inclusive (idp_mcp, sqlalchemy, authlib, mcp, jwt, starlette):")
    interesting = re.compile(r"idp_mcp/|sqlalchemy/|authlib/|mcp/|jwt/|starlette/|sqlite3|cryptography/|pydantic")
    shown = 0
    for name, count in inclusive.most_common():
        if interesting.search(name):
            print(f"  {100 * count / total:5.1f}%  {name}")
            shown += 1
            if shown >= args.top:
                break
    print(f"\ntop {args.top} leaf functions (self time):")
    for name, count in leaf.most_common(args.top):
        print(f"  {100 * count / total:5.1f}%  {name}")


if __name__ == "__main__":
    main()
