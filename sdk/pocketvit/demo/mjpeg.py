"""An MJPEG stream of the annotated view over HTTP (standard library only), for a device with no
screen: open http://HOST:PORT/ in a browser.

Paths: ``/`` a page showing the stream, ``/stream.mjpg`` the multipart stream, ``/frame.jpg`` the
latest frame, ``/stats.json`` the latest prediction. Binds to 127.0.0.1 unless told otherwise; it
has no authentication, so exposing it on a network is the caller's explicit choice.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .errors import DemoError

_PAGE = b"""<!doctype html><html><head><title>pocketvit demo</title>
<style>body{background:#111;color:#ddd;font-family:sans-serif;margin:0;text-align:center}
img{max-width:100vw;max-height:95vh;image-rendering:pixelated}</style></head>
<body><img src="/stream.mjpg" alt="pocketvit demo stream"><div>pocketvit demo</div></body></html>
"""


class MjpegServer:
    def __init__(self, port: int, host: str = "127.0.0.1"):
        self._cond = threading.Condition()
        self._jpeg: bytes | None = None
        self._stats: dict = {}
        self._seq = 0
        self._stopped = False
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format, *args):
                pass

            def do_GET(self):
                path = self.path.split("?", 1)[0]
                if path in ("/", "/index.html"):
                    self._send(200, "text/html; charset=utf-8", _PAGE)
                elif path == "/frame.jpg":
                    jpeg = server.latest()[1]
                    if jpeg is None:
                        self._send(503, "text/plain", b"no frame yet\n")
                    else:
                        self._send(200, "image/jpeg", jpeg)
                elif path == "/stats.json":
                    self._send(200, "application/json", json.dumps(server.stats()).encode())
                elif path == "/stream.mjpg":
                    self._stream()
                else:
                    self._send(404, "text/plain", b"not found\n")

            def _send(self, code: int, ctype: str, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def _stream(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                seq = -1
                try:
                    while True:
                        got = server.wait_frame(seq, timeout=1.0)
                        if got is None:
                            if server.stopped:
                                return
                            continue
                        seq, jpeg = got
                        self.wfile.write(
                            b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                            + str(len(jpeg)).encode()
                            + b"\r\n\r\n"
                            + jpeg
                            + b"\r\n"
                        )
                        self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError, TimeoutError):
                    return

        try:
            self.httpd = ThreadingHTTPServer((host, port), Handler)
        except OSError as e:
            raise DemoError(
                f"--mjpeg: cannot listen on {host}:{port} ({e.strerror or e}); pick another port "
                "(e.g. --mjpeg 8081) or stop the program using it"
            ) from None
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="pocketvit-mjpeg", daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    @property
    def url(self) -> str:
        host = self.httpd.server_address[0]
        return f"http://{host}:{self.port}/"

    @property
    def stopped(self) -> bool:
        return self._stopped

    def publish(self, jpeg: bytes, stats: dict | None = None) -> None:
        with self._cond:
            self._jpeg = jpeg
            if stats is not None:
                self._stats = stats
            self._seq += 1
            self._cond.notify_all()

    def latest(self) -> tuple[int, bytes | None]:
        with self._cond:
            return self._seq, self._jpeg

    def stats(self) -> dict:
        with self._cond:
            return dict(self._stats)

    def wait_frame(self, after_seq: int, timeout: float) -> tuple[int, bytes] | None:
        """The next frame newer than ``after_seq``, or None after ``timeout`` / once stopped."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._stopped or (self._jpeg is not None and self._seq != after_seq),
                                       timeout):
                return None
            if self._stopped:
                return None
            return self._seq, self._jpeg

    def close(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(2.0)
