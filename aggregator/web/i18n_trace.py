"""Words of the investigation (tracing) and daily report screens, Vietnamese first.

A ``STRINGS`` dict of the same shape as :mod:`aggregator.web.i18n_live`, merged
into :data:`aggregator.web.i18n.STRINGS` at import. Keys under ``js.trace.`` are
handed to ``static/trace.js``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aggregator.web.i18n import Lang

STRINGS: dict[str, dict[str, str]] = {
    "nav.trace": {"vi": "Truy vết", "en": "Tracing"},
    "nav.reports": {"vi": "Báo cáo ngày", "en": "Daily report"},
    # --- tracing page -------------------------------------------------------------------
    "trace.title": {"vi": "Truy vết dịch tễ", "en": "Contact tracing"},
    "trace.tab.place": {"vi": "Theo địa điểm", "en": "By place"},
    "trace.tab.route": {"vi": "Lộ trình công dân", "en": "Citizen route"},
    "trace.tab.contacts": {"vi": "Tiếp xúc với F0", "en": "F0 contacts"},
    "trace.purpose": {"vi": "Mục đích truy cập", "en": "Purpose"},
    "trace.purpose.hint": {
        "vi": "Bắt buộc, được ghi vào nhật ký truy cập (ví dụ: truy vết ca F0 số 123).",
        "en": "Required; written to the audit log (e.g. tracing F0 case no. 123).",
    },
    "trace.checkpoint": {"vi": "Chốt / địa điểm", "en": "Checkpoint / venue"},
    "trace.since": {"vi": "Từ lúc", "en": "From"},
    "trace.until": {"vi": "Đến lúc", "en": "Until"},
    "trace.citizen_query": {
        "vi": "Số CCCD hoặc họ tên (không cần dấu)",
        "en": "Identity number or name (accents optional)",
    },
    "trace.window_minutes": {"vi": "Cách nhau tối đa (phút)", "en": "Within (minutes)"},
    "trace.run": {"vi": "Truy vết", "en": "Trace"},
    "trace.find": {"vi": "Tìm công dân", "en": "Find citizen"},
    "trace.more": {"vi": "Xem thêm", "en": "Load more"},
    "trace.download_csv": {"vi": "Tải CSV", "en": "Download CSV"},
    "trace.download_xlsx": {"vi": "Tải Excel", "en": "Download Excel"},
    "trace.mark_f1": {
        "vi": "Đánh dấu F1 và báo phường",
        "en": "Mark as F1 and notify wards",
    },
    "trace.col.seen_at": {"vi": "Thời điểm", "en": "Time"},
    "trace.col.checkpoint": {"vi": "Chốt / địa điểm", "en": "Checkpoint / venue"},
    "trace.col.checkpoint_id": {"vi": "Mã chốt", "en": "Checkpoint id"},
    "trace.col.ward": {"vi": "Phường/xã", "en": "Ward"},
    "trace.col.direction": {"vi": "Chiều", "en": "Direction"},
    "trace.col.verdict": {"vi": "Kết quả", "en": "Verdict"},
    "trace.col.reason": {"vi": "Lý do", "en": "Reason"},
    "trace.col.identity_no": {"vi": "Số CCCD", "en": "Identity number"},
    "trace.col.full_name": {"vi": "Họ và tên", "en": "Full name"},
    "trace.col.date_of_birth": {"vi": "Ngày sinh", "en": "Date of birth"},
    "trace.col.phone": {"vi": "Điện thoại", "en": "Phone"},
    "trace.col.health_status": {"vi": "Tình trạng", "en": "Status"},
    "trace.col.permanent_ward": {"vi": "Thường trú", "en": "Permanent residence"},
    "trace.col.temporary_ward": {"vi": "Tạm trú", "en": "Temporary residence"},
    "trace.col.shared": {"vi": "Số lần trùng", "en": "Shared passages"},
    "trace.col.closest": {"vi": "Gần nhất (phút)", "en": "Closest (minutes)"},
    "trace.col.mean": {"vi": "Trung bình (phút)", "en": "Mean gap (minutes)"},
    "trace.col.places": {"vi": "Địa điểm trùng", "en": "Shared places"},
    "trace.direction.in": {"vi": "Vào", "en": "In"},
    "trace.direction.out": {"vi": "Ra", "en": "Out"},
    "trace.error.purpose": {
        "vi": "Cần nhập mục đích truy cập (ít nhất 5 ký tự).",
        "en": "A purpose is required (at least 5 characters).",
    },
    "trace.error.window": {"vi": "Khoảng thời gian không hợp lệ: {why}", "en": "Bad window: {why}"},
    "trace.error.checkpoint": {
        "vi": "Chốt {checkpoint} không có hoặc nằm ngoài phạm vi của bạn.",
        "en": "Checkpoint {checkpoint} does not exist or is outside your scope.",
    },
    "trace.error.citizen": {"vi": "Không có công dân này.", "en": "No such citizen."},
    "trace.error.citizen_scope": {
        "vi": "Công dân này không cư trú trong phạm vi của bạn.",
        "en": "This citizen does not live within your scope.",
    },
    "trace.error.source_in_contacts": {
        "vi": "Ca F0 nguồn không thể nằm trong danh sách tiếp xúc.",
        "en": "The source F0 cannot be among the contacts.",
    },
    "trace.audited": {
        "vi": "Mọi lần truy vết đều được ghi nhật ký cùng mục đích bạn nhập.",
        "en": "Every trace is logged with the purpose you type.",
    },
    "js.trace.no_results": {"vi": "Không có kết quả.", "en": "No results."},
    "js.trace.loading": {"vi": "Đang truy vấn…", "en": "Searching…"},
    "js.trace.count": {"vi": "{count} dòng", "en": "{count} rows"},
    "js.trace.truncated": {
        "vi": "Danh sách đã bị cắt bớt; hãy thu hẹp khoảng thời gian.",
        "en": "The list was cut short; narrow the time window.",
    },
    "js.trace.pick": {"vi": "Chọn", "en": "Choose"},
    "js.trace.confirm_f1": {
        "vi": "Đánh dấu {count} người là F1 và gửi thông báo đến phường tạm trú/thường trú?",
        "en": "Mark {count} people as F1 and notify their wards of residence?",
    },
    "js.trace.marked": {
        "vi": "Đã đánh dấu {changed} người là F1 ({kept} người giữ nguyên tình trạng).",
        "en": "{changed} marked as F1 ({kept} kept their status).",
    },
    # --- daily report -------------------------------------------------------------------
    "report.title": {"vi": "Báo cáo lượt qua lại theo ngày", "en": "Daily passages report"},
    "report.first_day": {"vi": "Từ ngày", "en": "From"},
    "report.last_day": {"vi": "Đến ngày", "en": "To"},
    "report.show": {"vi": "Xem báo cáo", "en": "Show report"},
    "report.print": {"vi": "In", "en": "Print"},
    "report.by_checkpoint": {"vi": "Theo chốt, theo ngày", "en": "Per checkpoint per day"},
    "report.by_hour": {"vi": "Theo giờ", "en": "Per hour"},
    "report.by_ward": {"vi": "Theo phường/xã", "en": "By ward"},
    "report.by_province": {"vi": "Theo tỉnh/thành phố", "en": "By province"},
    "report.total": {"vi": "Tổng cộng", "en": "Total"},
    "report.day": {"vi": "Ngày", "en": "Day"},
    "report.hour": {"vi": "Giờ", "en": "Hour"},
    "report.in": {"vi": "Vào", "en": "In"},
    "report.out": {"vi": "Ra", "en": "Out"},
    "report.flagged": {"vi": "Cảnh báo", "en": "Flagged"},
    "report.checkpoints": {"vi": "Số chốt", "en": "Checkpoints"},
    "report.province": {"vi": "Tỉnh/thành phố", "en": "Province"},
    "report.scope_note": {
        "vi": "Chỉ gồm các chốt trong phạm vi của bạn.",
        "en": "Only the checkpoints within your scope.",
    },
    "report.generated": {"vi": "Lập lúc {at} bởi {name}", "en": "Made at {at} by {name}"},
    "report.error.days": {"vi": "Ngày không hợp lệ: {why}", "en": "Bad days: {why}"},
}


def js_strings(lang: Lang) -> dict[str, str]:
    """The ``js.trace.*`` texts in ``lang``, keyed without the prefix, for ``trace.js``."""
    from aggregator.web.i18n import t  # i18n imports this module at its own import

    prefix = "js.trace."
    return {key[len(prefix) :]: t(key, lang) for key in STRINGS if key.startswith(prefix)}
