#!/usr/bin/env python3
"""Checks, before the test suite runs, that the PostgreSQL and RabbitMQ the tests will use answer.

The tests read their settings as herald does (src/config.rs): config/default.toml, the file named
by HERALD_CONFIG, then HERALD__SECTION__KEY environment variables, later sources winning. This
reads the same sources for database.url, amqp.url and amqp.urls, connects to each host:port over
TCP and, when one does not answer, names it and says where to get it. Exit status: 0 when all
answer, 1 otherwise. Usage: python3 tests/check_services.py (from the repository root).
"""

import os
import shutil
import socket
import subprocess
import sys
from urllib.parse import urlsplit, urlunsplit

HOW_TO_GET_THEM = 'README.md, "Services" (docker compose, or the Debian packages and how to start them)'
DEFAULT_PORTS = {"postgres": 5432, "postgresql": 5432, "amqp": 5672, "amqps": 5671}
CONNECT_TIMEOUT_SECS = 5


def read_toml(path):
    """The settings in a TOML file as nested dicts, or None (with a note) when unreadable."""
    try:
        import tomllib  # Python 3.11+
    except ImportError:
        print(f"note: python3 is older than 3.11 (no tomllib); not reading {path}", file=sys.stderr)
        return None
    try:
        with open(path, "rb") as file:
            return tomllib.load(file)
    except (OSError, ValueError) as error:
        print(f"note: could not read {path}: {error}", file=sys.stderr)
        return None


def config_file_sources():
    """config/default.toml in the working directory, then HERALD_CONFIG (as the config crate
    finds it: the name as given, or with .toml appended)."""
    sources = []
    if os.path.isfile("config/default.toml"):
        sources.append("config/default.toml")
    named = os.environ.get("HERALD_CONFIG")
    if named:
        candidates = [named, named + ".toml"]
        found = next((path for path in candidates if os.path.isfile(path)), None)
        if found is None:
            # herald requires the file, so every test would fail to load its settings.
            print(f"HERALD_CONFIG={named} names no file: unset it or point it at one")
            sys.exit(1)
        if found.endswith(".toml") or "." not in os.path.basename(found):
            sources.append(found)
        else:
            print(f"note: only TOML is read here, not HERALD_CONFIG={found}", file=sys.stderr)
    return sources


def settings():
    """(database url, [amqp urls], where each came from) after every source."""
    database = ("postgres://postgres@127.0.0.1:5432/herald", "built-in default")
    amqp_url = ("amqp://guest:guest@127.0.0.1:5672/%2f", "built-in default")
    amqp_urls = ([], None)
    for path in config_file_sources():
        values = read_toml(path) or {}
        section = values.get("database", {})
        if isinstance(section.get("url"), str):
            database = (section["url"], path)
        section = values.get("amqp", {})
        if isinstance(section.get("url"), str):
            amqp_url = (section["url"], path)
        if isinstance(section.get("urls"), list) and section["urls"]:
            amqp_urls = ([str(url) for url in section["urls"]], path)
    environment = {key.upper(): value for key, value in os.environ.items()}
    if "HERALD__DATABASE__URL" in environment:
        database = (environment["HERALD__DATABASE__URL"], "HERALD__DATABASE__URL")
    if "HERALD__AMQP__URL" in environment:
        amqp_url = (environment["HERALD__AMQP__URL"], "HERALD__AMQP__URL")
    if environment.get("HERALD__AMQP__URLS", "").strip():
        urls = [url.strip() for url in environment["HERALD__AMQP__URLS"].split(",") if url.strip()]
        amqp_urls = (urls, "HERALD__AMQP__URLS")
    # amqp.urls, when set, wins over amqp.url.
    if amqp_urls[0]:
        rabbit = [(url, amqp_urls[1]) for url in amqp_urls[0]]
    else:
        rabbit = [amqp_url]
    return database, rabbit


def endpoint(url):
    """(host, port) of a service URL, without its credentials."""
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or DEFAULT_PORTS.get(parts.scheme, 0)
    return host, port


def reachable(host, port):
    """None when a TCP connection opens, else why not."""
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_SECS):
            return None
    except OSError as error:
        return error.strerror or str(error)


def postgres_refuses(url):
    """None when psql (if installed) can sign in with the URL's user to the postgres database,
    else psql's complaint: a fresh Debian install asks TCP clients for a password the tests'
    URL does not give."""
    if shutil.which("psql") is None:
        return None
    parts = urlsplit(url)
    maintenance = urlunsplit(parts._replace(path="/postgres"))
    try:
        answer = subprocess.run(
            ["psql", maintenance, "-Atqc", "SELECT 1"],
            capture_output=True, text=True, timeout=30,
            env={**os.environ, "PGCONNECT_TIMEOUT": "10"},
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return str(error)
    if answer.returncode == 0:
        return None
    return answer.stderr.strip() or f"psql exited with {answer.returncode}"


def main():
    database, rabbit = settings()
    services = [("PostgreSQL", *database)] + [("RabbitMQ", url, source) for url, source in rabbit]
    failures = 0
    for name, url, source in services:
        try:
            host, port = endpoint(url)
        except ValueError as error:
            print(f"cannot read the {name} URL from {source}: {error}")
            failures += 1
            continue
        why = reachable(host, port)
        if why is None and name == "PostgreSQL":
            refused = postgres_refuses(url)
            if refused is not None:
                print(f"PostgreSQL at {host}:{port} (from {source}) answers but refuses the tests' "
                      f"user: {refused}")
                failures += 1
                continue
        if why is None:
            print(f"{name} answers at {host}:{port}")
        else:
            print(f"cannot reach {name} at {host}:{port} (from {source}): {why}")
            failures += 1
    if failures:
        print(f"\nThe tests need PostgreSQL and RabbitMQ as above. How to get them: {HOW_TO_GET_THEM}.")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
