"""The edge device's configuration: one YAML file, one pydantic model per section.

Every section forbids unknown keys, so a typo is refused instead of silently
ignored. :func:`load_config` reports each problem as ``file:line: key.path:
message`` (the line comes from the YAML node tree, not from the parsed data).
Secrets come from the environment: ``password: ${KIEMDICH_MQTT_PASSWORD}``.
Messages never echo configured values, so a secret never reaches a log.

A remote :class:`~contract.messages.DeviceConfigUpdate` may change only the
keys in :data:`REMOTE_LEAVES` / :data:`REMOTE_SECTIONS` (see :func:`apply_update`).
"""

from __future__ import annotations

import difflib
import importlib
import os
import re
import shlex
import shutil
import sys
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, TextIO
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from contract.messages import CheckpointId, DeviceConfigUpdate, DeviceId, Direction
from contract.token import Keyring
from edge.mqtt_link import MqttConfig
from edge.outbox import OutboxConfig
from edge.vision.config import VisionConfig

MAX_CONFIG_BYTES = 1024 * 1024
# Aliases let a small YAML file expand into a huge tree ("billion laughs");
# a device config has a few hundred nodes.
MAX_CONFIG_NODES = 20_000

_SECTION = ConfigDict(extra="forbid", frozen=True)


# --- device ------------------------------------------------------------------


class DeviceConfig(BaseModel):
    """Who this device is: it publishes only under its own id."""

    model_config = _SECTION

    id: DeviceId = Field(description="device id, also its MQTT username")
    checkpoint_id: CheckpointId
    lane: int = Field(default=0, ge=0, le=63)
    direction: Direction


# --- camera ------------------------------------------------------------------


class SourceKind(StrEnum):
    """Where frames come from."""

    V4L2 = "v4l2"
    RTSP = "rtsp"
    HTTP = "http"
    FILE = "file"
    SYNTHETIC = "synthetic"


@dataclass(frozen=True, slots=True)
class SourceSpec:
    """A parsed camera source: ``target`` is a device index or path, a URL or a file path."""

    kind: SourceKind
    target: int | str


_SOURCE_HELP = (
    "nguồn camera phải là v4l2:/dev/videoN, một số (chỉ số camera), rtsp://…, http(s)://…, "
    "file:/đường/dẫn.mp4 hoặc synthetic: / camera source must be v4l2:/dev/videoN, an index, "
    "rtsp://…, http(s)://…, file:/path.mp4 or synthetic:"
)


def parse_source(value: str | int) -> SourceSpec:
    """Parse a camera source URI; raises ``ValueError`` (without echoing it) when invalid.

    The message never repeats the value: an RTSP URL may carry a password.
    """
    if isinstance(value, bool):
        raise ValueError(_SOURCE_HELP)
    if isinstance(value, int):
        if value < 0:
            raise ValueError("chỉ số camera phải >= 0 / camera index must be >= 0")
        return SourceSpec(SourceKind.V4L2, value)
    text = value.strip()
    if text.isdigit():
        return SourceSpec(SourceKind.V4L2, int(text))
    scheme, sep, rest = text.partition(":")
    scheme = scheme.lower()
    if not sep:
        raise ValueError(_SOURCE_HELP)
    if scheme == "v4l2":
        if rest.isdigit():
            return SourceSpec(SourceKind.V4L2, int(rest))
        if rest.startswith("/dev/") and len(rest) > len("/dev/"):
            return SourceSpec(SourceKind.V4L2, rest)
        raise ValueError("v4l2: cần /dev/videoN hoặc một số / v4l2: needs /dev/videoN or an index")
    if scheme in ("rtsp", "rtsps", "http", "https"):
        try:
            host = urlsplit(text).hostname
        except ValueError:
            host = None
        if not rest.startswith("//") or not host:
            raise ValueError(f"địa chỉ {scheme}:// thiếu máy chủ / {scheme}:// URL has no host")
        kind = SourceKind.RTSP if scheme.startswith("rtsp") else SourceKind.HTTP
        return SourceSpec(kind, text)
    if scheme == "file":
        path = rest[2:] if rest.startswith("///") else rest
        if not path:
            raise ValueError("file: cần đường dẫn tệp video / file: needs a video file path")
        return SourceSpec(SourceKind.FILE, path)
    if scheme == "synthetic":
        if rest:
            raise ValueError(
                "synthetic: không nhận tham số trong URI; dùng camera.synthetic / "
                "synthetic: takes no URI options; use camera.synthetic"
            )
        return SourceSpec(SourceKind.SYNTHETIC, "")
    raise ValueError(_SOURCE_HELP)


def redact_uri(uri: str) -> str:
    """The URI with any password replaced by ``***`` (for logs and summaries)."""
    try:
        parts = urlsplit(uri)
        password = parts.password
    except ValueError:
        return "<invalid uri>"
    if not password:
        return uri
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{user}:***@{host}").geturl()


class ReconnectConfig(BaseModel):
    """Exponential backoff between attempts to reopen a lost source."""

    model_config = _SECTION

    initial_s: float = Field(default=1.0, gt=0.0, le=60.0)
    max_s: float = Field(default=30.0, gt=0.0, le=3600.0)
    jitter: float = Field(
        default=0.2, ge=0.0, le=1.0, description="fraction of each delay drawn at random"
    )

    @model_validator(mode="after")
    def _ordered(self) -> ReconnectConfig:
        if self.max_s < self.initial_s:
            raise ValueError("max_s phải >= initial_s / max_s must be >= initial_s")
        return self


class SyntheticConfig(BaseModel):
    """The simulated gate camera (``source: synthetic:``), for demos and tests."""

    model_config = _SECTION

    scenario: Path | None = Field(
        default=None,
        description="a gatecam Scenario JSON file (its cars carry the demo's tokens); "
        "None = random traffic from the seed, with throwaway tokens",
    )
    seed: int = Field(default=0, ge=0, description="same seed, same traffic")
    seconds: float = Field(default=60.0, gt=0.0, le=24 * 3600.0, description="clip length")
    cars_per_minute: float = Field(default=20.0, gt=0.0, le=600.0)
    resolution: Literal["720p", "1080p"] = "720p"
    fps: float = Field(default=15.0, ge=1.0, le=120.0)


def _number_from_env(value: object) -> object:
    """``"800"`` (what ``${EXPOSURE}`` substitutes) as a number; anything else unchanged."""
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return value
        return int(number) if number.is_integer() else number
    return value


class CameraConfig(BaseModel):
    """The camera: where frames come from and how the sensor is set.

    Sensor settings (size, exposure, gain, focus, fourcc, buffers) are applied
    to V4L2 cameras only; an IP camera is set up on the camera itself.
    """

    model_config = _SECTION

    source: str = Field(description="v4l2:/dev/video0 | 0 | rtsp://… | http(s)://… | file:… ")
    loop: bool = Field(
        default=False, description="file:/synthetic: start over at the end instead of ending"
    )
    realtime: bool = Field(
        default=True,
        description="file:/synthetic: deliver frames at the video's frame rate, like a camera",
    )
    synthetic: SyntheticConfig = SyntheticConfig()
    width: int | None = Field(default=None, ge=16, le=8192)
    height: int | None = Field(default=None, ge=16, le=8192)
    fps: float | None = Field(default=None, gt=0.0, le=240.0)
    exposure: float | Literal["auto"] | None = Field(
        default=None, description="µs, or 'auto'; None leaves the driver's setting"
    )
    gain: float | None = Field(default=None, ge=0.0, le=10_000.0)
    focus: int | Literal["auto"] | None = Field(default=None)
    fourcc: str | None = Field(default=None, pattern=r"^[0-9A-Za-z ]{4}$")
    buffer_size: int | None = Field(default=None, ge=1, le=32)
    open_timeout_s: float = Field(default=10.0, gt=0.0, le=300.0)
    read_timeout_s: float = Field(default=5.0, gt=0.0, le=300.0)
    rtsp_transport: Literal["tcp", "udp"] = "tcp"
    reconnect: ReconnectConfig = ReconnectConfig()

    @field_validator("source", mode="before")
    @classmethod
    def _source(cls, value: object) -> str:
        if not isinstance(value, str | int):
            raise ValueError(_SOURCE_HELP)
        spec = parse_source(value)
        if spec.kind is SourceKind.V4L2 and isinstance(spec.target, int):
            return f"v4l2:{spec.target}"
        return value.strip() if isinstance(value, str) else str(value)

    @field_validator("exposure", mode="before")
    @classmethod
    def _exposure(cls, value: object) -> object:
        # One clear message instead of one per member of the union.
        if value is None or value == "auto":
            return value
        value = _number_from_env(value)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError("exposure phải là số µs hoặc 'auto' / exposure must be µs or 'auto'")
        if not 1 <= value <= 10_000_000:
            raise ValueError("exposure phải trong 1..10000000 µs / exposure must be 1..10000000 µs")
        return float(value)

    @field_validator("focus", mode="before")
    @classmethod
    def _focus(cls, value: object) -> object:
        if value is None or value == "auto":
            return value
        value = _number_from_env(value)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10_000:
            raise ValueError(
                "focus phải là số nguyên 0..10000 hoặc 'auto' / focus must be 0..10000 or 'auto'"
            )
        return value

    @model_validator(mode="after")
    def _applicable(self) -> CameraConfig:
        kind = self.spec.kind
        if kind is not SourceKind.V4L2:
            sensor = ("width", "height", "exposure", "gain", "focus", "fourcc", "buffer_size")
            set_here = [name for name in sensor if getattr(self, name) is not None]
            if set_here:
                raise ValueError(
                    f"{', '.join(set_here)}: chỉ áp dụng cho camera v4l2; camera IP cài trên "
                    f"chính camera / only applies to v4l2 cameras; set an IP camera on the camera"
                )
            if self.fps is not None and kind is not SourceKind.FILE:
                raise ValueError("fps: chỉ cho v4l2 và file: / fps applies to v4l2 and file: only")
        if self.loop and kind not in (SourceKind.FILE, SourceKind.SYNTHETIC):
            raise ValueError(
                "loop: chỉ cho nguồn file: và synthetic: / "
                "loop applies to file: and synthetic: sources only"
            )
        return self

    @property
    def spec(self) -> SourceSpec:
        """The parsed source."""
        return parse_source(self.source)

    @property
    def redacted_source(self) -> str:
        """The source with any password hidden, for logs."""
        return redact_uri(self.source)


# --- verification, display, metrics -------------------------------------------


class VerifyConfig(BaseModel):
    """What the gate needs to verify a pass offline."""

    model_config = _SECTION

    keyring: Path = Field(description="issuers' public keys (kiemdich-keyring/1 JSON)")
    denylist_cache: Path = Field(
        default=Path("var/edge/denylist.json"), description="last deny-list seen, for cold starts"
    )
    leeway_s: int = Field(default=300, ge=0, le=86_400, description="tolerated clock skew")


_HOOK_FUNCTION = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


class GpioHookConfig(BaseModel):
    """Something to drive a light or barrier with each verdict: a command or a function."""

    model_config = _SECTION

    command: list[str] | None = Field(
        default=None, description="argv; the colour and code are appended as two arguments"
    )
    function: str | None = Field(
        default=None, description="'module:function', called with the DisplayState"
    )
    timeout_s: float = Field(default=5.0, gt=0.0, le=120.0)

    @field_validator("command", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return shlex.split(value)
        return value

    @field_validator("command")
    @classmethod
    def _nonempty(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and (not value or not value[0]):
            raise ValueError("command rỗng / command is empty")
        return value

    @field_validator("function")
    @classmethod
    def _function(cls, value: str | None) -> str | None:
        if value is not None and not _HOOK_FUNCTION.match(value):
            raise ValueError("function phải có dạng module:hàm / function must be module:function")
        return value

    @model_validator(mode="after")
    def _one(self) -> GpioHookConfig:
        if (self.command is None) == (self.function is None):
            raise ValueError(
                "cần đúng một trong command hoặc function / set exactly one of command, function"
            )
        return self


class WebDisplayConfig(BaseModel):
    """The local web page a kiosk browser shows full screen."""

    model_config = _SECTION

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)


class DisplayConfig(BaseModel):
    """The gate display: web page, terminal line and GPIO hook."""

    model_config = _SECTION

    web: WebDisplayConfig = WebDisplayConfig()
    terminal: bool = Field(default=False, description="print each verdict as a coloured line")
    gpio: GpioHookConfig | None = None
    idle_s: float = Field(default=8.0, gt=0.0, le=600.0, description="back to idle after this")


class MetricsConfig(BaseModel):
    """Prometheus ``/metrics`` and the ``/healthz`` probe."""

    model_config = _SECTION

    enabled: bool = True
    host: str = "0.0.0.0"
    port: int = Field(default=9108, ge=0, le=65535)
    camera_down_s: float = Field(
        default=60.0, gt=0.0, le=86_400.0, description="unhealthy when no frames for this long"
    )


class EdgeConfig(BaseModel):
    """The whole configuration of one edge device."""

    model_config = _SECTION

    device: DeviceConfig
    camera: CameraConfig
    vision: VisionConfig = VisionConfig()
    verify: VerifyConfig
    mqtt: MqttConfig
    outbox: OutboxConfig = OutboxConfig()
    display: DisplayConfig = DisplayConfig()
    metrics: MetricsConfig = MetricsConfig()
    status_interval_s: float = Field(default=30.0, ge=1.0, le=3600.0)


# --- loading -------------------------------------------------------------------


class ConfigError(Exception):
    """A configuration that cannot be used; ``errors`` holds one ``file:line: key: msg`` each."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


KeyPath = tuple[str | int, ...]
_ENV = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _dotted(path: KeyPath) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(tài liệu / document)"


class _Located:
    """Where each key of a YAML document sits (1-based lines)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.lines: dict[KeyPath, int] = {(): 1}
        self._errors: list[tuple[int, str]] = []
        self._nodes = 0

    def walk(
        self, node: yaml.Node, path: KeyPath = (), active: frozenset[int] = frozenset()
    ) -> None:
        """Record the line of every mapping key and sequence item below ``node``."""
        self._nodes += 1
        if self._nodes > MAX_CONFIG_NODES:
            return
        if id(node) in active:
            line = node.start_mark.line + 1
            self._errors.append(
                (
                    line,
                    f"{self.source}:{line}: {_dotted(path)}: bí danh tự tham chiếu / "
                    "an alias refers to itself",
                )
            )
            return
        inner = active | {id(node)}
        if isinstance(node, yaml.MappingNode):
            first: dict[str, int] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    continue
                key = key_node.value
                line = key_node.start_mark.line + 1
                if key == "<<":
                    self.walk(value_node, path, inner)
                    continue
                if key in first:
                    where = f"{self.source}:{line}: {_dotted((*path, key))}"
                    self._errors.append(
                        (
                            line,
                            f"{where}: khóa lặp lại (lần đầu ở dòng {first[key]}) / "
                            f"duplicate key (first at line {first[key]})",
                        )
                    )
                    continue
                first[key] = line
                self.lines[(*path, key)] = line
                self.walk(value_node, (*path, key), inner)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self.lines[(*path, index)] = item.start_mark.line + 1
                self.walk(item, (*path, index), inner)

    @property
    def too_big(self) -> bool:
        return self._nodes > MAX_CONFIG_NODES

    def line(self, path: KeyPath) -> int:
        """Line of ``path``, or of its nearest located ancestor."""
        for cut in range(len(path), -1, -1):
            found = self.lines.get(path[:cut])
            if found is not None:
                return found
        return 1

    def add(self, path: KeyPath, message: str) -> None:
        """Record a problem at ``path`` (reported as ``file:line: key.path: message``)."""
        line = self.line(path)
        self._errors.append((line, f"{self.source}:{line}: {_dotted(path)}: {message}"))

    @property
    def errors(self) -> list[str]:
        """Recorded problems, in file order."""
        return [text for _, text in sorted(self._errors, key=lambda item: item[0])]


def _syntax_error(source: str, text: str, exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    if mark is None and isinstance(exc, yaml.reader.ReaderError):
        line = text.count("\n", 0, exc.position) + 1
        return f"{source}:{line}: lỗi ký tự / bad character: {exc.reason} (#x{exc.character:04x})"
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark is not None else source
    detail = f"{problem} ({context})" if context else problem
    if "'\\t'" in detail:
        detail += (
            " — YAML thụt lề bằng dấu cách, không dùng tab / YAML indents with spaces, not tabs"
        )
    return f"{where}: lỗi cú pháp YAML / YAML syntax error: {detail}"


def _parse_yaml(source: str, text: str) -> tuple[object, _Located]:
    located = _Located(source)
    try:
        # The reader checks for control characters already in the constructor.
        loader = yaml.SafeLoader(text)
    except yaml.YAMLError as exc:
        raise ConfigError([_syntax_error(source, text, exc)]) from None
    try:
        root = loader.get_single_node()
        if root is None:
            raise ConfigError([f"{source}:1: tệp cấu hình rỗng / the config file is empty"])
        located.walk(root)
        if located.too_big:
            raise ConfigError(
                [f"{source}:1: tài liệu quá lớn / document too large (> {MAX_CONFIG_NODES} nodes)"]
            )
        data = loader.construct_document(root)
    except yaml.YAMLError as exc:
        raise ConfigError([_syntax_error(source, text, exc)]) from None
    except RecursionError:
        raise ConfigError([f"{source}:1: lồng quá sâu / nested too deeply"]) from None
    finally:
        loader.dispose()
    if located.errors:
        raise ConfigError(located.errors)
    return data, located


def _substitute(value: object, path: KeyPath, located: _Located, env: Mapping[str, str]) -> object:
    """Replace ``${NAME}`` / ``${NAME:-default}`` in string values; ``$$`` is a literal ``$``."""
    if isinstance(value, dict):
        return {k: _substitute(v, (*path, k), located, env) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, (*path, i), located, env) for i, v in enumerate(value)]
    if not isinstance(value, str) or "$" not in value:
        return value

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        found = env.get(name)
        if found is not None:
            return found
        if default is not None:
            return default
        located.add(
            path, f"biến môi trường {name} chưa được đặt / environment variable {name} is not set"
        )
        return ""

    return _ENV.sub(replace, value)


def _model_fields_at(path: KeyPath) -> list[str] | None:
    """Field names of the model found at ``path`` below EdgeConfig (for "did you mean")."""
    model: type[BaseModel] = EdgeConfig
    for part in path:
        if not isinstance(part, str) or part not in model.model_fields:
            return None
        found = _model_in(model.model_fields[part].annotation)
        if found is None:
            return None
        model = found
    return list(model.model_fields)


def _model_in(annotation: object) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, typing.Annotated):
        for arg in typing.get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None


def _locate(data: object, loc: tuple[str | int, ...], kind: str) -> KeyPath:
    """The part of a pydantic ``loc`` that names keys of the document.

    ``loc`` may carry union tags ("float", "literal['auto']") that are not keys;
    a "missing" error names a key that is, by definition, not in the data.
    """
    path: list[str | int] = []
    current = data
    for part in loc:
        if isinstance(current, dict):
            match = next((k for k in current if str(k) == str(part)), _MISSING)
            if match is not _MISSING:
                path.append(part)
                current = current[match]
                continue
        elif isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current):
            path.append(part)
            current = current[part]
            continue
        if kind == "missing" and isinstance(part, str):
            path.append(part)
        break
    return tuple(path)


_MISSING = object()


def _message(error: Mapping[str, Any], path: KeyPath) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        text = "khóa không hợp lệ / unknown key"
        fields = _model_fields_at(path[:-1]) if path else None
        if fields and isinstance(path[-1], str):
            close = difflib.get_close_matches(path[-1], fields, n=1)
            if close:
                text += f"; ý bạn là / did you mean '{close[0]}'?"
        return text
    if kind == "missing":
        return "thiếu khóa bắt buộc / required key missing"
    message = str(error["msg"])
    return message.removeprefix("Value error, ")


def _add_validation_errors(exc: ValidationError, data: object, located: _Located) -> None:
    # A union reports once per member; one line per key reads better.
    by_path: dict[KeyPath, list[str]] = {}
    for error in exc.errors(include_input=False, include_url=False):
        path = _locate(data, tuple(error["loc"]), error["type"])
        message = _message(error, path)
        messages = by_path.setdefault(path, [])
        if message not in messages:
            messages.append(message)
    for path, messages in by_path.items():
        located.add(path, " | ".join(messages))


def _load(path: str | Path, env: Mapping[str, str] | None = None) -> tuple[EdgeConfig, _Located]:
    source = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError([f"{source}: không đọc được / cannot read: {exc.strerror}"]) from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError([f"{source}: tệp quá lớn / file too large (> {MAX_CONFIG_BYTES} bytes)"])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError([f"{source}:{line}: không phải UTF-8 / not UTF-8 text"]) from None
    data, located = _parse_yaml(source, text)
    if not isinstance(data, dict):
        raise ConfigError(
            [f"{source}:1: tài liệu phải là một bảng khóa / the document must be a mapping"]
        )
    data = _substitute(data, (), located, os.environ if env is None else env)
    try:
        config = EdgeConfig.model_validate(data)
    except ValidationError as exc:
        _add_validation_errors(exc, data, located)
        raise ConfigError(located.errors) from None
    except RecursionError:
        raise ConfigError(
            [f"{source}:1: tài liệu tự tham chiếu / self-referencing document"]
        ) from None
    if located.errors:
        raise ConfigError(located.errors)
    return config, located


def load_config(path: str | Path, *, env: Mapping[str, str] | None = None) -> EdgeConfig:
    """Read and validate a device config; raises :class:`ConfigError` listing every problem.

    ``env`` replaces ``os.environ`` for ``${NAME}`` substitution (tests).
    """
    return _load(path, env)[0]


# --- remote updates ---------------------------------------------------------------

# Keys the aggregator may change at run time. Identity, network, storage and
# keys are deliberately absent: a compromised broker account must not be able
# to re-point a gate or silence it.
REMOTE_LEAVES: frozenset[tuple[str, ...]] = frozenset(
    {
        ("vision", "motion", "pixel_threshold"),
        ("vision", "motion", "min_fraction"),
        ("vision", "motion", "hold_frames"),
        ("vision", "motion", "idle_every"),
        ("vision", "dedupe", "window_s"),
        ("camera", "exposure"),
        ("camera", "gain"),
        ("camera", "focus"),
        ("status_interval_s",),
    }
)
REMOTE_SECTIONS: frozenset[tuple[str, ...]] = frozenset({("vision", "roi")})
_MAX_UPDATE_DEPTH = 8


class UpdateRefusedError(ValueError):
    """A remote config update that was not applied; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _flatten(
    settings: Mapping[str, object], prefix: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], object]]:
    for key, value in settings.items():
        path = (*prefix, *str(key).split("."))
        if len(path) > _MAX_UPDATE_DEPTH:
            raise UpdateRefusedError(f"{'.'.join(path)}: lồng quá sâu / nested too deeply")
        if isinstance(value, Mapping):
            yield from _flatten(value, path)  # an empty section changes nothing
        else:
            yield path, value


def _allowed(path: tuple[str, ...]) -> bool:
    return path in REMOTE_LEAVES or any(
        path[: len(s)] == s and len(path) > len(s) for s in REMOTE_SECTIONS
    )


def apply_update(base: EdgeConfig, update: DeviceConfigUpdate) -> EdgeConfig:
    """The config ``base`` with ``update.settings`` merged in and re-validated.

    Apply each update to the config loaded from the file (not to the previous
    result): the retained update is the whole remote overlay, so a key dropped
    from a later revision goes back to the file's value. ``settings`` nests like
    the YAML (``{"camera": {"exposure": 800}}``) or uses dotted keys
    (``{"camera.exposure": 800}``). Raises :class:`UpdateRefusedError` naming
    every key that may not change remotely or whose value is invalid.
    """
    leaves = list(_flatten(update.settings))
    refused = [
        f"{'.'.join(path)}: không được đổi từ xa / may not be changed remotely"
        for path, _ in leaves
        if not _allowed(path)
    ]
    if refused:
        raise UpdateRefusedError("; ".join(refused))
    data = base.model_dump(mode="python")
    for path, value in leaves:
        node = data
        for depth, part in enumerate(path[:-1]):
            node = node.get(part)
            if not isinstance(node, dict):
                where = ".".join(path[: depth + 1])
                raise UpdateRefusedError(f"{where}: không phải một mục / not a section")
        node[path[-1]] = value
    try:
        return EdgeConfig.model_validate(data)
    except ValidationError as exc:
        reasons = []
        for error in exc.errors(include_input=False, include_url=False):
            path = _locate(data, tuple(error["loc"]), error["type"])
            reasons.append(f"{_dotted(path)}: {_message(error, path)}")
        raise UpdateRefusedError("; ".join(reasons)) from None


# --- validate-config ---------------------------------------------------------------


def _check_files(config: EdgeConfig, located: _Located) -> list[str]:
    """Problems only the machine can reveal: missing keyring or video, hook not found."""
    try:
        ring = Keyring.load(config.verify.keyring)
    except OSError as exc:
        located.add(("verify", "keyring"), f"không đọc được / cannot read: {exc.strerror}")
    except ValueError:
        located.add(("verify", "keyring"), "keyring hỏng / not a valid keyring file")
    else:
        if len(ring) == 0:
            located.add(("verify", "keyring"), "keyring rỗng / keyring is empty")
    spec = config.camera.spec
    if spec.kind is SourceKind.FILE and not Path(str(spec.target)).is_file():
        located.add(("camera", "source"), "không có tệp video / no such video file")
    hook = config.display.gpio
    if hook is not None and hook.function is not None:
        module = hook.function.partition(":")[0]
        try:
            importlib.import_module(module)
        except ImportError as exc:
            located.add(
                ("display", "gpio", "function"), f"không nạp được / cannot import: {exc.name}"
            )
    if hook is not None and hook.command is not None and shutil.which(hook.command[0]) is None:
        located.add(("display", "gpio", "command"), "không tìm thấy lệnh / command not found")
    return located.errors


def summary(config: EdgeConfig) -> list[str]:
    """A few lines describing a config, with secrets hidden."""
    cam = config.camera
    size = f"{cam.width}x{cam.height}" if cam.width and cam.height else "driver default"
    exposure = "driver default" if cam.exposure is None else cam.exposure
    web = config.display.web
    metrics = config.metrics
    mqtt = config.mqtt
    roi = config.vision.roi
    return [
        f"device   {config.device.id} @ {config.device.checkpoint_id}, "
        f"lane {config.device.lane} {config.device.direction.value}",
        f"camera   {cam.redacted_source} ({cam.spec.kind.value}, {size}, exposure {exposure})",
        f"vision   decoder {config.vision.decoder}, roi x {roi.x0:g}-{roi.x1:g} "
        f"y {roi.y0:g}-{roi.y1:g}",
        f"verify   keyring {config.verify.keyring}, leeway {config.verify.leeway_s} s",
        f"mqtt     {mqtt.host}:{mqtt.port}{' TLS' if mqtt.tls else ''} "
        f"as {mqtt.username or config.device.id}",
        f"outbox   {config.outbox.path} (max {config.outbox.max_events} events)",
        f"display  web {f'http://{web.host}:{web.port}/' if web.enabled else 'off'}, "
        f"terminal {'on' if config.display.terminal else 'off'}, "
        f"gpio {'on' if config.display.gpio else 'off'}",
        f"metrics  {f'http://{metrics.host}:{metrics.port}/metrics' if metrics.enabled else 'off'}",
        f"status   every {config.status_interval_s:g} s",
    ]


def validate_main(path: str | Path, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """``kiemdich edge --validate-config PATH``: print OK and a summary, or every error.

    Returns the process exit code: 0 when valid, 1 otherwise.
    """
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    try:
        config, located = _load(path)
    except ConfigError as exc:
        for line in exc.errors:
            print(line, file=err)
        print(f"{len(exc.errors)} lỗi / error(s)", file=err)
        return 1
    problems = _check_files(config, located)
    if problems:
        for line in problems:
            print(line, file=err)
        print(f"{len(problems)} lỗi / error(s)", file=err)
        return 1
    print(f"OK: {path}", file=out)
    for line in summary(config):
        print(f"  {line}", file=out)
    return 0
