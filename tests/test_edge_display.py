"""The gate display: state machine, web page + SSE from a real server, hooks, a real browser."""

from __future__ import annotations

import io
import json
import stat
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID, uuid4

import httpx
import pytest

from contract.messages import Color, LocalVerdict, Verdict, VerdictCode
from edge.config import DisplayConfig
from edge.display import (
    COLOR_TEXT,
    IDLE_TEXT,
    OFFLINE_TEXT,
    VERDICT_TEXT,
    DisplayMachine,
    DisplayState,
    GateDisplay,
    HookError,
    Phase,
    command_hook,
    function_hook,
    terminal_line,
)


def wait_until(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not reached within {timeout} s")
        time.sleep(0.02)


def local(color: Color = Color.RED, code: VerdictCode = VerdictCode.F0) -> LocalVerdict:
    return LocalVerdict(color=color, code=code)


def final(
    event_id: UUID,
    color: Color = Color.GREEN,
    code: VerdictCode = VerdictCode.CLEAR,
    doses: int | None = 2,
) -> Verdict:
    return Verdict(
        event_id=event_id,
        device_id="gate-01",
        color=color,
        code=code,
        vaccine_doses=doses,
        decided_at=datetime.now(UTC),
    )


# --- the state machine ---------------------------------------------------------------


def test_local_verdict_shows_at_once_marked_offline() -> None:
    machine = DisplayMachine(idle_s=8, label="Làn 1")
    assert machine.state.phase is Phase.IDLE
    assert machine.state.headline_vi == IDLE_TEXT[0]
    event = uuid4()
    state = machine.local(event, local(), now=100.0, wall=1.7e9)
    assert state.phase is Phase.LOCAL and state.offline
    assert (state.color, state.code, state.event_id) == (Color.RED, VerdictCode.F0, event)
    assert (state.note_vi, state.note_en) == OFFLINE_TEXT
    assert state.headline_vi == "DỪNG LẠI" and state.label == "Làn 1"
    assert state.seq == 1 and machine.deadline == 108.0


def test_aggregator_verdict_replaces_the_same_event() -> None:
    machine = DisplayMachine(idle_s=8)
    event = uuid4()
    machine.local(event, local(Color.GREEN, VerdictCode.OFFLINE_VALID), now=0.0, wall=0.0)
    state = machine.final(final(event, Color.YELLOW, VerdictCode.CLEAR, 1), now=3.0, wall=3.0)
    assert state is not None
    assert state.phase is Phase.FINAL and not state.offline
    assert (state.color, state.code, state.vaccine_doses) == (Color.YELLOW, VerdictCode.CLEAR, 1)
    assert state.note_vi == "Đã tiêm 1 mũi vắc-xin"
    assert machine.deadline == 11.0  # the final verdict gets its own full time on screen
    # QoS 1 redelivery of the same verdict changes nothing.
    assert machine.final(final(event, Color.YELLOW, VerdictCode.CLEAR, 1), now=4, wall=4) is None


def test_verdicts_for_other_events_are_ignored() -> None:
    machine = DisplayMachine(idle_s=8)
    first, second = uuid4(), uuid4()
    assert machine.final(final(first), now=0.0, wall=0.0) is None  # nothing on screen yet
    machine.local(first, local(), now=0.0, wall=0.0)
    machine.local(second, local(Color.INVALID, VerdictCode.FORGED), now=1.0, wall=1.0)
    assert machine.final(final(first), now=2.0, wall=2.0) is None  # an earlier car
    assert machine.state.event_id == second


def test_idle_after_the_timeout_and_late_verdicts_stay_off() -> None:
    machine = DisplayMachine(idle_s=5)
    event = uuid4()
    machine.local(event, local(), now=10.0, wall=10.0)
    assert machine.tick(now=14.9, wall=14.9) is None
    idle = machine.tick(now=15.0, wall=15.0)
    assert idle is not None and idle.phase is Phase.IDLE and idle.color is None
    assert machine.tick(now=99.0, wall=99.0) is None
    assert machine.final(final(event, Color.RED, VerdictCode.F0), now=16, wall=16) is None
    assert [machine.state.seq] == [2]


def test_every_code_and_colour_has_vietnamese_and_english_text() -> None:
    assert set(VERDICT_TEXT) == set(VerdictCode)
    assert set(COLOR_TEXT) == set(Color)
    for vi, en in [*VERDICT_TEXT.values(), *COLOR_TEXT.values(), IDLE_TEXT, OFFLINE_TEXT]:
        assert vi and en and vi != en


def test_red_final_verdict_has_no_vaccination_note() -> None:
    machine = DisplayMachine(idle_s=5)
    event = uuid4()
    machine.local(event, local(Color.GREEN, VerdictCode.OFFLINE_VALID), now=0, wall=0)
    state = machine.final(final(event, Color.RED, VerdictCode.F1, doses=2), now=1, wall=1)
    assert state is not None and state.note_vi == "" and state.detail_vi.startswith("F1")


def test_terminal_line_is_coloured() -> None:
    machine = DisplayMachine(idle_s=5)
    line = terminal_line(machine.local(uuid4(), local(), now=0, wall=1.7e9))
    assert "\x1b[1;97;41m DỪNG LẠI / STOP \x1b[0m" in line
    assert "[Kiểm tra ngoại tuyến / Offline check]" in line


# --- the running display ------------------------------------------------------------------


@pytest.fixture
def displays() -> Iterator[Callable[..., GateDisplay]]:
    started: list[GateDisplay] = []

    def start(**kwargs: object) -> GateDisplay:
        config = kwargs.pop("config", DisplayConfig(web={"port": 0}))
        display = GateDisplay(config, **kwargs)  # type: ignore[arg-type]
        display.start()
        started.append(display)
        return display

    yield start
    for display in started:
        display.stop()


def read_event(lines: Iterator[str]) -> dict[str, object]:
    """The next ``event: state`` of an SSE stream, parsed."""
    fields: dict[str, str] = {}
    for line in lines:
        if line == "":
            if fields.get("event") == "state":
                return json.loads(fields["data"])
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(": ")
            fields[name] = value
    raise AssertionError("stream ended")


def test_web_page_state_and_sse_stream(displays) -> None:
    display = displays(label="Chốt Bắc Thăng Long · làn 1")
    assert display.url is not None
    page = urllib.request.urlopen(display.url, timeout=10)
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    html = page.read().decode()
    assert '<html lang="vi">' in html and 'new EventSource("/events")' in html
    state = json.loads(urllib.request.urlopen(display.url + "state", timeout=10).read())
    assert state["phase"] == "idle" and state["label"] == "Chốt Bắc Thăng Long · làn 1"
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(display.url + "nope", timeout=10)
    assert missing.value.code == 404

    event = uuid4()
    with httpx.stream("GET", display.url + "events", timeout=10) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.iter_lines()
        assert read_event(lines)["phase"] == "idle"
        display.show_local(event, local())
        shown = read_event(lines)
        assert (shown["phase"], shown["color"], shown["offline"]) == ("local", "red", True)
        assert shown["event_id"] == str(event)
        assert shown["note_vi"] == "Kiểm tra ngoại tuyến"
        display.show_verdict(final(event, Color.RED, VerdictCode.F0))
        confirmed = read_event(lines)
        assert (confirmed["phase"], confirmed["offline"]) == ("final", False)
        assert confirmed["seq"] > shown["seq"]
    state = json.loads(urllib.request.urlopen(display.url + "state", timeout=10).read())
    assert state["phase"] == "final" and state["code"] == "f0"


def test_sse_client_sees_the_stream_end_on_stop() -> None:
    display = GateDisplay(DisplayConfig(web={"port": 0}))
    display.start()
    assert display.url is not None
    with httpx.stream("GET", display.url + "events", timeout=10) as response:
        lines = response.iter_lines()
        read_event(lines)
        display.stop()
        with pytest.raises(AssertionError, match="stream ended"):
            read_event(lines)


def test_display_goes_idle_by_itself(displays) -> None:
    display = displays(config=DisplayConfig(web={"enabled": False}, idle_s=0.2))
    display.show_local(uuid4(), local())
    assert display.state().phase is Phase.LOCAL
    wait_until(lambda: display.state().phase is Phase.IDLE)


def test_terminal_output(displays) -> None:
    out = io.StringIO()
    display = displays(config=DisplayConfig(web={"enabled": False}, terminal=True), out=out)
    display.show_local(uuid4(), local(Color.INVALID, VerdictCode.EXPIRED))
    lines = out.getvalue().splitlines()
    assert "MỜI XUẤT TRÌNH MÃ QR" in lines[0]
    assert "MÃ KHÔNG HỢP LỆ / INVALID CODE" in lines[1] and "Mã đã hết hạn" in lines[1]


# --- hooks ---------------------------------------------------------------------------------

RECORDED: list[DisplayState] = []


def record_hook(state: DisplayState) -> None:
    """A ``module:function`` hook for the tests."""
    RECORDED.append(state)


def test_function_hook_from_config_is_called_with_the_state(displays) -> None:
    RECORDED.clear()
    config = DisplayConfig(
        web={"enabled": False}, gpio={"function": "tests.test_edge_display:record_hook"}
    )
    display = displays(config=config)
    event = uuid4()
    display.show_local(event, local())
    wait_until(lambda: any(s.event_id == event for s in RECORDED))
    assert RECORDED[-1].color is Color.RED and RECORDED[-1].offline


def test_function_hook_errors() -> None:
    with pytest.raises(HookError, match="cannot import"):
        function_hook("no_such_module_xyz:f")
    with pytest.raises(HookError, match="no attribute"):
        function_hook("os.path:no_such_function")
    with pytest.raises(HookError, match="not callable"):
        function_hook("os:sep")


def _script(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "gate-light"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_command_hook_gets_colour_code_and_state(tmp_path: Path, displays) -> None:
    log = tmp_path / "calls.txt"
    script = _script(tmp_path, f'echo "$1 $2 $KIEMDICH_OFFLINE $KIEMDICH_COLOR" >> {log}\n')
    config = DisplayConfig(web={"enabled": False}, gpio={"command": [str(script)]})
    display = displays(config=config)
    wait_until(lambda: log.exists() and log.read_text() == "idle none 0 idle\n")
    display.show_local(uuid4(), local())
    wait_until(lambda: log.read_text().splitlines()[-1] == "red f0 1 red")


def test_failing_hook_is_counted_and_the_display_carries_on(tmp_path: Path, displays) -> None:
    script = _script(tmp_path, "echo relay jammed >&2\nexit 3\n")
    config = DisplayConfig(web={"enabled": False}, gpio={"command": [str(script)]}, idle_s=600)
    display = displays(config=config)
    wait_until(lambda: display.hook_failures == 1)  # the idle screen at start
    event = uuid4()
    display.show_local(event, local())
    wait_until(lambda: display.hook_failures == 2)
    assert display.state().event_id == event
    assert display.show_verdict(final(event)) is not None
    wait_until(lambda: display.hook_failures == 3)
    with pytest.raises(HookError, match="exit 3: relay jammed"):
        command_hook([str(script)], 5)(DisplayMachine(1).state)


def test_slow_hook_never_blocks_and_gets_the_newest_state(displays) -> None:
    release = threading.Event()
    received: list[DisplayState] = []

    def slow(state: DisplayState) -> None:
        release.wait(30)
        received.append(state)

    display = displays(config=DisplayConfig(web={"enabled": False}), hook=slow)
    events = [uuid4() for _ in range(5)]
    for event in events:
        display.show_local(event, local())
    # Every show_local returned while the hook was still stuck on its first call.
    assert not release.is_set() and received == []
    assert display.state().event_id == events[-1]
    release.set()
    wait_until(lambda: bool(received) and received[-1].event_id == events[-1])
    assert display.hook_skipped >= 3
    assert len(received) <= 3


def test_command_hook_timeout(tmp_path: Path) -> None:
    script = _script(tmp_path, "sleep 30\n")
    with pytest.raises(HookError, match="timed out"):
        command_hook([str(script)], 0.2)(DisplayMachine(1).state)


# --- a real browser ----------------------------------------------------------------------------


@pytest.mark.browser
def test_gate_display_in_headless_chromium(displays, screenshot_path, browser) -> None:
    # The session's one Playwright instance (tests/fixtures/web.py): a second
    # sync_playwright() in the same process refuses to start inside the first's loop.
    shot = screenshot_path("gate-display-red.png")
    display = displays(
        config=DisplayConfig(web={"port": 0}, idle_s=600),
        label="Chốt Bắc Thăng Long · làn 1 · vào",
    )
    assert display.url is not None
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    try:
        page = context.new_page()
        page.goto(display.url)
        page.wait_for_selector("body.idle")
        assert page.inner_text("#headline") == IDLE_TEXT[0]
        display.show_local(uuid4(), local(Color.RED, VerdictCode.F0))
        page.wait_for_selector("body.red")
        assert page.inner_text("#headline") == "DỪNG LẠI"
        assert page.inner_text("#headline_en") == "STOP"
        assert page.inner_text("#note") == "Kiểm tra ngoại tuyến / Offline check"
        # The colour fades in over 150 ms; the screenshot wants the final colour.
        page.wait_for_function(
            "getComputedStyle(document.body).backgroundColor === 'rgb(195, 29, 29)'"
        )
        page.screenshot(path=str(shot))
    finally:
        context.close()
    assert shot.stat().st_size > 10_000
