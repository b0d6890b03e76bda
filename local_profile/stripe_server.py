"""Run localstripe bound to 127.0.0.1 (its own CLI binds every interface): the Stripe peer's process.

localstripe is GPL and a dev/test peer only: it runs in its own process and nothing in
layers/ or functions/ imports it."""

from __future__ import annotations

import argparse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8420)
    args = parser.parse_args()
    from aiohttp import web
    from localstripe.server import app

    # SO_REUSEADDR (asyncio's default on POSIX, said here on purpose): a restarted stack binds the port at once
    # although the last run's connections wait in TIME_WAIT. Never reuse_port: it would bind over a live peer.
    web.run_app(app, host=args.host, port=args.port, print=None, access_log=None, reuse_address=True, reuse_port=False)


if __name__ == "__main__":
    main()
