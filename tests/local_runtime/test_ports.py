"""Back-to-back runs: a stack that served requests and stopped leaves its ports in TIME_WAIT for about a
minute, and the next stack must start on them at once; a port with a live listener is still refused."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest
import requests

from local_profile import bundle_profile
from local_runtime.api import ApiServer, HttpResponse
from local_runtime.runtime import LocalRuntime, RuntimeConfig, StartupError, port_free
from tests.local_runtime.echo_stack import echo_template
from tests.support import free_port

TIME_WAIT = "06"  # the state column of /proc/net/tcp


def ports_in_time_wait() -> set[int]:
    """Local ports of this host's IPv4 TCP sockets in TIME_WAIT."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == TIME_WAIT:
            found.add(int(fields[1].rsplit(":", 1)[1], 16))
    return found


def served_and_closed_by_the_server(port: int, path: str = "/") -> None:
    """One request with `Connection: close`, read to the end: the server closes first, so its side of the
    connection (local port `port`) waits in TIME_WAIT once the client closes too."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as client:
        client.sendall(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic c2tfdGVzdF9sb2NhbDo=\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        while client.recv(65536):  # until the server's FIN
            pass


def control(method: str, path: str, body: bytes) -> HttpResponse:
    return HttpResponse(200, [], b"{}")


def api_server(port: int) -> ApiServer:
    return ApiServer(("127.0.0.1", port), [], None, control, lambda _: None)  # type: ignore[arg-type]


def test_the_api_port_of_a_server_that_served_and_stopped_is_free_at_once() -> None:
    # Given an API server that served a request, closing the connection itself, and then stopped
    server = api_server(0)
    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    served_and_closed_by_the_server(port, "/__local__/status")
    server.shutdown()
    server.server_close()
    assert port in ports_in_time_wait()
    # When the runtime checks the port and a new API server binds it
    # Then both succeed
    assert port_free("127.0.0.1", port)
    api_server(port).server_close()


def test_a_port_with_a_live_listener_is_refused_by_the_check_and_the_api_server() -> None:
    # Given a port held by a listening socket that, like every server the runtime starts, set SO_REUSEADDR
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        busy = holder.getsockname()[1]
        # Then the check says it is taken, and binding an API server there fails
        assert not port_free("127.0.0.1", busy)
        with pytest.raises(OSError, match="Address already in use"):
            api_server(busy)


def template(tmp_path: Path) -> Path:
    path = tmp_path / "template.yaml"
    path.write_text(echo_template(tmp_path / "captured.jsonl"))
    return path


def test_a_stack_starts_on_the_ports_of_a_stack_that_just_served_requests_and_stopped(tmp_path: Path) -> None:
    api, moto, stripe = free_port(), free_port(), free_port()

    def stack(name: str) -> LocalRuntime:
        return LocalRuntime(
            RuntimeConfig(
                template_path=template(tmp_path),
                profile=bundle_profile(stripe_port=stripe),
                api_port=api,
                moto_port=moto,
                stack_name=name,  # moto's state is per process: each stack its own names
                log=lambda _: None,
            )
        )

    # Given a stack (API, moto, localstripe) that served requests on each of its ports, closing them
    # server-side as `Connection: close` does, and then stopped
    first = stack("back-to-back-1").start()
    try:
        served_and_closed_by_the_server(api, "/__local__/status")
        served_and_closed_by_the_server(moto, "/moto-api/")
        served_and_closed_by_the_server(stripe, "/v1/customers")
    finally:
        first.stop()
    assert {api, moto, stripe} <= ports_in_time_wait()
    # When the next stack starts on the same ports at once
    second = stack("back-to-back-2").start()
    try:
        # Then it serves
        assert requests.get(f"{second.api_url}/__local__/status", timeout=30).status_code == 200
        # and a third one, while the second still listens, is refused with the clear message
        with pytest.raises(
            StartupError, match=rf"port {api} on 127.0.0.1 \(API\) is already in use; choose another with --api-port"
        ):
            stack("back-to-back-3").start()
    finally:
        second.stop()
