"""A small synchronous Chrome DevTools Protocol client: what the OHIF read needs of the worker's chromium, and no more.

The read used Playwright, whose Python client starts a Node driver per process: 0.55 s of every OHIF read (median
of 183 on the quick tier), a tenth of the read, spent before the browser is asked anything, and 0.3 s more closing
the page through it. This speaks DevTools directly over the browser's websocket (``websocket-client``), one
flattened session per page, and does each step as Playwright does it, so a cell reads the same:

* console messages of type ``error`` as ``error: <text>``: the arguments' previews joined by spaces
  (``Runtime.consoleAPICalled``), or the browser's own log entry (``Log.entryAdded``, such as "Failed to load
  resource: ... 400 (Bad Request)"); an uncaught exception as ``pageerror: <message>``, its ``Name:`` prefix
  dropped (``Runtime.exceptionThrown``). Known issues match on these words;
* a page script evaluated with its argument, awaited, returned by value; its exception raised as :class:`PageError`;
* a double-click at the element's centre once it is attached, visible, stable for two frames and the element the
  pointer would hit (a move, then presses and releases with click counts 1 and 2);
* a renderer crash, or the page closed under the read, ends the wait at once as :class:`PageCrashed`.
"""

from __future__ import annotations

import base64
import itertools
import json
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import websocket  # websocket-client

__all__ = [
    "Browser",
    "Page",
    "DevToolsError",
    "PageError",
    "PageCrashed",
    "PageTimeout",
    "exception_message",
    "preview",
]


class DevToolsError(RuntimeError):
    """The browser answered a command with an error, or stopped answering."""


class PageError(RuntimeError):
    """A page script threw (its message as the page gave it)."""


class PageCrashed(RuntimeError):
    """The page's renderer crashed, or its target went away, during a command."""


class PageTimeout(RuntimeError):
    """A wait in the page did not end in time."""


def preview(obj: dict[str, Any]) -> str:
    """A remote object as one word of a console message, as Playwright renders a console argument."""
    if obj.get("type") == "undefined":
        return "undefined"
    if "value" in obj:
        value = obj["value"]
        if isinstance(value, bool):
            return "true" if value else "false"
        if value is None:
            return "null"
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return value if isinstance(value, str) else json.dumps(value)
    if obj.get("unserializableValue"):
        return str(obj["unserializableValue"])
    props = (obj.get("preview") or {}).get("properties")
    if obj.get("description") == "Object" and props is not None:
        return "{" + ", ".join(f"{p['name']}: {p.get('value')}" for p in props) + "}"
    if obj.get("subtype") == "array" and props is not None:
        items = sorted((int(p["name"]), p.get("value")) for p in props if str(p.get("name", "")).isdigit())
        return ",".join(str(v) for _, v in items)
    return str(obj.get("description", ""))


def exception_message(details: dict[str, Any]) -> str:
    """An exception's message without its stack and its ``Name:`` prefix (what Playwright's ``pageerror`` gives)."""
    exc = details.get("exception")
    if exc:
        text = exc.get("description") or str(exc.get("value"))
    else:
        text = str(details.get("text", ""))
    lines = text.split("\n")
    stack = next((i for i, line in enumerate(lines) if line.startswith("    at")), len(lines))
    head = "\n".join(lines[:stack])
    colon = head.find(":")
    return head[colon + 2 :] if colon != -1 and colon + 2 <= len(head) else head


class Browser:
    """One websocket to the browser (``http://127.0.0.1:PORT``, its DevTools address); commands answer in order."""

    def __init__(self, http_endpoint: str, timeout_s: float = 30.0) -> None:
        with urllib.request.urlopen(http_endpoint.rstrip("/") + "/json/version", timeout=timeout_s) as resp:
            ws_url = json.loads(resp.read())["webSocketDebuggerUrl"]
        # Chromium refuses a DevTools websocket that sends an Origin it was not told to allow. websocket-client's own
        # UTF-8 check of a text frame is pure Python (1.3 s for 5 MB; 0.55 s of the median OHIF read back); Python's
        # decoding of the frame checks it anyway.
        self._ws = websocket.create_connection(
            ws_url, timeout=timeout_s, suppress_origin=True, enable_multithread=False, skip_utf8_validation=True
        )
        self._ids = itertools.count(1)
        self._handlers: dict[str, Callable[[str, dict[str, Any]], None]] = {}
        self._gone: dict[str, str] = {}

    def close(self) -> None:
        try:
            self._ws.close()
        except (OSError, websocket.WebSocketException):
            pass

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None, *, timeout_s: float = 30.0
    ) -> dict[str, Any]:
        """Send one command and wait for its answer, handing the events that come meanwhile to their sessions."""
        if session is not None and session in self._gone:
            raise PageCrashed(self._gone[session])
        msg_id = next(self._ids)
        msg: dict[str, Any] = {"id": msg_id, "method": method, "params": params or {}}
        if session is not None:
            msg["sessionId"] = session
        try:
            self._ws.send(json.dumps(msg))
        except (OSError, websocket.WebSocketException) as exc:
            raise DevToolsError(f"{method}: the browser's DevTools connection failed: {exc}") from exc
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise PageTimeout(f"{method}: no answer from the browser in {timeout_s:g} s")
            reply = self._receive(left, session, method)
            if reply is not None and reply.get("id") == msg_id:
                if "error" in reply:
                    err = reply["error"]
                    raise DevToolsError(f"{method}: {err.get('message')} {err.get('data', '')}".rstrip())
                return dict(reply.get("result") or {})

    def pump(self, timeout_s: float, session: str | None = None) -> None:
        """Take in what the browser sends within ``timeout_s`` (at most one message), handing events on."""
        self._receive(timeout_s, session, "waiting")

    def _receive(self, timeout_s: float, session: str | None, what: str) -> dict[str, Any] | None:
        """One message from the browser within ``timeout_s`` (None if none came), an event handed on; the session's
        page gone (crashed or closed) is raised."""
        self._ws.settimeout(max(timeout_s, 0.001))
        try:
            msg: dict[str, Any] = json.loads(self._ws.recv())
        except websocket.WebSocketTimeoutException:
            return None
        except (OSError, websocket.WebSocketException) as exc:
            raise DevToolsError(f"{what}: the browser's DevTools connection failed: {exc}") from exc
        if "method" in msg:
            self._event(msg)
        if session is not None and session in self._gone:
            raise PageCrashed(self._gone[session])
        return msg

    def _event(self, msg: dict[str, Any]) -> None:
        method, params, session = msg["method"], msg.get("params") or {}, msg.get("sessionId")
        if method == "Target.detachedFromTarget":
            self._gone.setdefault(str(params.get("sessionId")), "the page was closed during the read")
            return
        if method == "Inspector.targetCrashed" and session is not None:
            self._gone[session] = "the page crashed (chromium's renderer ended)"
        handler = self._handlers.get(session or "")
        if handler is not None:
            handler(method, params)

    def pages(self) -> list[dict[str, Any]]:
        """The browser's page targets (id, url)."""
        return [t for t in self.send("Target.getTargets")["targetInfos"] if t.get("type") == "page"]

    def close_target(self, target_id: str) -> None:
        """Ask the browser to close a page, without waiting for it to go. A refusal (the page already gone) is not
        raised: :meth:`close_stale_pages` checks that it went, before the next read uses the origin's storage."""
        try:
            self.send("Target.closeTarget", {"targetId": target_id})
        except DevToolsError:
            pass

    def close_stale_pages(self, wait_s: float = 5.0) -> int:
        """Close every page but blank ones and wait (at most ``wait_s``) until they are gone; how many there were.

        A read closes its page without waiting for it to go (Playwright's wait was 0.3 s of every read); the next
        read, on the same origin's storage, starts here, when it is long gone or is made to be."""
        stale = [str(t["targetId"]) for t in self.pages() if t.get("url") != "about:blank"]
        count = len(stale)
        for target in stale:
            self.close_target(target)
        deadline = time.monotonic() + wait_s
        while stale and time.monotonic() < deadline:
            alive = {str(t["targetId"]) for t in self.pages()}
            stale = [t for t in stale if t in alive]
            if stale:
                time.sleep(0.02)
        if stale:
            raise DevToolsError(f"{len(stale)} page(s) of an earlier read did not close in {wait_s:g} s")
        return count

    def new_page(self) -> Page:
        """A new blank page in the browser's own context (the one whose HTTP cache the worker keeps)."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, target, session)
        self._handlers[session] = page._on_event
        return page


class Page:
    """One page target, through its own session."""

    def __init__(self, browser: Browser, target_id: str, session: str) -> None:
        self.browser, self.target_id, self.session = browser, target_id, session
        #: Console errors and uncaught exceptions, in Playwright's words (see the module's docstring).
        self.console: list[str] = []
        self._loaded = False

    def send(self, method: str, params: dict[str, Any] | None = None, *, timeout_s: float = 30.0) -> dict[str, Any]:
        return self.browser.send(method, params, self.session, timeout_s=timeout_s)

    def _on_event(self, method: str, params: dict[str, Any]) -> None:
        if method == "Runtime.consoleAPICalled":
            if params.get("type") == "error" and params.get("executionContextId", 0) != 0:
                self.console.append("error: " + " ".join(preview(a) for a in params.get("args") or []))
        elif method == "Log.entryAdded":
            entry = params.get("entry") or {}
            if entry.get("level") == "error" and entry.get("source") != "worker":
                self.console.append(f"error: {entry.get('text', '')}")
        elif method == "Runtime.exceptionThrown":
            self.console.append(f"pageerror: {exception_message(params.get('exceptionDetails') or {})}")
        elif method == "Page.loadEventFired":
            self._loaded = True

    def start(self, init_script: str, viewport: tuple[int, int]) -> None:
        """Events on, ``init_script`` before every document's own scripts, the viewport's size."""
        for domain in ("Page.enable", "Runtime.enable", "Log.enable", "Inspector.enable"):
            self.send(domain)
        self.send("Page.addScriptToEvaluateOnNewDocument", {"source": init_script})
        width, height = viewport
        self.send(
            "Emulation.setDeviceMetricsOverride",
            {
                "width": width,
                "height": height,
                "deviceScaleFactor": 1,
                "mobile": False,
                "screenWidth": width,
                "screenHeight": height,
            },
        )

    def goto(self, url: str, timeout_s: float) -> None:
        """Navigate and wait for the document's load event."""
        deadline = time.monotonic() + timeout_s
        self._loaded = False
        answer = self.send("Page.navigate", {"url": url}, timeout_s=timeout_s)
        if answer.get("errorText"):
            raise PageError(f"navigating to {url}: {answer['errorText']}")
        while not self._loaded:
            left = deadline - time.monotonic()
            if left <= 0:
                raise PageTimeout(f"the page did not load in {timeout_s:g} s ({url})")
            self.browser.pump(min(left, 1.0), self.session)

    def evaluate(self, source: str, arg: Any = None, *, function: bool = False, timeout_s: float = 30.0) -> Any:
        """The value of ``source`` in the page (``function``: called with ``arg``), awaited, by value."""
        expression = f"({source})({json.dumps(arg)})" if function else source
        answer = self.send(
            "Runtime.evaluate",
            {"expression": expression, "awaitPromise": True, "returnByValue": True, "userGesture": True},
            timeout_s=timeout_s,
        )
        if "exceptionDetails" in answer:
            raise PageError(exception_message(answer["exceptionDetails"]))
        return answer.get("result", {}).get("value")

    def wait_for(self, predicate: str, timeout_s: float) -> None:
        """Wait until the expression ``predicate`` is truthy, tested on every animation frame in the page."""
        limit_ms = int(timeout_s * 1000)
        waited = (
            "new Promise((resolve, reject) => { const end = performance.now() + " + str(limit_ms) + ";"
            " const tick = () => { let ok; try { ok = (" + predicate + "); } catch (e) { reject(e); return; }"
            " if (ok) resolve(true); else if (performance.now() > end) resolve(false);"
            " else requestAnimationFrame(tick); }; tick(); })"
        )
        if not self.evaluate(waited, timeout_s=timeout_s + 10):
            raise PageTimeout(f"waited {timeout_s:g} s for the page to hold: {predicate[:120]}")

    def dblclick(self, selector: str, timeout_s: float) -> None:
        """Double-click the element's centre once it can be clicked (see the module's docstring)."""
        where = """(sel) => new Promise((resolve) => {
          const frame = () => new Promise((r) => requestAnimationFrame(() => r()));
          (async () => {
            const el = document.querySelector(sel);
            if (!el || !el.isConnected) return resolve({ why: 'not attached' });
            el.scrollIntoView({ block: 'center', inline: 'center', behavior: 'instant' });
            const a = el.getBoundingClientRect();
            await frame(); await frame();
            const b = el.getBoundingClientRect();
            if (!b.width || !b.height || getComputedStyle(el).visibility === 'hidden') return resolve({ why: 'not visible' });
            if (a.x !== b.x || a.y !== b.y || a.width !== b.width || a.height !== b.height) return resolve({ why: 'not stable' });
            const x = b.x + b.width / 2, y = b.y + b.height / 2;
            const hit = document.elementFromPoint(x, y);
            if (!hit || !(hit === el || el.contains(hit))) return resolve({ why: 'covered by another element' });
            resolve({ x, y });
          })();
        })"""
        deadline = time.monotonic() + timeout_s
        why = "not attached"
        while time.monotonic() < deadline:
            got = self.evaluate(where, selector, function=True, timeout_s=max(1.0, deadline - time.monotonic()))
            if got and "x" in got:
                x, y = float(got["x"]), float(got["y"])
                self.send("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": x, "y": y})
                for count in (1, 2):
                    for kind in ("mousePressed", "mouseReleased"):
                        self.send(
                            "Input.dispatchMouseEvent",
                            {
                                "type": kind,
                                "x": x,
                                "y": y,
                                "button": "left",
                                "buttons": 1 if kind == "mousePressed" else 0,
                                "clickCount": count,
                            },
                        )
                return
            why = str((got or {}).get("why", why))
            time.sleep(0.05)
        raise PageTimeout(f"could not double-click {selector} in {timeout_s:g} s: {why}")

    def screenshot_png(self) -> bytes:
        shot = self.send("Page.captureScreenshot", {"format": "png", "optimizeForSpeed": True})
        return base64.b64decode(shot["data"])

    def close(self) -> None:
        self.browser._handlers.pop(self.session, None)
        self.browser.close_target(self.target_id)
