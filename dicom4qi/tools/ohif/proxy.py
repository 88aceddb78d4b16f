"""Serve the OHIF dist folder and proxy DICOMweb to Orthanc, on one loopback origin.

``python -m dicom4qi.tools.ohif.proxy --root DIST --port PORT --upstream http://127.0.0.1:ORTHANC``

Orthanc 1.10 sends no CORS headers, so the viewer and its data source must share
an origin. Paths under ``/dicom-web`` and ``/wado`` go to Orthanc, never cached
(``no-store``); any other path is a file of the dist folder, cached for an hour
(but ``index.html`` and ``app-config.js``), and a path that is not a file (an SPA
route such as ``/viewer``) gets ``index.html``.
"""

from __future__ import annotations

import argparse
import http.client
import mimetypes
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

PROXIED = ("/dicom-web", "/wado")
_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-authorization"}
mimetypes.add_type("application/wasm", ".wasm")
mimetypes.add_type("text/javascript", ".js")


class Handler(BaseHTTPRequestHandler):
    root: Path
    upstream: tuple[str, int]
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # quiet server
        pass

    def _proxy(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        conn = http.client.HTTPConnection(*self.upstream, timeout=120)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP and k.lower() != "host"}
        conn.request(self.command, self.path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        self.send_response(resp.status, resp.reason)
        for k, v in resp.getheaders():
            if k.lower() not in _HOP and k.lower() not in ("content-length", "cache-control", "etag", "last-modified"):
                self.send_header(k, v)
        # Study data is never cached: the browser's cache is shared by the reads of one worker (for the viewer's own
        # files), and the next object may be a study with the same UIDs and another SEG.
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        conn.close()

    def _file(self) -> None:
        rel = urlsplit(self.path).path.lstrip("/")
        target = (self.root / rel).resolve()
        if not target.is_relative_to(self.root) or not target.is_file():
            target = self.root / "index.html"
        data = target.read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", mimetypes.guess_type(target.name)[0] or "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.send_header(
            "Cache-Control", "no-store" if target.name in ("index.html", "app-config.js") else "max-age=3600"
        )
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _handle(self) -> None:
        try:
            if self.path.startswith(PROXIED):
                self._proxy()
            elif self.command in ("GET", "HEAD"):
                self._file()
            else:
                self.send_error(405)
        except (ConnectionError, http.client.HTTPException, OSError) as exc:
            try:
                self.send_error(502, str(exc)[:200])
            except OSError:
                pass

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _handle


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--root", type=Path, required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--upstream", required=True, help="Orthanc base URL on loopback")
    args = ap.parse_args(argv)
    up = urlsplit(args.upstream)
    if up.hostname not in ("127.0.0.1", "localhost"):
        print("the upstream must be on loopback", file=sys.stderr)
        return 2
    Handler.root = args.root.resolve()
    Handler.upstream = (up.hostname, up.port or 80)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print(f"serving {Handler.root} on 127.0.0.1:{args.port}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    os.umask(0o022)
    sys.exit(main())
