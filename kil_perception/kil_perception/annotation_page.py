"""Annotating a reference frame without a display: a small local web page.

``python -m kil_perception.annotate --names ...`` serves it when there is no display (or with
``--web``): the frame, a list of the keypoint names, click to place the selected name (the next
unplaced one is selected after each click), drag a point to adjust it, Save. The page sends the
points back, and ``annotate`` writes the same spec as ``--point NAME=U,V`` would. It listens on
127.0.0.1 by default; from another machine, forward the port (``ssh -L PORT:127.0.0.1:PORT host``).
Standard library only (``http.server``).
"""

from __future__ import annotations

import html
import json
import math
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np

_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>KIL annotate: {title}</title>
<style>
 body {{ font-family: sans-serif; margin: 12px; }}
 #frame {{ position: relative; display: inline-block; user-select: none; }}
 #frame img {{ display: block; cursor: crosshair; }}
 .point {{ position: absolute; width: 10px; height: 10px; margin: -6px 0 0 -6px; border-radius: 50%;
          border: 1px solid white; background: #e4003a; cursor: move; }}
 .label {{ position: absolute; color: white; font-size: 12px; text-shadow: 0 0 2px black; pointer-events: none; }}
 #names li {{ cursor: pointer; }} #names li.selected {{ font-weight: bold; }}
 #names li.placed::after {{ content: " ✓"; }}
</style></head>
<body>
<h3>{title}: click to place the selected keypoint, drag to adjust, then Save</h3>
<div style="display: flex; gap: 16px; align-items: flex-start">
 <div id="frame"><img id="image" src="frame.png" width="{width}" height="{height}" draggable="false"></div>
 <div><ol id="names">{items}</ol>
  <button id="save">Save</button> <p id="status"></p></div>
</div>
<script>
const names = {names};
const points = {{}};
let selected = names[0], dragging = null;
const image = document.getElementById("image"), frame = document.getElementById("frame");
function pixel(event) {{
  const box = image.getBoundingClientRect();
  return [(event.clientX - box.left) * image.naturalWidth / box.width,
          (event.clientY - box.top) * image.naturalHeight / box.height];
}}
function draw() {{
  frame.querySelectorAll(".point, .label").forEach(e => e.remove());
  const box = image.getBoundingClientRect(), scale = box.width / image.naturalWidth;
  for (const name of names) {{
    const li = document.querySelector(`#names li[data-name="${{name}}"]`);
    li.classList.toggle("selected", name === selected);
    li.classList.toggle("placed", name in points);
    if (!(name in points)) continue;
    const [u, v] = points[name];
    const dot = document.createElement("div");
    dot.className = "point"; dot.dataset.name = name;
    dot.style.left = (u * scale) + "px"; dot.style.top = (v * scale) + "px";
    dot.addEventListener("pointerdown", e => {{ dragging = name; selected = name; e.preventDefault(); }});
    const label = document.createElement("div");
    label.className = "label"; label.textContent = name;
    label.style.left = (u * scale + 8) + "px"; label.style.top = (v * scale - 8) + "px";
    frame.append(dot, label);
  }}
}}
image.addEventListener("click", e => {{
  points[selected] = pixel(e);
  selected = names.find(n => !(n in points)) || selected;
  draw();
}});
document.addEventListener("pointermove", e => {{ if (dragging) {{ points[dragging] = pixel(e); draw(); }} }});
document.addEventListener("pointerup", () => {{ dragging = null; }});
document.querySelectorAll("#names li").forEach(li => li.addEventListener("click", () => {{
  selected = li.dataset.name; draw();
}}));
document.getElementById("save").addEventListener("click", async () => {{
  const reply = await fetch("save", {{method: "POST", headers: {{"Content-Type": "application/json"}},
                                      body: JSON.stringify({{points}})}});
  const answer = await reply.json();
  document.getElementById("status").textContent = reply.ok ? "saved: " + answer.saved : "not saved: " + answer.error;
}});
image.complete ? draw() : image.addEventListener("load", draw);
</script></body></html>
"""


class AnnotationPage:
    """Serves the page for one frame until the points are saved.

    Args:
        rgb: (H, W, 3) uint8 frame.
        names: the keypoint names to place, in order.
        title: shown on the page (e.g. the category).
        host, port: where to listen (port 0: any free port).
        on_save: called with the points (name -> (u, v) pixels, in ``names`` order); returns the
            text shown as saved (e.g. the spec's path), or raises ValueError whose text the page
            shows (the page stays up to correct and save again).
    """

    def __init__(self, rgb, names: list[str], title: str = "", host: str = "127.0.0.1", port: int = 0, on_save=None):
        if not names or len(set(names)) != len(names):
            raise ValueError(f"keypoint names must be given once each, got {names}")
        self.rgb = np.ascontiguousarray(rgb)
        self.names = list(names)
        self.on_save = on_save or (lambda points: "ok")
        self.points: dict[str, tuple[float, float]] | None = None
        self.saved = threading.Event()
        ok, png = cv2.imencode(".png", cv2.cvtColor(self.rgb, cv2.COLOR_RGB2BGR))
        if not ok:
            raise ValueError("the frame could not be encoded as PNG")
        height, width = self.rgb.shape[:2]
        items = "".join(f'<li data-name="{html.escape(n)}">{html.escape(n)}</li>' for n in self.names)
        page = _PAGE.format(
            title=html.escape(title or "reference frame"),
            width=width,
            height=height,
            items=items,
            names=json.dumps(self.names),
        ).encode()
        self.server = ThreadingHTTPServer((host, port), self._handler(page, png.tobytes()))
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/"

    def start(self) -> AnnotationPage:
        self.thread.start()
        return self

    def wait(self, timeout: float | None = None) -> dict[str, tuple[float, float]]:
        """Block until the points are saved; returns them.

        Raises:
            TimeoutError: nothing saved within ``timeout`` seconds.
        """
        if not self.saved.wait(timeout):
            raise TimeoutError(f"no keypoints saved on {self.url} within {timeout} s")
        return dict(self.points or {})

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def check(self, payload: dict) -> dict[str, tuple[float, float]]:
        """The points of a save request, in ``names`` order.

        Raises:
            ValueError: missing or unknown names, non-numbers, points outside the frame.
        """
        points = payload.get("points") if isinstance(payload, dict) else None
        if not isinstance(points, dict):
            raise ValueError('expected {"points": {name: [u, v]}}')
        missing = [n for n in self.names if n not in points]
        unknown = [n for n in points if n not in self.names]
        if missing or unknown:
            raise ValueError(f"place every keypoint: missing {missing}" + (f", unknown {unknown}" if unknown else ""))
        height, width = self.rgb.shape[:2]
        out = {}
        for name in self.names:
            value = points[name]
            if not (isinstance(value, list) and len(value) == 2 and all(isinstance(x, int | float) for x in value)):
                raise ValueError(f"{name}: expected [u, v], got {value!r}")
            u, v = (float(x) for x in value)
            if not (math.isfinite(u) and math.isfinite(v) and 0 <= u < width and 0 <= v < height):
                raise ValueError(f"{name} ({u:.1f}, {v:.1f}) is outside the {width}x{height} frame")
            out[name] = (round(u, 1), round(v, 1))
        return out

    def _handler(self, page: bytes, png: bytes):
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # (quiet: the command prints what matters)
                pass

            def _reply(self, status: int, body: bytes, kind: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                if path in ("/", "/index.html"):
                    self._reply(HTTPStatus.OK, page, "text/html; charset=utf-8")
                elif path == "/frame.png":
                    self._reply(HTTPStatus.OK, png, "image/png")
                else:
                    self._reply(HTTPStatus.NOT_FOUND, b"not found", "text/plain")

            def do_POST(self) -> None:
                if self.path.split("?")[0] != "/save":
                    self._reply(HTTPStatus.NOT_FOUND, b"not found", "text/plain")
                    return
                try:
                    length = int(self.headers.get("Content-Length", "0"))
                    if not 0 < length <= 65536:
                        raise ValueError("empty or oversized request")
                    points = owner.check(json.loads(self.rfile.read(length)))
                    saved = owner.on_save(points)
                except (ValueError, json.JSONDecodeError) as error:
                    body = json.dumps({"error": str(error)}).encode()
                    self._reply(HTTPStatus.BAD_REQUEST, body, "application/json")
                    return
                owner.points = points
                self._reply(HTTPStatus.OK, json.dumps({"saved": str(saved)}).encode(), "application/json")
                owner.saved.set()

        return Handler
