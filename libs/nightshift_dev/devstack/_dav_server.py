"""The local stack's WebDAV server process: wsgidav (filesystem provider) in cheroot, behind a bearer token.

Run by :mod:`nightshift_dev.devstack._dav` as ``python -m nightshift_dev.devstack._dav_server
--root DIR --host HOST --port PORT``; the token comes from ``NIGHTSHIFT_DAV_TOKEN``
in the environment (never the command line, which other users can read).

wsgidav authenticates with HTTP Basic/Digest only; Rubin's per-user WebDAV
servers take bearer tokens (``lsst-resources`` sends
``Authorization: Bearer ...``), so a small WSGI layer in front of wsgidav
checks the token in constant time and answers 401 otherwise.
"""

from __future__ import annotations

import argparse
import hmac
import os
import signal
import sys
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["BearerTokenMiddleware", "main"]

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class BearerTokenMiddleware:
    """Let a request through only with ``Authorization: Bearer <token>``.

    Parameters
    ----------
    app : WSGI application
    token : str
        The accepted token (compared with :func:`hmac.compare_digest`).
    """

    def __init__(self, app: WsgiApp, token: str) -> None:
        if not token:
            raise ValueError("the WebDAV server needs a non-empty token")
        self.app = app
        self._expected = f"Bearer {token}".encode()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        given = str(environ.get("HTTP_AUTHORIZATION", "")).encode()
        if hmac.compare_digest(given, self._expected):
            return self.app(environ, start_response)
        body = b"a valid bearer token is required\n"
        start_response("401 Unauthorized", [("Content-Type", "text/plain"), ("Content-Length", str(len(body))),
                                            ("WWW-Authenticate", 'Bearer realm="nightshift"')])
        return [body]


def make_app(root: str, token: str) -> WsgiApp:
    """wsgidav over the directory ``root`` (anonymous inside; the token is checked in front)."""
    from wsgidav.wsgidav_app import WsgiDAVApp

    config = {
        "provider_mapping": {"/": root},
        "simple_dc": {"user_mapping": {"*": True}},
        "http_authenticator": {"domain_controller": None, "accept_basic": False, "accept_digest": False,
                               "default_to_digest": False},
        "verbose": 1,
        "logging": {"enable": True, "enable_loggers": []},
        "property_manager": True,
        "lock_storage": True,
        "dir_browser": {"enable": False},
    }
    return BearerTokenMiddleware(WsgiDAVApp(config), token)


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    token = os.environ.get("NIGHTSHIFT_DAV_TOKEN", "")
    if not token:
        print("NIGHTSHIFT_DAV_TOKEN is not set", file=sys.stderr)
        return 2
    from cheroot import wsgi

    server = wsgi.Server((args.host, args.port), make_app(args.root, token), numthreads=8)

    def stop(signum: int, frame: object) -> None:
        server.stop()

    signal.signal(signal.SIGTERM, stop)
    print(f"nightshift WebDAV server on http://{args.host}:{args.port}/ serving {args.root}", flush=True)
    try:
        server.start()
    except KeyboardInterrupt:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
