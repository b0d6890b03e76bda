"""Run localstripe bound to 127.0.0.1 (its own CLI binds every interface): the Stripe peer's process.

localstripe is GPL and a dev/test peer only: it runs in its own process and nothing in
layers/ or functions/ imports it.

An outage switch for the demo's breaker scenario (`make demo`): `POST /_local/outage` with `{"down": true}` makes
every other request answer `503` (Stripe's answer when it is down), `{"down": false}` ends it; `GET /_local/outage`
says whether it is down and how many API requests were refused and served. The data stays: the outage is in front
of localstripe, not a restart."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from typing import Any

OUTAGE_PATH = "/_local/outage"


def outage_middleware() -> Any:
    from aiohttp import web

    state = {"down": False, "refused": 0, "served": 0}

    @web.middleware
    async def outage(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> Any:
        if request.path == OUTAGE_PATH:
            if request.method == "POST":
                state["down"] = bool((await request.json()).get("down"))
            return web.json_response(state)
        if request.path.startswith("/v1/"):
            if state["down"]:
                state["refused"] += 1
                error = {"type": "api_error", "message": "localstripe: outage injected (POST /_local/outage)"}
                return web.json_response({"error": error}, status=503)
            state["served"] += 1
        return await handler(request)

    return outage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8420)
    args = parser.parse_args()
    from aiohttp import web
    from localstripe.resources import Store
    from localstripe.server import app

    # localstripe pickles its whole store to /tmp/localstripe.pickle on every write (for its own CLI's restarts,
    # which this server never loads): each write costs the size of everything stored, and every localstripe on the
    # machine writes the same file. Off: 600 customer creations took 14.3 s with it and 1.6 s without.
    Store.dump_to_disk = lambda self: None
    app.middlewares.insert(0, outage_middleware())
    # SO_REUSEADDR (asyncio's default on POSIX, said here on purpose): a restarted stack binds the port at once
    # although the last run's connections wait in TIME_WAIT. Never reuse_port: it would bind over a live peer.
    web.run_app(app, host=args.host, port=args.port, print=None, access_log=None, reuse_address=True, reuse_port=False)


if __name__ == "__main__":
    main()
