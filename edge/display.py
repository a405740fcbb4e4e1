"""The gate display: what the driver and the officer see for each passage.

State machine (:class:`DisplayMachine`, pure): a passage first shows the
edge's own verdict at once, marked "kiểm tra ngoại tuyến / offline check";
the aggregator's verdict for the *same event* replaces it when it arrives;
the screen goes back to idle ``idle_s`` after the last change. A verdict for
any other event (an earlier car, or one that arrives after the screen went
idle) is ignored here: the officers' alert monitor shows late alerts.

Outputs (:class:`GateDisplay`): a local web page for a kiosk browser (stdlib
``http.server``; the page follows the state through Server-Sent Events), a
coloured terminal line, and a GPIO hook (a command or a ``module:function``)
run on a worker thread so a slow relay never holds up the gate.
"""

from __future__ import annotations

import importlib
import logging
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from datetime import datetime
from enum import StrEnum
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TextIO
from urllib.parse import urlsplit
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from contract.messages import Color, LocalVerdict, Verdict, VerdictCode
from edge.config import DisplayConfig, GpioHookConfig

log = logging.getLogger(__name__)

# Vietnamese first, English second.
COLOR_TEXT: dict[Color, tuple[str, str]] = {
    Color.GREEN: ("MỜI QUA", "PLEASE PASS"),
    Color.YELLOW: ("MỜI QUA", "PLEASE PASS"),
    Color.RED: ("DỪNG LẠI", "STOP"),
    Color.INVALID: ("MÃ KHÔNG HỢP LỆ", "INVALID CODE"),
}
IDLE_TEXT = ("MỜI XUẤT TRÌNH MÃ QR", "PLEASE SHOW YOUR QR CODE")
OFFLINE_TEXT = ("Kiểm tra ngoại tuyến", "Offline check")
VERDICT_TEXT: dict[VerdictCode, tuple[str, str]] = {
    VerdictCode.CLEAR: ("Hợp lệ — không có cảnh báo y tế", "Valid — no health flag"),
    VerdictCode.F0: ("F0 — ca bệnh, mời gặp cán bộ y tế", "F0 — confirmed case, see the officer"),
    VerdictCode.F1: ("F1 — tiếp xúc gần với ca bệnh", "F1 — close contact of a case"),
    VerdictCode.F2: ("F2 — tiếp xúc với F1", "F2 — contact of an F1"),
    VerdictCode.F3: ("F3 — tiếp xúc với F2", "F3 — contact of an F2"),
    VerdictCode.RECOVERED: ("Đã khỏi bệnh", "Recovered"),
    VerdictCode.DECEASED_IDENTITY: (
        "Danh tính của người đã mất — kiểm tra giấy tờ",
        "Identity of a deceased person — check ID",
    ),
    VerdictCode.UNKNOWN_CITIZEN: (
        "Không có trong cơ sở dữ liệu dân cư",
        "Not in the population registry",
    ),
    VerdictCode.UNKNOWN_DECLARATION: (
        "Không tìm thấy tờ khai y tế",
        "Health declaration not found",
    ),
    VerdictCode.FORGED: ("Mã giả — chữ ký không đúng", "Forged code — bad signature"),
    VerdictCode.EXPIRED: ("Mã đã hết hạn — mời khai báo lại", "Code expired — declare again"),
    VerdictCode.NOT_YET_VALID: ("Mã chưa có hiệu lực", "Code not yet valid"),
    VerdictCode.REVOKED: ("Mã đã bị thu hồi", "Code revoked"),
    VerdictCode.MALFORMED: ("Mã hỏng, không đọc được", "Damaged code, cannot be read"),
    VerdictCode.OFFLINE_VALID: (
        "Chữ ký hợp lệ — chưa đối chiếu cơ sở dữ liệu",
        "Valid signature — registry not yet checked",
    ),
}


def doses_text(doses: int | None) -> tuple[str, str]:
    """The vaccination line for an aggregator verdict."""
    if doses is None or doses == 0:
        return ("Chưa có thông tin tiêm chủng", "No vaccination recorded")
    if doses == 1:
        return ("Đã tiêm 1 mũi vắc-xin", "1 vaccine dose")
    return (f"Đã tiêm {doses} mũi vắc-xin", f"{doses} vaccine doses")


class Phase(StrEnum):
    """Where the display is in a passage's life."""

    IDLE = "idle"
    LOCAL = "local"  # the edge's offline verdict
    FINAL = "final"  # the aggregator's verdict


class DisplayState(BaseModel):
    """Everything every output needs to render the gate (also the JSON of ``/state``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seq: int  # grows with every change; a page ignores anything older than it has
    phase: Phase
    color: Color | None = None
    code: VerdictCode | None = None
    event_id: UUID | None = None
    offline: bool = False
    vaccine_doses: int | None = None
    headline_vi: str
    headline_en: str
    detail_vi: str = ""
    detail_en: str = ""
    note_vi: str = ""
    note_en: str = ""
    label: str = ""
    shown_at: float = 0.0  # wall clock, Unix seconds


class DisplayMachine:
    """The display's state machine; pure, every method is given the time."""

    def __init__(self, idle_s: float, *, label: str = "") -> None:
        self.idle_s = idle_s
        self.label = label
        self.deadline: float | None = None  # monotonic time at which to go idle
        self._seq = 0
        self.state = DisplayState(
            seq=0, phase=Phase.IDLE, headline_vi=IDLE_TEXT[0], headline_en=IDLE_TEXT[1], label=label
        )

    def _show(self, state: dict[str, object]) -> DisplayState:
        self._seq += 1
        self.state = DisplayState.model_validate({"seq": self._seq, "label": self.label, **state})
        return self.state

    def local(
        self, event_id: UUID, verdict: LocalVerdict, *, now: float, wall: float
    ) -> DisplayState:
        """Show the edge's verdict for a new passage at once (replaces whatever was shown)."""
        self.deadline = now + self.idle_s
        headline, detail = COLOR_TEXT[verdict.color], VERDICT_TEXT[verdict.code]
        return self._show(
            {
                "phase": Phase.LOCAL,
                "color": verdict.color,
                "code": verdict.code,
                "event_id": event_id,
                "offline": True,
                "headline_vi": headline[0],
                "headline_en": headline[1],
                "detail_vi": detail[0],
                "detail_en": detail[1],
                "note_vi": OFFLINE_TEXT[0],
                "note_en": OFFLINE_TEXT[1],
                "shown_at": wall,
            }
        )

    def final(self, verdict: Verdict, *, now: float, wall: float) -> DisplayState | None:
        """Replace the shown event's verdict with the aggregator's; None if it is not shown."""
        shown = self.state
        if shown.phase is Phase.IDLE or shown.event_id != verdict.event_id:
            return None
        if shown.phase is Phase.FINAL and (shown.color, shown.code, shown.vaccine_doses) == (
            verdict.color,
            verdict.code,
            verdict.vaccine_doses,
        ):
            return None  # a redelivered verdict (QoS 1) changes nothing
        self.deadline = now + self.idle_s
        headline, detail = COLOR_TEXT[verdict.color], VERDICT_TEXT[verdict.code]
        passes = verdict.color in (Color.GREEN, Color.YELLOW)
        note = doses_text(verdict.vaccine_doses) if passes else ("", "")
        return self._show(
            {
                "phase": Phase.FINAL,
                "color": verdict.color,
                "code": verdict.code,
                "event_id": verdict.event_id,
                "offline": False,
                "vaccine_doses": verdict.vaccine_doses,
                "headline_vi": headline[0],
                "headline_en": headline[1],
                "detail_vi": detail[0],
                "detail_en": detail[1],
                "note_vi": note[0],
                "note_en": note[1],
                "shown_at": wall,
            }
        )

    def tick(self, *, now: float, wall: float) -> DisplayState | None:
        """Go idle once the deadline passed; None while nothing changes."""
        if self.deadline is None or now < self.deadline:
            return None
        self.deadline = None
        return self._show(
            {
                "phase": Phase.IDLE,
                "headline_vi": IDLE_TEXT[0],
                "headline_en": IDLE_TEXT[1],
                "shown_at": wall,
            }
        )


# --- hooks ----------------------------------------------------------------------

Hook = Callable[[DisplayState], None]


class HookError(RuntimeError):
    """A GPIO hook failed; the message says how."""


def command_hook(argv: list[str], timeout_s: float) -> Hook:
    """Run ``argv + [colour, code]`` for each state (``idle none`` when idle).

    The whole state is also in the environment as ``KIEMDICH_DISPLAY_STATE`` (JSON).
    """

    def run(state: DisplayState) -> None:
        color = state.color.value if state.color else "idle"
        code = state.code.value if state.code else "none"
        env = {
            **os.environ,
            "KIEMDICH_COLOR": color,
            "KIEMDICH_CODE": code,
            "KIEMDICH_OFFLINE": "1" if state.offline else "0",
            "KIEMDICH_DISPLAY_STATE": state.model_dump_json(),
        }
        try:
            done = subprocess.run(
                [*argv, color, code],
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise HookError(f"{argv[0]}: quá {timeout_s:g} s / timed out") from None
        except OSError as exc:
            raise HookError(f"{argv[0]}: {exc.strerror}") from None
        if done.returncode != 0:
            stderr = done.stderr.decode("utf-8", "replace").strip()[:200]
            raise HookError(f"{argv[0]}: exit {done.returncode}: {stderr}")

    return run


def function_hook(target: str) -> Hook:
    """Import ``module:function`` (the function may be a dotted attribute path)."""
    module_name, _, attr_path = target.partition(":")
    try:
        found: object = importlib.import_module(module_name)
    except ImportError as exc:
        raise HookError(f"{target}: không nạp được / cannot import: {exc}") from None
    for attr in attr_path.split("."):
        try:
            found = getattr(found, attr)
        except AttributeError:
            raise HookError(f"{target}: không có / no attribute {attr!r}") from None
    if not callable(found):
        raise HookError(f"{target}: không gọi được / not callable")
    return found  # type: ignore[return-value]


def load_hook(config: GpioHookConfig) -> Hook:
    """The hook a config names."""
    if config.command is not None:
        return command_hook(config.command, config.timeout_s)
    assert config.function is not None  # the config model guarantees one of them
    return function_hook(config.function)


# --- terminal ----------------------------------------------------------------------

_ANSI: dict[Color | None, str] = {
    Color.GREEN: "1;97;42",
    Color.YELLOW: "1;30;43",
    Color.RED: "1;97;41",
    Color.INVALID: "1;97;45",
    None: "0;37",
}


def terminal_line(state: DisplayState) -> str:
    """One coloured line for a terminal."""
    stamp = datetime.fromtimestamp(state.shown_at).strftime("%H:%M:%S") if state.shown_at else ""
    line = f"{stamp} \x1b[{_ANSI[state.color]}m {state.headline_vi} / {state.headline_en} \x1b[0m"
    if state.detail_vi:
        line += f" {state.detail_vi} / {state.detail_en}"
    if state.note_vi:
        line += f" [{state.note_vi} / {state.note_en}]"
    return line.strip()


# --- web page ----------------------------------------------------------------------

PAGE = """<!doctype html>
<html lang="vi">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Cổng kiểm dịch / Checkpoint gate</title>
<style>
html, body { margin: 0; height: 100%; overflow: hidden; }
body {
  font-family: "Noto Sans", "DejaVu Sans", "Segoe UI", system-ui, sans-serif;
  display: flex; flex-direction: column; justify-content: center; align-items: center;
  text-align: center; color: #fff; background: #263238; transition: background .15s;
}
body.green { background: #0b7d3b; }
body.yellow { background: #f2c100; color: #111; }
body.red { background: #c31d1d; }
body.invalid { background: #5e1a91; }
#icon { font-size: 20vmin; line-height: 1; font-weight: 900; }
#headline { font-size: 14vmin; font-weight: 800; line-height: 1.05; margin: .1em .3em 0; }
#headline_en { font-size: 6.5vmin; font-weight: 600; opacity: .85; margin-bottom: .6em; }
#detail { font-size: 6vmin; font-weight: 700; margin: 0 .6em; }
#detail_en { font-size: 4.2vmin; opacity: .85; margin: .2em .6em 0; }
#note { position: fixed; top: 3vmin; left: 50%; transform: translateX(-50%);
  font-size: 4vmin; font-weight: 700; padding: .15em .9em; white-space: nowrap;
  border: .5vmin solid currentColor; border-radius: 2em; }
#note:empty { display: none; }
#foot { position: fixed; bottom: 2.5vmin; left: 0; right: 0; font-size: 3vmin; opacity: .75; }
#link { display: none; position: fixed; top: 0; left: 0; right: 0; padding: .4em;
  background: #000; color: #ffeb3b; font-size: 3vmin; }
body.disconnected #link { display: block; }
</style>
</head>
<body class="idle">
<div id="link">Mất kết nối với thiết bị — đang thử lại / Lost the device — retrying</div>
<div id="note"></div>
<div id="icon">▣</div>
<div id="headline"></div>
<div id="headline_en"></div>
<div id="detail"></div>
<div id="detail_en"></div>
<div id="foot"></div>
<script>
"use strict";
const ICONS = {green: "✓", yellow: "✓", red: "✕", invalid: "!", idle: "▣"};
let lastSeq = -1;
let linkDown = false;
function render(s) {
  if (s.seq < lastSeq) return;
  lastSeq = s.seq;
  const color = s.color || "idle";
  document.body.className = color + (linkDown ? " disconnected" : "");
  document.getElementById("icon").textContent = ICONS[color];
  for (const key of ["headline", "detail"]) {
    document.getElementById(key).textContent = s[key + "_vi"];
    document.getElementById(key + "_en").textContent = s[key + "_en"];
  }
  document.getElementById("note").textContent =
    s.note_vi ? s.note_vi + " / " + s.note_en : "";
  const at = s.shown_at ? new Date(s.shown_at * 1000).toLocaleTimeString("vi-VN") : "";
  document.getElementById("foot").textContent = [s.label, at].filter(Boolean).join(" · ");
}
function link(down) {
  linkDown = down;
  document.body.classList.toggle("disconnected", down);
}
const events = new EventSource("/events");
events.addEventListener("state", (e) => { link(false); render(JSON.parse(e.data)); });
events.onerror = () => link(true);
</script>
</body>
</html>
"""

_SSE_KEEPALIVE_S = 15.0


class _Broadcast:
    """The latest state, and a way for each SSE client to wait for a newer one."""

    def __init__(self, state: DisplayState) -> None:
        self._cond = threading.Condition()
        self._state = state
        self._closed = False

    def publish(self, state: DisplayState) -> None:
        with self._cond:
            self._state = state
            self._cond.notify_all()

    def current(self) -> DisplayState:
        with self._cond:
            return self._state

    def wait_newer(self, seq: int, timeout: float) -> DisplayState | None:
        """The state once its seq differs from ``seq``; None on timeout or close."""
        with self._cond:
            self._cond.wait_for(lambda: self._state.seq != seq or self._closed, timeout)
            return None if self._closed or self._state.seq == seq else self._state

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class _DisplayServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], broadcast: _Broadcast) -> None:
        super().__init__(address, _Handler)
        self.broadcast = broadcast


class _Handler(BaseHTTPRequestHandler):
    server: _DisplayServer
    server_version = "kiemdich-gate"

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/":
            self._send(HTTPStatus.OK, "text/html; charset=utf-8", PAGE.encode())
        elif path == "/state":
            body = self.server.broadcast.current().model_dump_json().encode()
            self._send(HTTPStatus.OK, "application/json", body)
        elif path == "/events":
            self._stream()
        else:
            self._send(HTTPStatus.NOT_FOUND, "text/plain; charset=utf-8", b"not found\n")

    def _send(self, status: HTTPStatus, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _stream(self) -> None:
        broadcast = self.server.broadcast
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        state: DisplayState | None = broadcast.current()
        try:
            self.wfile.write(b"retry: 2000\n\n")
            seq = -1
            while not broadcast.closed:
                if state is None:
                    self.wfile.write(b": keep-alive\n\n")
                else:
                    data = state.model_dump_json()
                    self.wfile.write(f"id: {state.seq}\nevent: state\ndata: {data}\n\n".encode())
                    seq = state.seq
                self.wfile.flush()
                state = broadcast.wait_newer(seq, _SSE_KEEPALIVE_S)
        except (BrokenPipeError, ConnectionResetError):
            return  # the browser went away; nothing to clean up

    def log_message(self, format: str, *args: object) -> None:
        log.debug("display http: " + format, *args)


# --- the display -----------------------------------------------------------------------


class GateDisplay:
    """Drives every configured output from the :class:`DisplayMachine`.

    ``show_local`` is called by the decode path, ``show_verdict`` by the MQTT
    dispatcher; both return at once (outputs never block them).
    """

    def __init__(
        self,
        config: DisplayConfig,
        *,
        label: str = "",
        out: TextIO | None = None,
        hook: Hook | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self._machine = DisplayMachine(config.idle_s, label=label)
        self._out = out if out is not None else sys.stdout
        if hook is None and config.gpio is not None:
            hook = load_hook(config.gpio)
        self._hook = hook
        self._clock = clock
        self._wall = wall
        self._cond = threading.Condition()
        self._stopping = False
        self._broadcast = _Broadcast(self._machine.state)
        self._server: _DisplayServer | None = None
        self._threads: list[threading.Thread] = []
        self._hook_queue: queue.Queue[DisplayState | None] = queue.Queue(maxsize=1)
        self.hook_calls = 0
        self.hook_failures = 0
        self.hook_skipped = 0

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        """Start the web server (if enabled), the idle timer and the hook worker."""
        web = self.config.web
        if web.enabled:
            self._server = _DisplayServer((web.host, web.port), self._broadcast)
            self._spawn("display-web", self._server.serve_forever)
            log.info("gate display at %s", self.url)
        self._spawn("display-idle", self._idle_loop)
        if self._hook is not None:
            self._spawn("display-hook", self._hook_loop)
        with self._cond:
            self._emit(self._machine.state)

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop every thread; SSE clients see the stream end."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._broadcast.close()
        self._offer(None)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()

    @property
    def url(self) -> str | None:
        """The page's address (with the real port when the config asked for port 0)."""
        if self._server is None:
            return None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/"

    # -- inputs --------------------------------------------------------------------------

    def show_local(self, event_id: UUID, verdict: LocalVerdict) -> DisplayState:
        """Show the edge's offline verdict for a new passage."""
        with self._cond:
            state = self._machine.local(event_id, verdict, now=self._clock(), wall=self._wall())
            self._emit(state)
            self._cond.notify_all()
            return state

    def show_verdict(self, verdict: Verdict) -> DisplayState | None:
        """Show the aggregator's verdict if its event is on screen; None when ignored."""
        with self._cond:
            state = self._machine.final(verdict, now=self._clock(), wall=self._wall())
            if state is None:
                log.debug("verdict for %s ignored: not on screen", verdict.event_id)
                return None
            self._emit(state)
            self._cond.notify_all()
            return state

    def state(self) -> DisplayState:
        """What is shown now."""
        with self._cond:
            return self._machine.state

    # -- outputs -------------------------------------------------------------------------

    def _emit(self, state: DisplayState) -> None:
        self._broadcast.publish(state)
        if self.config.terminal:
            print(terminal_line(state), file=self._out, flush=True)
        if self._hook is not None:
            self._offer(state)

    def _offer(self, state: DisplayState | None) -> None:
        # Only the newest state matters to a light: replace one still waiting.
        while True:
            try:
                self._hook_queue.put_nowait(state)
                return
            except queue.Full:
                with suppress(queue.Empty):
                    self._hook_queue.get_nowait()
                    self.hook_skipped += 1

    def _hook_loop(self) -> None:
        assert self._hook is not None
        while True:
            state = self._hook_queue.get()
            if state is None:
                return
            self.hook_calls += 1
            try:
                self._hook(state)
            except HookError as exc:
                self.hook_failures += 1
                log.warning("gpio hook failed: %s", exc)
            # A user's hook may raise anything; the display must outlive it.
            except Exception:
                self.hook_failures += 1
                log.exception("gpio hook raised")

    def _idle_loop(self) -> None:
        with self._cond:
            while not self._stopping:
                deadline = self._machine.deadline
                if deadline is None:
                    self._cond.wait()
                    continue
                remaining = deadline - self._clock()
                if remaining > 0:
                    self._cond.wait(remaining)
                    continue
                state = self._machine.tick(now=self._clock(), wall=self._wall())
                if state is not None:
                    self._emit(state)
