"""The edge device config: example file, located errors, secrets, remote updates, fuzzing."""

from __future__ import annotations

import functools
import io
import json
import re
import string
import typing
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from contract.messages import DeviceConfigUpdate, parse_message
from contract.token import Keyring
from edge.config import (
    CameraConfig,
    ConfigError,
    EdgeConfig,
    SourceKind,
    UpdateRefusedError,
    apply_update,
    load_config,
    parse_source,
    redact_uri,
    validate_main,
)

EXAMPLE = Path(__file__).resolve().parents[1] / "firmware_config" / "example-gate.yaml"
ENV = {"KIEMDICH_MQTT_PASSWORD": "hunter2-secret"}

MINIMAL = """\
device:
  id: gate-01
  checkpoint_id: cp-north
  lane: 1
  direction: in
camera:
  source: v4l2:/dev/video0
  exposure: 800
verify:
  keyring: keys.json
mqtt:
  host: 127.0.0.1
  username: gate-01
  password: ${KIEMDICH_MQTT_PASSWORD}
"""


def write(tmp_path: Path, text: str, name: str = "gate.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def errors_of(path: Path, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path, env=ENV if env is None else env)
    assert caught.value.errors, "a ConfigError always carries at least one reason"
    return caught.value.errors


# --- the example ------------------------------------------------------------------


def test_example_config_validates() -> None:
    config = load_config(EXAMPLE, env=ENV)
    assert config.device.id == "gate-hn-bt-01"
    assert config.camera.spec.kind is SourceKind.V4L2
    assert config.camera.exposure == 1000.0
    assert config.mqtt.password is not None
    assert config.mqtt.password.get_secret_value() == "hunter2-secret"


def _nested_model(annotation: object) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _nested_model(arg)
        if found is not None:
            return found
    return None


def _field_paths(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = []
    for name, field in model.model_fields.items():
        path = (*prefix, name)
        paths.append(path)
        nested = _nested_model(field.annotation)
        if nested is not None:
            paths.extend(_field_paths(nested, path))
    return paths


def test_example_sets_or_documents_every_key() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    readme = (EXAMPLE.parent / "README.md").read_text(encoding="utf-8")
    for path in _field_paths(EdgeConfig):
        node: object = data
        for part in path[:-1]:
            node = node[part] if isinstance(node, dict) else None
        if isinstance(node, dict):
            assert path[-1] in node, f"example-gate.yaml does not set {'.'.join(path)}"
        else:
            # Inside a section left null (display.gpio): shown as a commented line.
            assert re.search(rf"#\s+{path[-1]}:", text), f"{'.'.join(path)} is not shown"
        assert f"`{path[-1]}" in readme or f".{path[-1]}`" in readme, (
            f"README.md does not document {'.'.join(path)}"
        )


def test_validate_main_ok_prints_summary_without_secrets(
    tmp_path: Path, keyring: Keyring, monkeypatch: pytest.MonkeyPatch
) -> None:
    ring = tmp_path / "keyring.json"
    keyring.save(ring)
    text = EXAMPLE.read_text(encoding="utf-8").replace(
        "/var/lib/kiemdich/gate-hn-bt-01/keyring.json", str(ring)
    )
    text = text.replace("source: v4l2:/dev/video0", "source: rtsp://admin:${CAM_PW}@10.1.2.3/live")
    for key in ("width", "height", "fps", "exposure", "gain", "focus", "fourcc", "buffer_size"):
        text = re.sub(rf"^  {key}: .*$", f"  {key}: null", text, flags=re.M)
    path = write(tmp_path, text)
    monkeypatch.setenv("KIEMDICH_MQTT_PASSWORD", "hunter2-secret")
    monkeypatch.setenv("CAM_PW", "cam-pass-777")
    out, err = io.StringIO(), io.StringIO()
    assert validate_main(path, out=out, err=err) == 0, err.getvalue()
    printed = out.getvalue()
    assert printed.startswith(f"OK: {path}")
    assert "gate-hn-bt-01" in printed
    assert "rtsp://admin:***@10.1.2.3/live" in printed
    assert "hunter2-secret" not in printed
    assert "cam-pass-777" not in printed


def test_validate_main_reports_each_error_with_its_line(tmp_path: Path) -> None:
    text = MINIMAL.replace("lane: 1", "lane: 99").replace("exposure: 800", "exposre: 800")
    path = write(tmp_path, text)
    out, err = io.StringIO(), io.StringIO()
    assert validate_main(path, out=out, err=err) == 1
    lines = err.getvalue().splitlines()
    assert any(line.startswith(f"{path}:4: device.lane:") for line in lines)
    assert any(line.startswith(f"{path}:8: camera.exposre:") for line in lines)
    assert out.getvalue() == ""


def test_validate_main_checks_the_keyring_file(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("KIEMDICH_MQTT_PASSWORD", "x")
    path = write(tmp_path, MINIMAL)
    err = io.StringIO()
    assert validate_main(path, out=io.StringIO(), err=err) == 1
    assert f"{path}:10: verify.keyring:" in err.getvalue()


def test_validate_main_checks_the_gpio_hook(tmp_path: Path, keyring: Keyring, monkeypatch) -> None:
    monkeypatch.setenv("KIEMDICH_MQTT_PASSWORD", "x")
    ring = tmp_path / "keys.json"
    keyring.save(ring)
    text = MINIMAL.replace("keyring: keys.json", f"keyring: {ring}")
    text += "display:\n  gpio:\n    function: no_such_module_xyz:light\n"
    path = write(tmp_path, text)
    err = io.StringIO()
    assert validate_main(path, out=io.StringIO(), err=err) == 1
    assert f"{path}:17: display.gpio.function: " in err.getvalue()
    assert "no_such_module_xyz" in err.getvalue()
    path = write(
        tmp_path, text.replace("function: no_such_module_xyz:light", "command: [echo, hi]")
    )
    assert validate_main(path, out=io.StringIO(), err=io.StringIO()) == 0


# --- located errors -----------------------------------------------------------------

CASES = [
    # (edit applied to MINIMAL, expected line, expected key path, words in the message)
    (("camera:", "colour: red\ncamera:"), 6, "colour", "unknown key"),
    (("exposure: 800", "exposre: 800"), 8, "camera.exposre", "did you mean 'exposure'"),
    (("lane: 1", "lane: many"), 4, "device.lane", "integer"),
    (("lane: 1", "lane: 99"), 4, "device.lane", "less than or equal to 63"),
    (("id: gate-01", "id: Gate 01"), 2, "device.id", "pattern"),
    (("direction: in", "direction: sideways"), 5, "device.direction", "'in' or 'out'"),
    (("  direction: in\n", ""), 1, "device.direction", "required"),
    (("source: v4l2:/dev/video0", "source: ftp://x/y"), 7, "camera.source", "rtsp://"),
    (("exposure: 800", "exposure: fast"), 8, "camera.exposure", "auto"),
    (
        ("exposure: 800", "exposure: 800\n  reconnect: {initial_s: 5, max_s: 1}"),
        9,
        "camera.reconnect",
        "max_s",
    ),
    (("source: v4l2:/dev/video0", "source: rtsp://cam.local/live"), 6, "camera", "v4l2"),
    (("verify:", "vision:\n  roi: {x0: 0.5, x1: 0.51}\nverify:"), 10, "vision.roi", "x0 < x1"),
    (
        ("verify:", "display:\n  gpio:\n    command: [light, [on]]\nverify:"),
        11,
        "display.gpio.command[1]",
        "string",
    ),
    (("verify:", "display:\n  gpio: {}\nverify:"), 10, "display.gpio", "exactly one"),
    (("lane: 1", "lane: 1\n  lane: 2"), 5, "device.lane", "duplicate key (first at line 4)"),
    (("keyring: keys.json", "keyring: [1, 2]"), 10, "verify.keyring", "path"),
    (("mqtt:", "status_interval_s: 0\nmqtt:"), 11, "status_interval_s", "greater than"),
]


@pytest.mark.parametrize(("edit", "line", "key", "words"), CASES, ids=[c[2] for c in CASES])
def test_error_names_line_and_key(
    tmp_path: Path, edit: tuple[str, str], line: int, key: str, words: str
) -> None:
    assert edit[0] in MINIMAL
    path = write(tmp_path, MINIMAL.replace(edit[0], edit[1], 1))
    errors = errors_of(path)
    expected = f"{path}:{line}: {key}: "
    matching = [e for e in errors if e.startswith(expected)]
    assert matching, f"no error starting {expected!r} in {errors}"
    assert words in matching[0]


def test_several_errors_are_all_reported_in_file_order(tmp_path: Path) -> None:
    text = MINIMAL.replace("lane: 1", "lane: -1").replace("host: 127.0.0.1", "hots: x")
    errors = errors_of(write(tmp_path, text), env={})
    lines = [int(e.split(":")[1]) for e in errors]
    assert lines == sorted(lines)
    keys = [e.split(": ")[1] for e in errors]
    assert keys == ["device.lane", "mqtt.hots", "mqtt.password"]


def test_union_errors_collapse_to_one_line_per_key(tmp_path: Path) -> None:
    errors = errors_of(write(tmp_path, MINIMAL.replace("exposure: 800", "exposure: [1]")))
    assert len([e for e in errors if ": camera.exposure: " in e]) == 1


def test_missing_env_secret_names_variable_not_value(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    errors = errors_of(path, env={})
    assert errors == [
        f"{path}:14: mqtt.password: biến môi trường KIEMDICH_MQTT_PASSWORD chưa được đặt / "
        "environment variable KIEMDICH_MQTT_PASSWORD is not set"
    ]


def test_env_default_and_dollar_escape(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        "${KIEMDICH_MQTT_PASSWORD}", "pre-$${literal}-${KIEMDICH_MQTT_PASSWORD:-fallback}"
    )
    config = load_config(write(tmp_path, text), env={})
    assert config.mqtt.password is not None
    assert config.mqtt.password.get_secret_value() == "pre-${literal}-fallback"


def test_errors_never_echo_secrets(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        "source: v4l2:/dev/video0", "source: rtsp://u:${CAM_PW}@cam.local/live"
    ).replace("port: 1883", "")
    text = text.replace("host: 127.0.0.1", "host: 127.0.0.1\n  port: ${KIEMDICH_MQTT_PASSWORD}")
    env = {"KIEMDICH_MQTT_PASSWORD": "hunter2-secret", "CAM_PW": "cam-pass-777"}
    errors = errors_of(write(tmp_path, text), env=env)
    joined = "\n".join(errors)
    assert "mqtt.port" in joined and "camera" in joined
    assert "hunter2-secret" not in joined
    assert "cam-pass-777" not in joined


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("device:\n  id: [unclosed\n", r":3:1: lỗi cú pháp YAML / YAML syntax error: "),
        ("device:\n  id: a\n   lane: 2\n", r":3:8: lỗi cú pháp YAML / YAML syntax error: mapping"),
        ("device: {id: a\n", r":2:1: lỗi cú pháp YAML / YAML syntax error: "),
        ("a: b\nc: \x07\n", r":2: lỗi ký tự / bad character"),
        ("", r":1: tệp cấu hình rỗng / the config file is empty"),
        ("# only a comment\n", r":1: tệp cấu hình rỗng"),
        ("- a\n- b\n", r":1: tài liệu phải là một bảng khóa / the document must be a mapping"),
        ("a: !!python/object:os.system x\n", r":1:4: lỗi cú pháp YAML / YAML syntax error: could"),
        ("a: &x [*x]\n", r":1: "),
    ],
)
def test_bad_yaml_gives_line_and_clear_message(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    errors = errors_of(path)
    assert re.match(re.escape(str(path)) + expected, errors[0]), errors


def test_not_utf8_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"device:\n  id: c\xf4ng\n")
    assert errors_of(path) == [f"{path}:2: không phải UTF-8 / not UTF-8 text"]
    missing = tmp_path / "nope.yaml"
    assert errors_of(missing)[0].startswith(f"{missing}: không đọc được / cannot read:")


def test_alias_bomb_is_refused(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    errors = errors_of(write(tmp_path, "\n".join(lines) + "\n"))
    assert "document too large" in errors[0]


# --- sources ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "kind", "target"),
    [
        (0, SourceKind.V4L2, 0),
        ("2", SourceKind.V4L2, 2),
        ("v4l2:1", SourceKind.V4L2, 1),
        ("v4l2:/dev/video0", SourceKind.V4L2, "/dev/video0"),
        ("rtsp://u:p@10.0.0.5:554/s", SourceKind.RTSP, "rtsp://u:p@10.0.0.5:554/s"),
        ("https://cam/mjpeg", SourceKind.HTTP, "https://cam/mjpeg"),
        ("file:/data/clip.mp4", SourceKind.FILE, "/data/clip.mp4"),
        ("file:///data/clip.mp4", SourceKind.FILE, "/data/clip.mp4"),
        ("file:clips/a.avi", SourceKind.FILE, "clips/a.avi"),
        ("synthetic:", SourceKind.SYNTHETIC, ""),
    ],
)
def test_parse_source(value: str | int, kind: SourceKind, target: str | int) -> None:
    spec = parse_source(value)
    assert (spec.kind, spec.target) == (kind, target)


@pytest.mark.parametrize(
    "value",
    [-1, True, "", "video0", "v4l2:", "v4l2:video", "rtsp:/x", "http://", "file:", "ftp://h"],
)
def test_parse_source_refuses(value: str | int) -> None:
    with pytest.raises(ValueError, match=r"camera|v4l2|URL|file|index"):
        parse_source(value)


def test_redact_uri() -> None:
    assert redact_uri("rtsp://admin:pw@10.0.0.5/live") == "rtsp://admin:***@10.0.0.5/live"
    assert redact_uri("rtsp://10.0.0.5/live") == "rtsp://10.0.0.5/live"
    assert redact_uri("v4l2:/dev/video0") == "v4l2:/dev/video0"


def test_numbers_from_the_environment(tmp_path: Path) -> None:
    text = MINIMAL.replace("exposure: 800", "exposure: ${EXPOSURE}\n  focus: ${FOCUS}")
    config = load_config(write(tmp_path, text), env={**ENV, "EXPOSURE": "650", "FOCUS": "120"})
    assert (config.camera.exposure, config.camera.focus) == (650.0, 120)


def test_integer_source_is_normalised() -> None:
    assert CameraConfig(source=0).source == "v4l2:0"  # type: ignore[arg-type]


# --- remote updates -------------------------------------------------------------------


@pytest.fixture
def base(tmp_path: Path) -> EdgeConfig:
    return load_config(write(tmp_path, MINIMAL), env=ENV)


def update(settings: dict[str, object], revision: int = 1) -> DeviceConfigUpdate:
    return DeviceConfigUpdate(revision=revision, settings=settings)


def test_update_merges_whitelisted_keys(base: EdgeConfig) -> None:
    new = apply_update(
        base,
        update(
            {
                "vision": {"roi": {"y0": 0.3}, "motion": {"pixel_threshold": 25}},
                "camera.exposure": 500,
                "camera": {"gain": 4, "focus": "auto"},
                "status_interval_s": 10,
            }
        ),
    )
    assert new.vision.roi.y0 == 0.3 and new.vision.roi.x1 == 1.0
    assert new.vision.motion.pixel_threshold == 25
    assert (new.camera.exposure, new.camera.gain, new.camera.focus) == (500.0, 4.0, "auto")
    assert new.status_interval_s == 10
    assert new.device == base.device and new.mqtt == base.mqtt
    assert base.camera.exposure == 800.0  # the base is never modified


def test_update_from_the_wire(base: EdgeConfig) -> None:
    payload = json.dumps(
        {"v": 1, "revision": 7, "settings": {"vision.dedupe.window_s": 12.5}}
    ).encode()
    message = parse_message(DeviceConfigUpdate, payload, max_bytes=65536)
    assert isinstance(message, DeviceConfigUpdate)
    assert apply_update(base, message).vision.dedupe.window_s == 12.5


def test_empty_update_restores_the_file_values(base: EdgeConfig) -> None:
    changed = apply_update(base, update({"camera.exposure": 300}))
    assert changed.camera.exposure == 300.0
    assert apply_update(base, update({}, revision=2)) == base


@pytest.mark.parametrize(
    "settings",
    [
        {"mqtt": {"host": "evil.example"}},
        {"device.id": "other"},
        {"camera.source": "rtsp://evil/"},
        {"vision.decoder": "zbar"},
        {"verify": {"keyring": "/tmp/mine.json"}},
        {"camera.exposure.value": 1},
        {"vision.roi": 5},
        {"outbox": {"path": "/dev/null"}},
    ],
)
def test_update_refuses_keys_off_the_whitelist(base: EdgeConfig, settings: dict) -> None:
    with pytest.raises(UpdateRefusedError) as caught:
        apply_update(base, update(settings))
    assert "may not be changed remotely" in caught.value.reason
    key = next(iter(settings))
    assert key.split(".")[0] in caught.value.reason


def test_update_refusal_lists_every_bad_key_and_applies_nothing(base: EdgeConfig) -> None:
    with pytest.raises(UpdateRefusedError) as caught:
        apply_update(base, update({"camera.exposure": 100, "mqtt.port": 1, "device.lane": 3}))
    assert "mqtt.port" in caught.value.reason and "device.lane" in caught.value.reason
    assert "camera.exposure" not in caught.value.reason


@pytest.mark.parametrize(
    ("settings", "where"),
    [
        ({"camera.exposure": -5}, "camera.exposure"),
        ({"camera.focus": "sharp"}, "camera.focus"),
        ({"vision.roi.x0": 0.99}, "vision.roi"),
        ({"vision.motion.pixel_threshold": 0}, "vision.motion.pixel_threshold"),
        ({"status_interval_s": "soon"}, "status_interval_s"),
        ({"vision.roi.x9": 0.1}, "vision.roi.x9"),
        ({"vision.roi.x0.deeper": 0.1}, "vision.roi.x0"),
    ],
)
def test_update_with_invalid_value_is_refused_with_reason(
    base: EdgeConfig, settings: dict, where: str
) -> None:
    with pytest.raises(UpdateRefusedError) as caught:
        apply_update(base, update(settings))
    assert caught.value.reason.startswith(f"{where}: ")


def test_update_sensor_control_on_ip_camera_is_refused(tmp_path: Path) -> None:
    text = MINIMAL.replace("source: v4l2:/dev/video0", "source: rtsp://cam/live").replace(
        "  exposure: 800\n", ""
    )
    base = load_config(write(tmp_path, text), env=ENV)
    with pytest.raises(UpdateRefusedError, match="v4l2"):
        apply_update(base, update({"camera.exposure": 500}))


# --- fuzzing ----------------------------------------------------------------------------

_LOCATED = re.compile(r"^.+?:\d+(:\d+)?: \S")


def _assert_loads_or_explains(path: Path) -> None:
    try:
        load_config(path, env=ENV)
    except ConfigError as exc:
        assert exc.errors
        for line in exc.errors:
            assert line.startswith(str(path)) and len(line) > len(str(path)) + 3, line


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True),
    st.text(max_size=30),
)
keys = st.one_of(
    st.sampled_from(["device", "camera", "id", "source", "vision", "roi", "x0", "mqtt", "lane"]),
    st.text(string.ascii_lowercase + "_", min_size=1, max_size=12),
)
documents = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=5)),
    max_leaves=25,
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(document=documents)
def test_fuzz_yaml_documents_never_crash(tmp_path: Path, document: object) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    _assert_loads_or_explains(path)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_fuzz_mutated_example_never_crashes(tmp_path: Path, data: st.DataObject) -> None:
    document = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    section = data.draw(st.sampled_from(sorted(document)))
    if isinstance(document[section], dict) and document[section]:
        key = data.draw(st.sampled_from(sorted(document[section])))
        document[section][key] = data.draw(documents)
    else:
        document[section] = data.draw(documents)
    path = tmp_path / "mutated.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    _assert_loads_or_explains(path)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=st.text(max_size=400), cut=st.integers(0, 4000))
def test_fuzz_raw_text_never_crashes(tmp_path: Path, text: str, cut: int) -> None:
    example = EXAMPLE.read_text(encoding="utf-8")
    cut = min(cut, len(example))
    path = tmp_path / "raw.yaml"
    path.write_bytes((example[:cut] + text + example[cut:]).encode("utf-8", "surrogatepass"))
    _assert_loads_or_explains(path)


update_keys = st.one_of(
    st.sampled_from(
        [
            "vision",
            "roi",
            "x0",
            "camera",
            "exposure",
            "camera.exposure",
            "vision.roi",
            "vision.roi.x1",
            "vision.motion",
            "status_interval_s",
            "mqtt.host",
        ]
    ),
    st.text(string.ascii_lowercase + "._", min_size=1, max_size=16),
)
update_settings = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(update_keys, inner)),
    max_leaves=12,
).filter(lambda value: isinstance(value, dict))


@functools.cache
def example_config() -> EdgeConfig:
    return load_config(EXAMPLE, env=ENV)


@settings(max_examples=300, deadline=None)
@given(raw=st.dictionaries(update_keys, update_settings | scalars, max_size=4))
def test_fuzz_remote_updates_apply_or_refuse(raw: dict[str, object]) -> None:
    base = example_config()
    try:
        new = apply_update(base, DeviceConfigUpdate(revision=1, settings=raw))
    except UpdateRefusedError as exc:
        assert exc.reason
    else:
        assert new.device == base.device and new.mqtt == base.mqtt and new.verify == base.verify
