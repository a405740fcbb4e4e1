"""Words of the live screens (alert monitor, manual look-up, command centre), Vietnamese first.

Merged into :data:`aggregator.web.i18n.STRINGS` at import. Keys under
``js.`` are also handed to the screens' scripts (see :func:`js_strings`).
"""

from __future__ import annotations

STRINGS: dict[str, dict[str, str]] = {
    # --- alert kinds: the reason an alert was raised ------------------------------------
    "alert.kind.f0": {
        "vi": "F0 — ca bệnh đã xác nhận",
        "en": "F0 — confirmed case",
    },
    "alert.kind.f1": {
        "vi": "F1 — tiếp xúc gần với F0",
        "en": "F1 — close contact of a case",
    },
    "alert.kind.deceased_identity": {
        "vi": "Dùng danh tính người đã mất",
        "en": "Identity of a deceased person",
    },
    "alert.kind.forged": {
        "vi": "Mã giả mạo (chữ ký không hợp lệ)",
        "en": "Forged code (signature does not verify)",
    },
    "alert.kind.expired": {"vi": "Mã đã hết hạn", "en": "Expired code"},
    "alert.kind.revoked": {"vi": "Mã đã bị thu hồi", "en": "Revoked code"},
    "alert.kind.unknown_citizen": {
        "vi": "Không rõ công dân (tờ khai không có trong CSDL)",
        "en": "Unknown citizen (declaration not in the registry)",
    },
    "alert.status.open": {"vi": "Mới", "en": "Open"},
    "alert.status.acknowledged": {"vi": "Đã tiếp nhận", "en": "Acknowledged"},
    "alert.status.resolved": {"vi": "Đã xử lý", "en": "Resolved"},
    "alert.action.acknowledge": {"vi": "Tiếp nhận", "en": "Acknowledge"},
    "alert.action.confirm": {"vi": "Xác nhận đúng người", "en": "Confirm identity"},
    "alert.action.confirm_code": {"vi": "Xác nhận cảnh báo", "en": "Confirm the alert"},
    "alert.action.resolve": {"vi": "Đã xử lý", "en": "Resolve"},
    "alert.action.false_read": {"vi": "Đọc nhầm", "en": "False read"},
    "alert.error.not_found": {"vi": "Không có cảnh báo này.", "en": "No such alert."},
    "alert.error.forbidden": {
        "vi": "Cảnh báo thuộc chốt ngoài phạm vi của bạn.",
        "en": "This alert belongs to a checkpoint outside your scope.",
    },
    "alert.error.checkpoint_forbidden": {
        "vi": "Chốt {checkpoint} nằm ngoài phạm vi của bạn.",
        "en": "Checkpoint {checkpoint} is outside your scope.",
    },
    "alert.error.no_crop": {
        "vi": "Lượt qua này không có ảnh cắt.",
        "en": "This passage has no camera crop.",
    },
    # --- health status, vaccination ------------------------------------------------------
    "health.none": {"vi": "Bình thường", "en": "No flag"},
    "health.F0": {"vi": "F0 — đang mắc bệnh", "en": "F0 — confirmed case"},
    "health.F1": {"vi": "F1 — tiếp xúc gần", "en": "F1 — close contact"},
    "health.F2": {"vi": "F2 — tiếp xúc với F1", "en": "F2 — contact of an F1"},
    "health.F3": {"vi": "F3 — tiếp xúc với F2", "en": "F3 — contact of an F2"},
    "health.recovered": {"vi": "Đã khỏi bệnh", "en": "Recovered"},
    "health.deceased": {"vi": "Đã mất", "en": "Deceased"},
    "vaccination.green": {"vi": "Xanh — đã tiêm 2 mũi", "en": "Green — two doses"},
    "vaccination.yellow": {"vi": "Vàng — đã tiêm 1 mũi", "en": "Yellow — one dose"},
    "vaccination.none": {"vi": "Chưa tiêm", "en": "Not vaccinated"},
    "sex.male": {"vi": "Nam", "en": "Male"},
    "sex.female": {"vi": "Nữ", "en": "Female"},
    "verdict.green": {"vi": "Cho qua", "en": "Pass"},
    "verdict.yellow": {"vi": "Cho qua (chưa đủ mũi)", "en": "Pass (not fully vaccinated)"},
    "verdict.red": {"vi": "Dừng lại", "en": "Stop"},
    "verdict.invalid": {"vi": "Mã không hợp lệ", "en": "Invalid code"},
    "code.clear": {"vi": "Hợp lệ", "en": "Valid"},
    "code.f0": {"vi": "F0 — ca bệnh đã xác nhận", "en": "F0 — confirmed case"},
    "code.f1": {"vi": "F1 — tiếp xúc gần với F0", "en": "F1 — close contact of a case"},
    "code.f2": {"vi": "F2 — tiếp xúc với F1", "en": "F2 — contact of an F1"},
    "code.f3": {"vi": "F3 — tiếp xúc với F2", "en": "F3 — contact of an F2"},
    "code.recovered": {"vi": "Đã khỏi bệnh", "en": "Recovered"},
    "code.deceased_identity": {"vi": "Danh tính người đã mất", "en": "Deceased person's identity"},
    "code.unknown_citizen": {"vi": "Không rõ công dân", "en": "Unknown citizen"},
    "code.unknown_declaration": {
        "vi": "Tờ khai không có trong CSDL",
        "en": "Declaration not in the registry",
    },
    "code.forged": {"vi": "Mã giả mạo", "en": "Forged code"},
    "code.expired": {"vi": "Mã hết hạn", "en": "Expired code"},
    "code.not_yet_valid": {"vi": "Mã chưa đến hạn dùng", "en": "Code not yet valid"},
    "code.revoked": {"vi": "Mã đã bị thu hồi", "en": "Revoked code"},
    "code.malformed": {
        "vi": "Không phải mã thông hành (không đọc được)",
        "en": "Not a pass code (unreadable)",
    },
    "code.offline_valid": {"vi": "Hợp lệ (ngoại tuyến)", "en": "Valid (offline)"},
    # --- monitor page ----------------------------------------------------------------------
    "monitor.title": {"vi": "Cảnh báo tại chốt", "en": "Checkpoint alerts"},
    "monitor.filter.checkpoint": {"vi": "Chốt", "en": "Checkpoint"},
    "monitor.filter.status": {"vi": "Trạng thái", "en": "Status"},
    "monitor.filter.unresolved": {"vi": "Chưa xử lý xong", "en": "Not yet resolved"},
    "monitor.sound": {"vi": "Bật âm báo", "en": "Sound on"},
    "monitor.sound.hint": {
        "vi": "Trình duyệt chỉ cho phát âm thanh sau khi bạn bấm vào trang.",
        "en": "Browsers play sound only after you click on the page.",
    },
    # --- lookup page -------------------------------------------------------------------------
    "lookup.title": {"vi": "Tra cứu tại chốt", "en": "Checkpoint look-up"},
    "lookup.identity": {"vi": "Số CCCD (12 chữ số)", "en": "Identity number (12 digits)"},
    "lookup.identity.submit": {"vi": "Tra cứu", "en": "Look up"},
    "lookup.token": {"vi": "Mã thông hành (chuỗi KD1:…)", "en": "Pass code (KD1:… text)"},
    "lookup.token.submit": {"vi": "Kiểm tra mã", "en": "Check code"},
    "lookup.camera": {"vi": "Quét mã bằng camera", "en": "Scan with the camera"},
    "lookup.camera.stop": {"vi": "Tắt camera", "en": "Stop the camera"},
    "lookup.camera.hint": {
        "vi": "Đưa mã QR vào giữa khung hình; kết quả hiện ngay khi đọc được.",
        "en": "Hold the QR code in the middle of the picture; the result shows once read.",
    },
    "lookup.error.identity": {
        "vi": "Số CCCD phải gồm đúng 12 chữ số.",
        "en": "The identity number must be exactly 12 digits.",
    },
    "lookup.error.not_found": {
        "vi": "Không có công dân mang số CCCD này.",
        "en": "No citizen holds this identity number.",
    },
    "lookup.error.token_empty": {
        "vi": "Chưa nhập mã thông hành.",
        "en": "No pass code given.",
    },
    "lookup.error.token_long": {
        "vi": "Mã quá dài: không phải mã thông hành.",
        "en": "Too long to be a pass code.",
    },
    # --- command centre ------------------------------------------------------------------------
    "cmd.title": {"vi": "Trung tâm chỉ huy", "en": "Command centre"},
    "cmd.checkpoint.title": {"vi": "Chốt {name}", "en": "Checkpoint {name}"},
    "cmd.updates": {
        "vi": "Cập nhật mỗi {seconds} giây và ngay khi có cảnh báo hoặc thiết bị đổi trạng thái.",
        "en": "Updated every {seconds} seconds, and at once on an alert or a device change.",
    },
    "cmd.error.checkpoint_forbidden": {
        "vi": "Chốt này nằm ngoài phạm vi của bạn.",
        "en": "This checkpoint is outside your scope.",
    },
    "cmd.error.checkpoint_unknown": {"vi": "Không có chốt này.", "en": "No such checkpoint."},
    # --- strings the scripts use (js.*) ---------------------------------------------------------
    "js.loading": {"vi": "Đang tải…", "en": "Loading…"},
    "js.live": {"vi": "Trực tiếp", "en": "Live"},
    "js.reconnecting": {"vi": "Mất kết nối, đang nối lại…", "en": "Disconnected, reconnecting…"},
    "js.no_alerts": {"vi": "Không có cảnh báo.", "en": "No alerts."},
    "js.new_alert": {"vi": "Cảnh báo mới", "en": "New alert"},
    "js.reason": {"vi": "Lý do", "en": "Reason"},
    "js.checkpoint": {"vi": "Chốt", "en": "Checkpoint"},
    "js.device": {"vi": "Thiết bị", "en": "Device"},
    "js.lane": {"vi": "Làn", "en": "Lane"},
    "js.direction": {"vi": "Chiều", "en": "Direction"},
    "js.direction.in": {"vi": "Vào", "en": "In"},
    "js.direction.out": {"vi": "Ra", "en": "Out"},
    "js.seen_at": {"vi": "Lúc quét", "en": "Scanned at"},
    "js.full_name": {"vi": "Họ và tên", "en": "Full name"},
    "js.date_of_birth": {"vi": "Ngày sinh", "en": "Date of birth"},
    "js.identity_no": {"vi": "Số CCCD", "en": "Identity number"},
    "js.sex": {"vi": "Giới tính", "en": "Sex"},
    "js.phone": {"vi": "Điện thoại", "en": "Phone"},
    "js.origin": {"vi": "Nơi đi", "en": "From"},
    "js.destination": {"vi": "Nơi đến", "en": "To"},
    "js.permanent_ward": {"vi": "Thường trú", "en": "Permanent residence"},
    "js.temporary_ward": {"vi": "Tạm trú", "en": "Temporary residence"},
    "js.vaccination": {"vi": "Tiêm chủng", "en": "Vaccination"},
    "js.health": {"vi": "Tình trạng y tế", "en": "Health status"},
    "js.health_since": {"vi": "từ {date}", "en": "since {date}"},
    "js.health_at_alert": {"vi": "Lúc cảnh báo: {status}", "en": "When alerted: {status}"},
    "js.declaration": {"vi": "Tờ khai", "en": "Declaration"},
    "js.declaration_none": {"vi": "Không có tờ khai.", "en": "No declaration."},
    "js.declaration_valid_until": {"vi": "hiệu lực đến {date}", "en": "valid until {date}"},
    "js.declaration_revoked": {"vi": "đã thu hồi {date}", "en": "revoked {date}"},
    "js.declaration_expired": {"vi": "đã hết hạn {date}", "en": "expired {date}"},
    "js.symptoms": {"vi": "Triệu chứng", "en": "Symptoms"},
    "js.contact_risk": {"vi": "Có tiếp xúc nguy cơ", "en": "Reported a risky contact"},
    "js.claimed_declaration": {
        "vi": "Mã tờ khai ghi trong mã (chưa xác thực)",
        "en": "Declaration id written in the code (unverified)",
    },
    "js.no_person": {
        "vi": "Không có dữ liệu công dân: mã không gắn với ai trong CSDL.",
        "en": "No citizen data: the code belongs to nobody in the registry.",
    },
    "js.no_crop": {"vi": "Không có ảnh", "en": "No picture"},
    "js.crop_alt": {"vi": "Ảnh cắt vùng mã QR từ camera", "en": "Camera crop of the QR code"},
    "js.note": {"vi": "Ghi chú", "en": "Note"},
    "js.note_required": {
        "vi": "Nhập ghi chú về cách đã xử lý.",
        "en": "Write a note saying what was done.",
    },
    "js.note_placeholder": {
        "vi": "Ví dụ: đã chuyển y tế phường cách ly",
        "en": "E.g. handed over to the ward health team",
    },
    "js.history": {"vi": "Lịch sử xử lý", "en": "History"},
    "js.by": {"vi": "bởi {name}", "en": "by {name}"},
    "js.failed": {"vi": "Không thực hiện được", "en": "Could not do it"},
    "js.created_at": {"vi": "Lúc cảnh báo", "en": "Raised at"},
    "js.verdict": {"vi": "Kết quả", "en": "Verdict"},
    "js.checking": {"vi": "Đang kiểm tra…", "en": "Checking…"},
    "js.camera_unavailable": {
        "vi": "Không mở được camera (cần HTTPS hoặc localhost và quyền truy cập).",
        "en": "Cannot open the camera (needs HTTPS or localhost, and permission).",
    },
    "js.passages_per_minute": {"vi": "Lượt qua mỗi phút", "en": "Passages per minute"},
    "js.in_today": {"vi": "Vào hôm nay", "en": "In today"},
    "js.out_today": {"vi": "Ra hôm nay", "en": "Out today"},
    "js.flagged_today": {"vi": "Bị cảnh báo hôm nay", "en": "Flagged today"},
    "js.open_alerts": {"vi": "Cảnh báo chưa xử lý", "en": "Unresolved alerts"},
    "js.devices": {"vi": "Thiết bị", "en": "Devices"},
    "js.online": {"vi": "Trực tuyến", "en": "Online"},
    "js.offline": {"vi": "Mất kết nối", "en": "Offline"},
    "js.stale": {"vi": "Im lặng quá lâu", "en": "Silent too long"},
    "js.unknown": {"vi": "Chưa báo", "en": "Never reported"},
    "js.last_heartbeat": {"vi": "Tín hiệu gần nhất", "en": "Last heartbeat"},
    "js.fps": {"vi": "Khung hình/giây", "en": "Frames/s"},
    "js.outbox": {"vi": "Hàng đợi gửi", "en": "Outbox backlog"},
    "js.ingest_lag": {"vi": "Độ trễ xử lý", "en": "Ingest lag"},
    "js.ingest_queue": {"vi": "Hàng đợi xử lý", "en": "Ingest queue"},
    "js.mqtt": {"vi": "MQTT", "en": "MQTT"},
    "js.connected": {"vi": "đã kết nối", "en": "connected"},
    "js.disconnected": {"vi": "mất kết nối", "en": "disconnected"},
    "js.map": {"vi": "Sơ đồ các chốt", "en": "Checkpoint map"},
    "js.checkpoints": {"vi": "Các chốt", "en": "Checkpoints"},
    "js.last_5_min": {"vi": "5 phút qua", "en": "Last 5 min"},
    "js.last_hour": {"vi": "60 phút qua", "en": "Last 60 minutes"},
    "js.updated": {"vi": "Cập nhật {time}", "en": "Updated {time}"},
    "js.seconds_ago": {"vi": "{n} giây trước", "en": "{n} s ago"},
    "js.minutes_ago": {"vi": "{n} phút trước", "en": "{n} min ago"},
    "js.hours_ago": {"vi": "{n} giờ trước", "en": "{n} h ago"},
    "js.never": {"vi": "chưa bao giờ", "en": "never"},
    "js.kind": {"vi": "Loại", "en": "Kind"},
    "js.count": {"vi": "Số lượng", "en": "Count"},
    "js.total": {"vi": "Tổng", "en": "Total"},
    "js.all_checkpoints": {"vi": "Tất cả các chốt trong phạm vi", "en": "All checkpoints in scope"},
    "js.state": {"vi": "Trạng thái", "en": "State"},
    "js.software": {"vi": "Phần mềm", "en": "Software"},
    "js.camera": {"vi": "Camera", "en": "Camera"},
    "js.clock_skew": {"vi": "Lệch giờ", "en": "Clock skew"},
    "js.open_detail": {"vi": "Xem chi tiết chốt", "en": "Open the checkpoint's page"},
    "js.recent_alerts": {"vi": "Cảnh báo chưa xử lý tại chốt", "en": "Unresolved alerts here"},
    "js.minutes_axis": {"vi": "phút trước", "en": "minutes ago"},
}


def js_strings(lang: str) -> dict[str, str]:
    """The texts the scripts show, in ``lang``: ``js.*`` (keyed without the prefix) and the
    ``alert.*``, ``health.*``, ``vaccination.*``, ``verdict.*``, ``code.*``, ``sex.*`` and
    ``lookup.*`` vocabularies."""
    prefixes = ("alert.", "health.", "vaccination.", "verdict.", "code.", "sex.", "lookup.")
    out = {}
    for key, texts in STRINGS.items():
        if key.startswith("js."):
            out[key[3:]] = texts[lang]
        elif key.startswith(prefixes):
            out[key] = texts[lang]
    return out
