"""Words of the declaration, registry, inbox and venue screens, Vietnamese first.

``STRINGS`` has the shape of :data:`aggregator.web.i18n.STRINGS`, which merges
it at import (a key defined twice is an error, named).
"""

from __future__ import annotations

STRINGS: dict[str, dict[str, str]] = {
    # --- navigation -----------------------------------------------------------------------
    "nav.paper_declaration": {"vi": "Nhập tờ khai giấy", "en": "Paper declaration"},
    "nav.registry": {"vi": "Cập nhật F", "en": "Health status"},
    "nav.inbox": {"vi": "Thông báo phường", "en": "Ward inbox"},
    "nav.venues": {"vi": "Địa điểm", "en": "Venues"},
    # --- the declaration form ---------------------------------------------------------------
    "declare.title": {"vi": "Khai báo y tế", "en": "Health declaration"},
    "declare.paper_title": {
        "vi": "Nhập tờ khai y tế giấy",
        "en": "Enter a paper health declaration",
    },
    "declare.intro": {
        "vi": "Khai báo trước khi qua chốt. Bạn sẽ nhận mã QR để xuất trình tại chốt.",
        "en": "Declare before passing a checkpoint. You will get a QR code to show at the gate.",
    },
    "declare.paper_intro": {
        "vi": "Nhập đúng theo tờ khai giấy của công dân; đối chiếu với CCCD.",
        "en": "Copy the citizen's paper form exactly; check it against the ID card.",
    },
    "declare.section.person": {"vi": "Người khai", "en": "Person"},
    "declare.section.trip": {"vi": "Hành trình", "en": "Journey"},
    "declare.section.health": {"vi": "Sức khoẻ", "en": "Health"},
    "declare.identity_no": {"vi": "Số CCCD (12 chữ số)", "en": "Identity number (12 digits)"},
    "declare.full_name": {"vi": "Họ và tên", "en": "Full name"},
    "declare.full_name.hint": {
        "vi": "Đúng như trên CCCD (có thể gõ không dấu).",
        "en": "As on the ID card (diacritics optional).",
    },
    "declare.date_of_birth": {"vi": "Ngày sinh", "en": "Date of birth"},
    "declare.origin": {"vi": "Đi từ (phường/xã)", "en": "From (ward)"},
    "declare.destination": {"vi": "Đến (phường/xã)", "en": "To (ward)"},
    "declare.detail": {"vi": "Địa chỉ cụ thể", "en": "Street address"},
    "declare.ward.search": {
        "vi": "Gõ tên phường/xã, không cần dấu (vd. hoan kiem)",
        "en": "Type the ward's name, diacritics optional (e.g. hoan kiem)",
    },
    "declare.ward.pick": {"vi": "Chọn phường/xã", "en": "Choose the ward"},
    "declare.ward.none": {"vi": "Không tìm thấy phường/xã.", "en": "No ward found."},
    "declare.travel_date": {"vi": "Ngày đi", "en": "Travel date"},
    "declare.symptoms": {
        "vi": "Trong 14 ngày qua có triệu chứng nào sau đây?",
        "en": "Any of these symptoms in the last 14 days?",
    },
    "declare.symptom.fever": {"vi": "Sốt", "en": "Fever"},
    "declare.symptom.cough": {"vi": "Ho", "en": "Cough"},
    "declare.symptom.shortness_of_breath": {"vi": "Khó thở", "en": "Shortness of breath"},
    "declare.symptom.sore_throat": {"vi": "Đau họng", "en": "Sore throat"},
    "declare.symptom.loss_of_taste_smell": {
        "vi": "Mất vị giác, khứu giác",
        "en": "Loss of taste or smell",
    },
    "declare.symptom.fatigue": {"vi": "Mệt mỏi", "en": "Fatigue"},
    "declare.contact_risk": {
        "vi": "Trong 14 ngày qua tôi đã tiếp xúc với người nhiễm/nghi nhiễm COVID-19",
        "en": "In the last 14 days I was in contact with a confirmed or suspected case",
    },
    "declare.submit": {"vi": "Gửi tờ khai và nhận mã QR", "en": "Submit and get the QR code"},
    "declare.paper_submit": {"vi": "Lưu tờ khai và cấp mã", "en": "Save and issue the pass"},
    "declare.privacy": {
        "vi": "Mã QR chỉ chứa số tờ khai đã ký số, không chứa thông tin cá nhân.",
        "en": "The QR code holds only a signed declaration number, no personal data.",
    },
    "declare.error.identity_format": {
        "vi": "Số CCCD phải gồm đúng 12 chữ số.",
        "en": "The identity number must be exactly 12 digits.",
    },
    "declare.error.identity_province": {
        "vi": "Số CCCD không hợp lệ: {code} không phải mã tỉnh.",
        "en": "Invalid identity number: {code} is not a province code.",
    },
    "declare.error.birth_date": {
        "vi": "Ngày sinh không hợp lệ.",
        "en": "Invalid date of birth.",
    },
    "declare.error.travel_date": {
        "vi": "Ngày đi phải từ hôm nay đến {days} ngày tới.",
        "en": "The travel date must be between today and {days} days ahead.",
    },
    "declare.error.ward": {
        "vi": "Chọn một phường/xã trong danh sách.",
        "en": "Choose a ward from the list.",
    },
    "declare.error.no_match": {
        "vi": "Số CCCD, họ tên và ngày sinh không khớp với CSDL dân cư.",
        "en": "The identity number, name and date of birth do not match the population registry.",
    },
    "declare.error.rate_limited": {
        "vi": "Quá nhiều tờ khai từ địa chỉ này. Thử lại sau {seconds} giây.",
        "en": "Too many declarations from this address. Try again in {seconds} seconds.",
    },
    "declare.error.not_configured": {
        "vi": "Máy chủ chưa được cấu hình khoá ký; chưa cấp được mã.",
        "en": "The server has no signing key configured; passes cannot be issued.",
    },
    "declare.error.bad_token": {
        "vi": "Không phải mã kiểm dịch hợp lệ.",
        "en": "Not a valid checkpoint pass.",
    },
    # --- the pass page --------------------------------------------------------------------
    "pass.title": {"vi": "Mã QR kiểm dịch", "en": "Checkpoint pass"},
    "pass.show": {
        "vi": "Xuất trình mã này tại chốt kiểm dịch.",
        "en": "Show this code at the checkpoint.",
    },
    "pass.holder": {"vi": "Người khai", "en": "Holder"},
    "pass.number": {"vi": "Số tờ khai", "en": "Declaration no."},
    "pass.valid": {"vi": "Hiệu lực", "en": "Valid"},
    "pass.valid_range": {"vi": "từ {start} đến {end}", "en": "from {start} to {end}"},
    "pass.download_png": {"vi": "Tải ảnh PNG", "en": "Download PNG"},
    "pass.download_svg": {"vi": "Tải SVG (in)", "en": "Download SVG (print)"},
    "pass.print": {"vi": "In", "en": "Print"},
    "pass.another": {"vi": "Khai báo tờ khác", "en": "File another declaration"},
    "pass.paper_done": {
        "vi": "Đã lưu tờ khai giấy. In mã hoặc cho công dân chụp lại.",
        "en": "Paper declaration saved. Print the pass or let the citizen photograph it.",
    },
    # --- registry updates ---------------------------------------------------------------
    "registry.title": {"vi": "Cập nhật tình trạng F", "en": "Health status updates"},
    "registry.one": {"vi": "Một công dân", "en": "One citizen"},
    "registry.status": {"vi": "Tình trạng", "en": "Status"},
    "registry.since": {"vi": "Từ ngày", "en": "Since"},
    "registry.doses": {"vi": "Số mũi vắc-xin", "en": "Vaccine doses"},
    "registry.status.none": {"vi": "Bình thường", "en": "None"},
    "registry.status.F0": {"vi": "F0 — ca bệnh", "en": "F0 — case"},
    "registry.status.F1": {"vi": "F1 — tiếp xúc gần", "en": "F1 — close contact"},
    "registry.status.F2": {"vi": "F2", "en": "F2"},
    "registry.status.F3": {"vi": "F3", "en": "F3"},
    "registry.status.recovered": {"vi": "Đã khỏi", "en": "Recovered"},
    "registry.status.deceased": {"vi": "Đã mất", "en": "Deceased"},
    "registry.applied": {
        "vi": "Đã cập nhật {name}: {previous} → {status}, {doses} mũi.",
        "en": "Updated {name}: {previous} → {status}, {doses} doses.",
    },
    "registry.error.unknown_citizen": {
        "vi": "Không có công dân với số CCCD này.",
        "en": "No citizen has this identity number.",
    },
    "registry.error.out_of_scope": {
        "vi": "Công dân không cư trú trong phường bạn phụ trách.",
        "en": "This citizen does not live in your wards.",
    },
    "registry.error.future": {
        "vi": "Ngày không được ở tương lai.",
        "en": "The date cannot be in the future.",
    },
    "registry.import": {"vi": "Nhập tệp CSV của Sở Y tế", "en": "Import a health department CSV"},
    "registry.import.hint": {
        "vi": "Cột: {columns} (UTF-8). Tệp có lỗi sẽ không được nhập dòng nào.",
        "en": "Columns: {columns} (UTF-8). A file with any error imports nothing.",
    },
    "registry.import.file": {"vi": "Tệp CSV", "en": "CSV file"},
    "registry.import.dry_run": {"vi": "Chỉ xem trước (không lưu)", "en": "Preview only (dry run)"},
    "registry.import.submit": {"vi": "Kiểm tra / Nhập", "en": "Check / Import"},
    "registry.import.line": {"vi": "Dòng", "en": "Line"},
    "registry.import.problems": {"vi": "Lỗi", "en": "Problems"},
    "registry.import.refused": {
        "vi": "Không nhập: {errors}/{rows} dòng có lỗi. Sửa tệp rồi gửi lại.",
        "en": "Nothing imported: {errors} of {rows} rows have errors. Fix the file, send it again.",
    },
    "registry.import.done": {
        "vi": "Đã nhập {rows} dòng ({changed} thay đổi).",
        "en": "Imported {rows} rows ({changed} changed).",
    },
    "registry.import.preview": {
        "vi": "Xem trước: {rows} dòng hợp lệ, chưa lưu.",
        "en": "Preview: {rows} valid rows, nothing saved yet.",
    },
    "registry.import.error.encoding": {
        "vi": "Tệp không phải UTF-8.",
        "en": "The file is not UTF-8.",
    },
    "registry.import.error.header": {
        "vi": "Tiêu đề cột sai: cần {expected}, có {found}.",
        "en": "Wrong header: expected {expected}, found {found}.",
    },
    "registry.import.error.empty": {"vi": "Tệp không có dòng nào.", "en": "The file has no rows."},
    "registry.import.error.too_many": {
        "vi": "Tệp quá {max} dòng; chia nhỏ tệp.",
        "en": "More than {max} rows; split the file.",
    },
    "registry.import.error.too_large": {
        "vi": "Tệp lớn hơn {mb} MB.",
        "en": "The file is over {mb} MB.",
    },
    "registry.import.error.repeated": {
        "vi": "Số CCCD đã có ở dòng {line}.",
        "en": "Identity number already on line {line}.",
    },
    # --- ward inbox ------------------------------------------------------------------------
    "inbox.title": {"vi": "Thông báo của phường", "en": "Ward inbox"},
    "inbox.kind": {"vi": "Loại", "en": "Kind"},
    "inbox.kind.arrival": {"vi": "Đến", "en": "Arrival"},
    "inbox.kind.departure": {"vi": "Đi", "en": "Departure"},
    "inbox.kind.status_change": {"vi": "Đổi tình trạng F", "en": "Status change"},
    "inbox.handled": {"vi": "Trạng thái xử lý", "en": "Handling"},
    "inbox.handled.false": {"vi": "Chưa xử lý", "en": "Unhandled"},
    "inbox.handled.true": {"vi": "Đã xử lý", "en": "Handled"},
    "inbox.handled.all": {"vi": "Tất cả", "en": "All"},
    "inbox.when": {"vi": "Lúc", "en": "When"},
    "inbox.ward": {"vi": "Phường", "en": "Ward"},
    "inbox.detail": {"vi": "Chi tiết", "en": "Detail"},
    "inbox.select": {"vi": "Chọn", "en": "Select"},
    "inbox.mark": {"vi": "Đã xử lý", "en": "Mark handled"},
    "inbox.mark_selected": {"vi": "Đánh dấu các mục đã chọn", "en": "Mark selected handled"},
}
