"""The screens' words in Vietnamese (first) and English.

``STRINGS`` maps a key to its text in each language; :func:`t` looks one up.
The live screens add theirs in :mod:`aggregator.web.i18n_live` (a ``STRINGS``
dict of the same shape), merged here when that module exists; a key defined
twice, or missing a language, stops the import with the offending key named.
Texts may hold ``str.format`` fields (``{minutes}``) filled by the caller.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Mapping
from typing import Literal, cast

from fastapi import Request

log = logging.getLogger(__name__)

Lang = Literal["vi", "en"]
LANGS: tuple[Lang, ...] = ("vi", "en")
DEFAULT_LANG: Lang = "vi"
LANG_COOKIE = "kd_lang"

STRINGS: dict[str, dict[Lang, str]] = {
    # --- layout -------------------------------------------------------------------
    "app.name": {"vi": "Kiểm dịch", "en": "Kiểm dịch"},
    "app.tagline": {
        "vi": "Hệ thống chốt kiểm dịch",
        "en": "Epidemic checkpoint system",
    },
    "layout.skip": {"vi": "Bỏ qua đến nội dung", "en": "Skip to content"},
    "layout.logout": {"vi": "Đăng xuất", "en": "Log out"},
    "layout.language": {"vi": "Ngôn ngữ", "en": "Language"},
    "layout.signed_in_as": {"vi": "Đang đăng nhập", "en": "Signed in as"},
    "nav.home": {"vi": "Trang chính", "en": "Home"},
    "nav.monitor": {"vi": "Cảnh báo", "en": "Alerts"},
    "nav.lookup": {"vi": "Tra cứu", "en": "Lookup"},
    "nav.command": {"vi": "Chỉ huy", "en": "Command"},
    "nav.admin_checkpoints": {"vi": "Chốt", "en": "Checkpoints"},
    "nav.admin_devices": {"vi": "Thiết bị", "en": "Devices"},
    "nav.admin_officers": {"vi": "Tài khoản", "en": "Accounts"},
    "nav.admin_audit": {"vi": "Nhật ký truy cập", "en": "Audit log"},
    "home.title": {"vi": "Xin chào", "en": "Welcome"},
    "home.intro": {
        "vi": "Chọn một màn hình trong thanh điều hướng.",
        "en": "Choose a screen in the navigation bar.",
    },
    "home.none": {
        "vi": "Vai trò của bạn chưa có màn hình nào ở đây. Liên hệ quản trị viên.",
        "en": "Your role has no screen here yet. Contact an administrator.",
    },
    "home.scopes": {"vi": "Phạm vi được xem", "en": "You may see"},
    "home.all_places": {"vi": "Tất cả", "en": "Everywhere"},
    "common.save": {"vi": "Lưu", "en": "Save"},
    "common.create": {"vi": "Tạo", "en": "Create"},
    "common.filter": {"vi": "Lọc", "en": "Filter"},
    "common.clear": {"vi": "Xoá bộ lọc", "en": "Clear filters"},
    "common.yes": {"vi": "Có", "en": "Yes"},
    "common.no": {"vi": "Không", "en": "No"},
    "common.none": {"vi": "—", "en": "—"},
    "common.newer": {"vi": "← Mới hơn", "en": "← Newer"},
    "common.older": {"vi": "Cũ hơn →", "en": "Older →"},
    "common.empty": {"vi": "Chưa có dữ liệu.", "en": "Nothing here yet."},
    "common.errors_below": {
        "vi": "Chưa lưu được: vui lòng sửa các lỗi bên dưới.",
        "en": "Not saved: please correct the errors below.",
    },
    "common.search": {"vi": "Tìm", "en": "Search"},
    "common.all": {"vi": "Tất cả", "en": "All"},
    # --- roles, scopes, vocabularies ----------------------------------------------
    "role.checkpoint_officer": {"vi": "Cán bộ chốt", "en": "Checkpoint officer"},
    "role.ward_police": {"vi": "Công an phường", "en": "Ward police"},
    "role.investigator": {"vi": "Điều tra viên", "en": "Investigator"},
    "role.command_centre": {"vi": "Trung tâm chỉ huy", "en": "Command centre"},
    "role.venue_manager": {"vi": "Quản lý địa điểm", "en": "Venue manager"},
    "role.health_official": {"vi": "Cán bộ y tế", "en": "Health official"},
    "role.admin": {"vi": "Quản trị viên", "en": "Administrator"},
    "scope.checkpoint": {"vi": "Chốt", "en": "Checkpoint"},
    "scope.ward": {"vi": "Phường/xã", "en": "Ward"},
    "scope.province": {"vi": "Tỉnh/thành", "en": "Province"},
    "kind.city_gate": {"vi": "Cửa ngõ thành phố", "en": "City gate"},
    "kind.highway": {"vi": "Quốc lộ / cao tốc", "en": "Highway"},
    "kind.side_road": {"vi": "Đường nhánh", "en": "Side road"},
    "kind.venue": {"vi": "Địa điểm (chợ, siêu thị…)", "en": "Venue (market, shop…)"},
    "direction.in": {"vi": "Vào", "en": "In"},
    "direction.out": {"vi": "Ra", "en": "Out"},
    "direction.both": {"vi": "Hai chiều", "en": "Both"},
    # --- login ----------------------------------------------------------------------
    "login.title": {"vi": "Đăng nhập", "en": "Log in"},
    "login.username": {"vi": "Tên đăng nhập", "en": "Username"},
    "login.password": {"vi": "Mật khẩu", "en": "Password"},
    "login.submit": {"vi": "Đăng nhập", "en": "Log in"},
    "login.failed": {
        "vi": "Sai tên đăng nhập hoặc mật khẩu.",
        "en": "Wrong username or password.",
    },
    "login.inactive": {
        "vi": "Tài khoản đã bị khoá. Liên hệ quản trị viên.",
        "en": "This account is deactivated. Contact an administrator.",
    },
    "login.rate_limited": {
        "vi": "Đăng nhập sai quá nhiều lần. Vui lòng thử lại sau {minutes} phút.",
        "en": "Too many failed logins. Please try again in {minutes} min.",
    },
    "login.expired": {
        "vi": "Phiên đăng nhập đã hết hạn. Vui lòng đăng nhập lại.",
        "en": "Your session has expired. Please log in again.",
    },
    "login.required": {
        "vi": "Vui lòng đăng nhập để tiếp tục.",
        "en": "Please log in to continue.",
    },
    "login.logged_out": {"vi": "Đã đăng xuất.", "en": "You have logged out."},
    "login.form_expired": {
        "vi": "Biểu mẫu đã hết hạn, vui lòng thử lại.",
        "en": "The form expired, please try again.",
    },
    "auth.not_authenticated": {"vi": "Chưa đăng nhập", "en": "Not logged in"},
    "auth.session_expired": {"vi": "Phiên đăng nhập đã hết hạn", "en": "Session expired"},
    "auth.inactive": {"vi": "Tài khoản đã bị khoá", "en": "Account deactivated"},
    "auth.forbidden": {
        "vi": "Bạn không có quyền xem trang này",
        "en": "You are not allowed to see this page",
    },
    "auth.csrf": {
        "vi": "Biểu mẫu không hợp lệ hoặc đã hết hạn; hãy tải lại trang",
        "en": "Invalid or expired form; reload the page",
    },
    "error.title": {"vi": "Không thể tiếp tục", "en": "Cannot continue"},
    "error.back_home": {"vi": "Về trang chính", "en": "Back to the home page"},
    # --- validation ---------------------------------------------------------------
    "error.required": {"vi": "Bắt buộc nhập.", "en": "Required."},
    "error.invalid": {"vi": "Giá trị không hợp lệ ({detail}).", "en": "Invalid value ({detail})."},
    "error.choice": {"vi": "Chọn một trong: {expected}.", "en": "Choose one of: {expected}."},
    "error.integer": {"vi": "Cần một số nguyên.", "en": "A whole number is needed."},
    "error.number": {"vi": "Cần một số.", "en": "A number is needed."},
    "error.date": {
        "vi": "Ngày không hợp lệ (dạng NNNN-TT-NN).",
        "en": "Invalid date (YYYY-MM-DD).",
    },
    "error.too_long": {
        "vi": "Dài quá {max_length} ký tự.",
        "en": "Longer than {max_length} characters.",
    },
    "error.too_short": {
        "vi": "Cần ít nhất {min_length} ký tự.",
        "en": "At least {min_length} characters.",
    },
    "error.at_least": {"vi": "Không được nhỏ hơn {ge}.", "en": "Must be at least {ge}."},
    "error.at_most": {"vi": "Không được lớn hơn {le}.", "en": "Must be at most {le}."},
    "error.password_short": {
        "vi": "Mật khẩu cần ít nhất {min} ký tự.",
        "en": "The password needs at least {min} characters.",
    },
    "error.password_long": {
        "vi": "Mật khẩu dài quá {max} ký tự.",
        "en": "The password is longer than {max} characters.",
    },
    "error.password_guessable": {
        "vi": "Mật khẩu quá dễ đoán (trùng tên đăng nhập hoặc mật khẩu mẫu).",
        "en": "The password is too easy to guess (the username or a demo password).",
    },
    "error.password_mismatch": {
        "vi": "Hai lần nhập mật khẩu không khớp.",
        "en": "The two passwords differ.",
    },
    "error.username": {
        "vi": "Tên đăng nhập: 3–64 ký tự a-z, 0-9, dấu chấm, gạch nối, gạch dưới; "
        "bắt đầu và kết thúc bằng chữ hoặc số.",
        "en": "Username: 3-64 characters a-z, 0-9, dot, hyphen, underscore; "
        "starting and ending with a letter or digit.",
    },
    "error.username_taken": {
        "vi": "Tên đăng nhập {username} đã có người dùng.",
        "en": "The username {username} is taken.",
    },
    "error.full_name": {
        "vi": "Họ tên: 2–120 ký tự.",
        "en": "Full name: 2-120 characters.",
    },
    "error.scope_syntax": {
        "vi": "Phạm vi “{text}” phải có dạng loại:giá trị (ví dụ ward:70).",
        "en": "Scope “{text}” must read kind:value (e.g. ward:70).",
    },
    "error.scope_checkpoint_id": {
        "vi": "Mã chốt “{value}” không hợp lệ.",
        "en": "Invalid checkpoint id “{value}”.",
    },
    "error.scope_code": {
        "vi": "Mã “{value}” phải là số.",
        "en": "The code “{value}” must be a number.",
    },
    "error.scope_unknown_checkpoint": {
        "vi": "Không có chốt {value}.",
        "en": "There is no checkpoint {value}.",
    },
    "error.scope_unknown_ward": {
        "vi": "Không có phường/xã mã {value}.",
        "en": "There is no ward with code {value}.",
    },
    "error.scope_unknown_province": {
        "vi": "Không có tỉnh/thành mã {value}.",
        "en": "There is no province with code {value}.",
    },
    "error.scope_required.checkpoint_officer": {
        "vi": "Cán bộ chốt cần ít nhất một phạm vi (chốt, phường hoặc tỉnh).",
        "en": "A checkpoint officer needs at least one scope (checkpoint, ward or province).",
    },
    "error.scope_required.ward_police": {
        "vi": "Công an phường cần ít nhất một phạm vi phường hoặc tỉnh.",
        "en": "Ward police need at least one ward or province scope.",
    },
    "error.scope_required.venue_manager": {
        "vi": "Quản lý địa điểm cần ít nhất một phạm vi chốt (địa điểm của mình).",
        "en": "A venue manager needs at least one checkpoint scope (their venue).",
    },
    "error.scope_kind_for_role": {
        "vi": "Phạm vi {scope} không hợp với vai trò này.",
        "en": "The scope {scope} does not fit this role.",
    },
    "error.checkpoint_id": {
        "vi": "Mã chốt: 1–64 ký tự a-z, 0-9, gạch nối, gạch dưới, bắt đầu bằng chữ hoặc số.",
        "en": "Checkpoint id: 1-64 characters a-z, 0-9, hyphen, underscore, "
        "starting with a letter or digit.",
    },
    "error.checkpoint_taken": {
        "vi": "Đã có chốt mã {id}.",
        "en": "A checkpoint with id {id} exists already.",
    },
    "error.device_id": {
        "vi": "Mã thiết bị: 1–64 ký tự a-z, 0-9, gạch nối, gạch dưới, bắt đầu bằng chữ hoặc số.",
        "en": "Device id: 1-64 characters a-z, 0-9, hyphen, underscore, "
        "starting with a letter or digit.",
    },
    "error.device_taken": {
        "vi": "Đã có thiết bị (hoặc tài khoản MQTT) mã {id}.",
        "en": "A device (or MQTT account) {id} exists already.",
    },
    "error.unknown_ward": {
        "vi": "Không có phường/xã mã {code}; hãy chọn trong danh sách.",
        "en": "There is no ward with code {code}; pick one from the list.",
    },
    "error.unknown_checkpoint": {
        "vi": "Không có chốt {id}.",
        "en": "There is no checkpoint {id}.",
    },
    "error.lat": {"vi": "Vĩ độ từ -90 đến 90.", "en": "Latitude between -90 and 90."},
    "error.lon": {"vi": "Kinh độ từ -180 đến 180.", "en": "Longitude between -180 and 180."},
    "error.coordinates_pair": {
        "vi": "Nhập cả vĩ độ và kinh độ, hoặc bỏ trống cả hai.",
        "en": "Give both latitude and longitude, or neither.",
    },
    "error.lane": {"vi": "Làn: số từ 0 đến 99.", "en": "Lane: a number from 0 to 99."},
    "error.date_range": {
        "vi": "Ngày bắt đầu phải trước ngày kết thúc.",
        "en": "The start date must come before the end date.",
    },
    "error.self_lockout": {
        "vi": "Bạn không thể tự khoá hoặc bỏ quyền quản trị của chính mình.",
        "en": "You cannot deactivate yourself or drop your own admin role.",
    },
    "error.not_found": {"vi": "Không tìm thấy.", "en": "Not found."},
    # --- admin: checkpoints -------------------------------------------------------
    "admin.checkpoints.title": {"vi": "Chốt kiểm dịch", "en": "Checkpoints"},
    "admin.checkpoints.new": {"vi": "Thêm chốt", "en": "New checkpoint"},
    "admin.checkpoints.created": {"vi": "Đã tạo chốt {id}.", "en": "Checkpoint {id} created."},
    "field.checkpoint_id": {"vi": "Mã chốt", "en": "Checkpoint id"},
    "field.checkpoint_id.hint": {
        "vi": "Dùng trong chủ đề MQTT, ví dụ hn-ql1a-phap-van",
        "en": "Used in MQTT topics, e.g. hn-ql1a-phap-van",
    },
    "field.name": {"vi": "Tên", "en": "Name"},
    "field.kind": {"vi": "Loại", "en": "Kind"},
    "field.ward": {"vi": "Phường/xã", "en": "Ward"},
    "field.ward.search": {
        "vi": "Gõ tên phường/xã (không cần dấu), ví dụ: hoan kiem",
        "en": "Type the ward's name (accents optional), e.g. hoan kiem",
    },
    "field.ward.code": {"vi": "Mã phường/xã", "en": "Ward code"},
    "field.ward.pick": {"vi": "Chọn phường/xã", "en": "Pick a ward"},
    "field.ward.none": {"vi": "Không tìm thấy phường/xã nào.", "en": "No ward found."},
    "field.lat": {"vi": "Vĩ độ", "en": "Latitude"},
    "field.lon": {"vi": "Kinh độ", "en": "Longitude"},
    "field.owner": {"vi": "Đơn vị phụ trách", "en": "Run by"},
    "field.active": {"vi": "Hoạt động", "en": "Active"},
    "field.devices": {"vi": "Thiết bị", "en": "Devices"},
    "field.created_at": {"vi": "Ngày tạo", "en": "Created"},
    # --- admin: devices -----------------------------------------------------------
    "admin.devices.title": {"vi": "Thiết bị cổng", "en": "Gate devices"},
    "admin.devices.new": {"vi": "Thêm thiết bị", "en": "New device"},
    "admin.devices.no_checkpoint": {
        "vi": "Hãy tạo chốt trước khi thêm thiết bị.",
        "en": "Create a checkpoint before adding devices.",
    },
    "field.device_id": {"vi": "Mã thiết bị", "en": "Device id"},
    "field.device_id.hint": {
        "vi": "Cũng là tên đăng nhập MQTT, ví dụ hn-ql1a-phap-van-in-1",
        "en": "Also its MQTT username, e.g. hn-ql1a-phap-van-in-1",
    },
    "field.checkpoint": {"vi": "Chốt", "en": "Checkpoint"},
    "field.lane": {"vi": "Làn", "en": "Lane"},
    "field.direction": {"vi": "Chiều", "en": "Direction"},
    "field.state": {"vi": "Trạng thái", "en": "State"},
    "field.last_seen": {"vi": "Liên lạc gần nhất", "en": "Last seen"},
    "admin.devices.credentials": {
        "vi": "Thông tin đăng nhập MQTT của thiết bị {id}",
        "en": "MQTT credentials of device {id}",
    },
    "admin.devices.once": {
        "vi": "Mật khẩu chỉ hiện MỘT LẦN. Chép ngay vào cấu hình thiết bị; "
        "nếu mất, phải cấp lại thiết bị mới.",
        "en": "The password is shown ONCE. Copy it into the device's configuration now; "
        "if lost, a new device must be issued.",
    },
    "admin.devices.username": {"vi": "Tên đăng nhập MQTT", "en": "MQTT username"},
    "admin.devices.password": {"vi": "Mật khẩu MQTT", "en": "MQTT password"},
    "admin.devices.copy": {"vi": "Chép", "en": "Copy"},
    "admin.devices.copied": {"vi": "Đã chép", "en": "Copied"},
    "admin.devices.broker_written": {
        "vi": "Đã ghi tệp mật khẩu của broker ({path}, {accounts} tài khoản).",
        "en": "The broker's password file was written ({path}, {accounts} accounts).",
    },
    "admin.devices.broker_reloaded": {
        "vi": "Đã yêu cầu broker nạp lại (SIGHUP, pid {pid}).",
        "en": "The broker was asked to reload (SIGHUP, pid {pid}).",
    },
    "admin.devices.broker_no_reload": {
        "vi": "Chưa cấu hình tệp pid của broker: hãy cho broker nạp lại "
        "(kill -HUP, hoặc docker compose kill -s HUP mosquitto).",
        "en": "No broker pid file configured: make the broker reload "
        "(kill -HUP, or docker compose kill -s HUP mosquitto).",
    },
    "admin.devices.broker_unset": {
        "vi": "Chưa cấu hình tệp mật khẩu broker (KIEMDICH_WEB_BROKER_PASSWD_FILE): "
        "thiết bị chưa đăng nhập được vào broker cho đến khi tệp được ghi lại.",
        "en": "No broker password file configured (KIEMDICH_WEB_BROKER_PASSWD_FILE): "
        "the device cannot log in to the broker until the file is rewritten.",
    },
    "admin.devices.broker_failed": {
        "vi": "Không ghi được tệp mật khẩu broker: {error}. Thiết bị đã được lưu; "
        "bấm “Ghi lại tệp broker” khi đã sửa lỗi.",
        "en": "Could not write the broker's password file: {error}. The device is saved; "
        "press “Rewrite broker file” once fixed.",
    },
    "admin.devices.sync": {"vi": "Ghi lại tệp broker", "en": "Rewrite broker file"},
    "admin.devices.back": {"vi": "Về danh sách thiết bị", "en": "Back to the devices"},
    # --- admin: officers ----------------------------------------------------------
    "admin.officers.title": {"vi": "Tài khoản cán bộ", "en": "Officer accounts"},
    "admin.officers.new": {"vi": "Thêm tài khoản", "en": "New account"},
    "admin.officers.created": {
        "vi": "Đã tạo tài khoản {username}.",
        "en": "Account {username} created.",
    },
    "admin.officers.updated": {
        "vi": "Đã lưu tài khoản {username}.",
        "en": "Account {username} saved.",
    },
    "admin.officers.password_set": {
        "vi": "Đã đặt mật khẩu mới cho {username}; các phiên đăng nhập cũ đã bị huỷ.",
        "en": "New password set for {username}; their old sessions were ended.",
    },
    "admin.officers.edit": {"vi": "Sửa", "en": "Edit"},
    "admin.officers.edit_title": {"vi": "Tài khoản {username}", "en": "Account {username}"},
    "admin.officers.reset_password": {"vi": "Đặt lại mật khẩu", "en": "Reset password"},
    "admin.officers.deactivate": {"vi": "Khoá tài khoản", "en": "Deactivate"},
    "admin.officers.activate": {"vi": "Mở khoá tài khoản", "en": "Reactivate"},
    "admin.officers.inactive": {"vi": "Đã khoá", "en": "Deactivated"},
    "field.username": {"vi": "Tên đăng nhập", "en": "Username"},
    "field.full_name": {"vi": "Họ và tên", "en": "Full name"},
    "field.role": {"vi": "Vai trò", "en": "Role"},
    "field.scopes": {"vi": "Phạm vi", "en": "Scopes"},
    "field.scopes.hint": {
        "vi": "Mỗi dòng một phạm vi: checkpoint:mã-chốt, ward:mã-phường, province:mã-tỉnh. "
        "Để trống: toàn quốc (chỉ với chỉ huy, điều tra, y tế, quản trị).",
        "en": "One per line: checkpoint:id, ward:code, province:code. "
        "Empty: everywhere (command, investigators, health, admins only).",
    },
    "field.password": {"vi": "Mật khẩu", "en": "Password"},
    "field.password_again": {"vi": "Nhập lại mật khẩu", "en": "Password again"},
    "field.password.hint": {
        "vi": "Ít nhất 10 ký tự.",
        "en": "At least 10 characters.",
    },
    "field.last_login": {"vi": "Đăng nhập gần nhất", "en": "Last login"},
    # --- admin: audit -------------------------------------------------------------
    "admin.audit.title": {"vi": "Nhật ký truy cập dữ liệu", "en": "Data access audit log"},
    "admin.audit.intro": {
        "vi": "Mọi lần xem dữ liệu cá nhân và mọi thay đổi quản trị đều được ghi lại.",
        "en": "Every read of personal data and every administrative change is recorded.",
    },
    "field.officer": {"vi": "Cán bộ", "en": "Officer"},
    "field.action": {"vi": "Hành động", "en": "Action"},
    "field.subject": {"vi": "Đối tượng", "en": "Subject"},
    "field.purpose": {"vi": "Mục đích", "en": "Purpose"},
    "field.at": {"vi": "Thời điểm", "en": "When"},
    "field.ip": {"vi": "Địa chỉ IP", "en": "IP address"},
    "field.detail": {"vi": "Chi tiết", "en": "Detail"},
    "field.since": {"vi": "Từ ngày", "en": "From"},
    "field.until": {"vi": "Đến ngày", "en": "To"},
    "admin.audit.count": {"vi": "{count} dòng trên trang này", "en": "{count} rows on this page"},
}


def _validated(strings: Mapping[str, Mapping[str, str]], source: str) -> dict[str, dict[Lang, str]]:
    out: dict[str, dict[Lang, str]] = {}
    for key, texts in strings.items():
        missing = [lang for lang in LANGS if not texts.get(lang)]
        if missing or set(texts) - set(LANGS):
            raise ValueError(
                f"{source}: khoá {key!r} phải có đúng vi và en / key {key!r} needs exactly "
                f"'vi' and 'en' texts (has {sorted(texts)})"
            )
        out[key] = {lang: texts[lang] for lang in LANGS}
    return out


# Feature screens keep their texts in their own modules (a ``STRINGS`` dict each).
FEATURE_STRINGS = (
    "aggregator.web.i18n_live",
    "aggregator.web.i18n_registry",
    "aggregator.web.i18n_trace",
    "aggregator.web.i18n_venues",
)


def _merge_features() -> None:
    for name in FEATURE_STRINGS:
        module = importlib.import_module(name)
        extra = _validated(module.STRINGS, name)
        if clash := sorted(set(extra) & set(STRINGS)):
            raise ValueError(f"{name}: khoá trùng / keys defined twice: {clash}")
        STRINGS.update(extra)


STRINGS = _validated(STRINGS, __name__)
_merge_features()


def has_key(key: str) -> bool:
    """True when ``key`` has texts."""
    return key in STRINGS


def t(key: str, lang: Lang) -> str:
    """The text of ``key`` in ``lang``; the key itself (logged) when it has none."""
    texts = STRINGS.get(key)
    if texts is None:
        log.warning("i18n: no text for %r", key)
        return key
    return texts[lang]


def both(key: str, **params: object) -> str:
    """``"tiếng Việt / English"`` for messages with no chosen language (API, logs, CLI)."""
    return f"{t(key, 'vi').format(**params)} / {t(key, 'en').format(**params)}"


def parse_lang(value: str | None) -> Lang | None:
    """``value`` as a language code, or None when it is not one."""
    if value in LANGS:
        return cast(Lang, value)
    return None


def request_lang(request: Request) -> Lang:
    """``?lang=`` if given, else the ``kd_lang`` cookie, else Vietnamese."""
    return (
        parse_lang(request.query_params.get("lang"))
        or parse_lang(request.cookies.get(LANG_COOKIE))
        or DEFAULT_LANG
    )
