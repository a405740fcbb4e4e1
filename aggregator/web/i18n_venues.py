"""Words of the venue screens (registration, poster, door scanner, check-ins), Vietnamese first.

A ``STRINGS`` dict of the same shape as :mod:`aggregator.web.i18n_live`, merged
into :data:`aggregator.web.i18n.STRINGS` at import. Keys under ``venue.js.``
and ``venue.checkin.`` are handed to ``static/venues.js`` (:func:`js_strings`).
The poster prints both languages whatever the page's language.
"""

from __future__ import annotations

STRINGS: dict[str, dict[str, str]] = {
    # "nav.venues" (the navigation entry) is defined in aggregator.web.i18n_registry.
    # --- categories ---------------------------------------------------------------------
    "venue.category.supermarket": {"vi": "Siêu thị", "en": "Supermarket"},
    "venue.category.hospital": {"vi": "Bệnh viện", "en": "Hospital"},
    "venue.category.bus_station": {"vi": "Bến xe", "en": "Bus station"},
    "venue.category.public_service_centre": {
        "vi": "Trung tâm hành chính công",
        "en": "Public service centre",
    },
    "venue.category.market": {"vi": "Chợ", "en": "Market"},
    "venue.category.school": {"vi": "Trường học", "en": "School"},
    "venue.category.other": {"vi": "Khác", "en": "Other"},
    # --- my venues ----------------------------------------------------------------------
    "venue.list.title": {"vi": "Địa điểm quét mã", "en": "Check-in venues"},
    "venue.list.intro": {
        "vi": "Siêu thị, bệnh viện, bến xe, trung tâm hành chính công... đăng ký làm điểm "
        "quét mã: in áp phích treo ở cửa, rồi quét mã thông hành của khách bằng điện thoại "
        "hoặc webcam.",
        "en": "Supermarkets, hospitals, bus stations, public service centres... registered as "
        "check-in points: print the poster for the entrance, then scan visitors' passes with a "
        "phone or a webcam.",
    },
    "venue.list.new": {"vi": "Đăng ký địa điểm", "en": "Register a venue"},
    "venue.list.created": {
        "vi": "Đã đăng ký {name}. Hãy in áp phích và treo ở cửa vào.",
        "en": "{name} is registered. Print its poster and hang it at the entrance.",
    },
    "venue.list.empty": {
        "vi": "Chưa có địa điểm nào. Bấm «Đăng ký địa điểm» để bắt đầu.",
        "en": "No venue yet. Choose “Register a venue” to start.",
    },
    "venue.list.pending": {
        "vi": "Địa điểm chưa thiết lập quét mã",
        "en": "Venues not yet set up for check-in",
    },
    "venue.list.pending.hint": {
        "vi": "Các địa điểm này đã có trong hệ thống nhưng chưa có thông tin đăng ký và "
        "thiết bị quét.",
        "en": "These venues exist but have no registration details and no scanner yet.",
    },
    "venue.list.setup": {"vi": "Thiết lập", "en": "Set up"},
    # --- fields -------------------------------------------------------------------------
    "venue.field.id": {"vi": "Mã địa điểm", "en": "Venue code"},
    "venue.field.name": {"vi": "Tên địa điểm", "en": "Venue name"},
    "venue.field.name.hint": {
        "vi": "Như trên biển hiệu, ví dụ: Siêu thị Co.opmart Lý Thường Kiệt.",
        "en": "As on the sign, e.g. Siêu thị Co.opmart Lý Thường Kiệt.",
    },
    "venue.field.category": {"vi": "Loại địa điểm", "en": "Kind of premises"},
    "venue.field.address": {"vi": "Địa chỉ", "en": "Street address"},
    "venue.field.address.hint": {
        "vi": "Số nhà, tên đường (phường/xã chọn bên dưới).",
        "en": "House number and street (the ward is picked below).",
    },
    "venue.field.coordinates.hint": {
        "vi": "Không bắt buộc; để hiện trên bản đồ của trung tâm chỉ huy.",
        "en": "Optional; places the venue on the command centre's map.",
    },
    "venue.field.contact_name": {"vi": "Người phụ trách", "en": "Person in charge"},
    "venue.field.contact_phone": {"vi": "Điện thoại liên hệ", "en": "Contact phone"},
    "venue.field.contact_phone.hint": {
        "vi": "Số di động hoặc cố định, ví dụ 0912 345 678.",
        "en": "Mobile or landline, e.g. 0912 345 678.",
    },
    "venue.field.manager_username": {
        "vi": "Tài khoản quản lý địa điểm",
        "en": "Venue manager account",
    },
    "venue.field.manager_username.hint": {
        "vi": "Không bắt buộc. Tài khoản (vai trò quản lý địa điểm) được giao quản lý địa "
        "điểm này.",
        "en": "Optional. The account (venue manager role) that will run this venue.",
    },
    "venue.field.state": {"vi": "Trạng thái", "en": "State"},
    "venue.field.device": {"vi": "Thiết bị quét", "en": "Scanning device"},
    "venue.state.open": {"vi": "Đang nhận quét mã", "en": "Open for check-in"},
    "venue.state.closed": {"vi": "Đã đóng", "en": "Closed"},
    # --- register -----------------------------------------------------------------------
    "venue.register.title": {"vi": "Đăng ký địa điểm quét mã", "en": "Register a check-in venue"},
    "venue.register.intro": {
        "vi": "Sau khi đăng ký, địa điểm có áp phích để in và trang quét mã cho nhân viên. "
        "Mọi lượt quét được ghi như lượt qua chốt và dùng cho truy vết.",
        "en": "Once registered, the venue has a poster to print and a scanning page for its "
        "staff. Every scan is recorded like a checkpoint passage and used for contact tracing.",
    },
    "venue.register.adopt": {
        "vi": "Hoàn tất đăng ký cho địa điểm có sẵn: {name} ({id}).",
        "en": "Completing the registration of an existing venue: {name} ({id}).",
    },
    "venue.register.submit": {"vi": "Đăng ký", "en": "Register"},
    # --- actions ------------------------------------------------------------------------
    "venue.action.poster": {"vi": "In áp phích", "en": "Print poster"},
    "venue.action.checkin": {"vi": "Quét mã", "en": "Scan passes"},
    "venue.action.passages": {"vi": "Lượt vào hôm nay", "en": "Today's check-ins"},
    "venue.action.close": {"vi": "Đóng quét mã", "en": "Close check-in"},
    "venue.action.open": {"vi": "Mở lại", "en": "Reopen"},
    "venue.action.public": {"vi": "Trang công khai", "en": "Public page"},
    # --- poster (printed in both languages) ---------------------------------------------
    "venue.poster.title": {"vi": "Áp phích địa điểm", "en": "Venue poster"},
    "venue.poster.kicker": {"vi": "ĐIỂM QUÉT MÃ KIỂM DỊCH", "en": "CHECK-IN POINT"},
    "venue.poster.how": {"vi": "Cách vào", "en": "How to enter"},
    "venue.poster.step1": {
        "vi": "Mở mã thông hành (mã QR khai báo y tế) trên điện thoại hoặc bản in.",
        "en": "Open your pass (the health declaration QR code) on your phone or on paper.",
    },
    "venue.poster.step2": {
        "vi": "Đưa mã vào camera của nhân viên ở cửa.",
        "en": "Hold it up to the staff's camera at the door.",
    },
    "venue.poster.step3": {
        "vi": "Màn hình xanh: mời vào. Màn hình đỏ: mời gặp cán bộ y tế.",
        "en": "Green screen: come in. Red screen: please see a health officer.",
    },
    "venue.poster.no_pass": {
        "vi": "Chưa có mã thông hành? Khai báo y tế tại",
        "en": "No pass yet? Declare your health at",
    },
    "venue.poster.qr_caption": {
        "vi": "Quét để xem thông tin địa điểm",
        "en": "Scan for this venue's details",
    },
    "venue.poster.code": {"vi": "Mã địa điểm", "en": "Venue code"},
    "venue.poster.print": {"vi": "In áp phích", "en": "Print the poster"},
    "venue.poster.print_hint": {
        "vi": "Khổ A4 dọc; treo ở cửa vào, ngang tầm mắt.",
        "en": "A4 portrait; hang it at the entrance at eye level.",
    },
    # --- door scanner -------------------------------------------------------------------
    "venue.checkin.title": {"vi": "Quét mã tại cửa", "en": "Door scanner"},
    "venue.checkin.ready": {"vi": "Sẵn sàng quét", "en": "Ready to scan"},
    "venue.checkin.ready.detail": {
        "vi": "Đưa mã thông hành vào camera, hoặc nhập mã bên dưới.",
        "en": "Show a pass to the camera, or type its code below.",
    },
    "venue.checkin.closed": {
        "vi": "Địa điểm đang đóng: không nhận quét mã. Mở lại ở trang «Địa điểm».",
        "en": "The venue is closed: check-ins are refused. Reopen it on the Venues page.",
    },
    "venue.checkin.camera": {"vi": "Bật camera", "en": "Start camera"},
    "venue.checkin.camera.stop": {"vi": "Tắt camera", "en": "Stop camera"},
    "venue.checkin.camera.hint": {
        "vi": "Đưa mã QR vào khung hình; máy quét liên tục.",
        "en": "Hold the QR code in view; scanning is continuous.",
    },
    "venue.checkin.camera_unavailable": {
        "vi": "Không mở được camera (cần cho phép truy cập và kết nối HTTPS).",
        "en": "Cannot open the camera (it needs permission and an HTTPS connection).",
    },
    "venue.checkin.manual": {"vi": "Nhập mã thủ công", "en": "Type a code"},
    "venue.checkin.manual.hint": {
        "vi": "Dán hoặc gõ mã bắt đầu bằng KD1:",
        "en": "Paste or type the code starting with KD1:",
    },
    "venue.checkin.submit": {"vi": "Kiểm tra", "en": "Check in"},
    "venue.checkin.sound": {"vi": "Âm thanh", "en": "Sound"},
    "venue.checkin.session": {"vi": "Lượt quét trong phiên này", "en": "Scans this session"},
    "venue.checkin.session.empty": {"vi": "Chưa có lượt quét.", "en": "No scan yet."},
    "venue.js.checking": {"vi": "Đang kiểm tra…", "en": "Checking…"},
    "venue.js.retrying": {
        "vi": "Mất kết nối, đang gửi lại…",
        "en": "Connection lost, sending again…",
    },
    "venue.js.failed": {
        "vi": "Không gửi được. Hãy quét lại.",
        "en": "Could not send. Please scan again.",
    },
    "venue.js.not_a_pass": {
        "vi": "Không phải mã thông hành: bỏ qua.",
        "en": "Not a pass code: ignored.",
    },
    "venue.js.empty": {"vi": "Chưa nhập mã.", "en": "No code typed."},
    "venue.js.repeat": {
        "vi": "Mã này vừa quét lúc {time}: tính là một lượt.",
        "en": "This pass was scanned at {time}: counted once.",
    },
    "venue.js.duplicate": {"vi": "Đã ghi nhận trước đó.", "en": "Already recorded."},
    # --- verdicts at the door -----------------------------------------------------------
    "venue.verdict.green": {"vi": "Mời vào", "en": "Come in"},
    "venue.verdict.green.detail": {"vi": "Mã hợp lệ.", "en": "Valid pass."},
    "venue.verdict.yellow": {"vi": "Mời vào — lưu ý", "en": "Come in — take care"},
    "venue.verdict.yellow.detail": {
        "vi": "Mã hợp lệ. Đeo khẩu trang và giữ khoảng cách.",
        "en": "Valid pass. Wear a mask and keep your distance.",
    },
    "venue.verdict.red": {"vi": "Không được vào", "en": "Entry refused"},
    "venue.verdict.red.detail": {
        "vi": "Mời gặp cán bộ y tế. Cơ quan chức năng đã được thông báo.",
        "en": "Please see a health officer. The authorities have been told.",
    },
    "venue.verdict.invalid": {"vi": "Mã không hợp lệ", "en": "Code not accepted"},
    "venue.verdict.invalid.detail": {
        "vi": "Đề nghị khai báo y tế lại.",
        "en": "Please file a new health declaration.",
    },
    # --- the day's check-ins -----------------------------------------------------------------
    "venue.passages.title": {"vi": "Lượt vào", "en": "Check-ins"},
    "venue.passages.intro": {
        "vi": "Chỉ hiện chữ cái đầu họ tên khách. Mỗi lần xem được ghi vào nhật ký truy cập.",
        "en": "Visitors are shown by their initials only. Every view is recorded in the audit log.",
    },
    "venue.passages.day": {"vi": "Ngày", "en": "Day"},
    "venue.passages.show": {"vi": "Xem", "en": "Show"},
    "venue.passages.time": {"vi": "Giờ", "en": "Time"},
    "venue.passages.seq": {"vi": "Số thứ tự", "en": "No."},
    "venue.passages.verdict": {"vi": "Kết quả", "en": "Result"},
    "venue.passages.visitor": {"vi": "Khách (viết tắt)", "en": "Visitor (initials)"},
    "venue.passages.unknown": {"vi": "Không rõ", "en": "Unknown"},
    "venue.passages.total": {"vi": "Tổng: {n} lượt", "en": "Total: {n} check-ins"},
    "venue.passages.truncated": {
        "vi": "Chỉ hiện {n} lượt gần nhất.",
        "en": "Showing the latest {n} only.",
    },
    "venue.passages.empty": {"vi": "Không có lượt vào nào.", "en": "No check-in."},
    # --- public page (the poster's QR) --------------------------------------------------
    "venue.public.title": {"vi": "Điểm quét mã kiểm dịch", "en": "Check-in point"},
    "venue.public.intro": {
        "vi": "Để vào, hãy đưa mã thông hành cho nhân viên ở cửa quét.",
        "en": "To enter, show your pass to the staff at the door to scan.",
    },
    "venue.public.closed": {
        "vi": "Địa điểm này hiện không nhận quét mã.",
        "en": "This venue is not checking visitors in at the moment.",
    },
    "venue.public.declare": {"vi": "Khai báo y tế để nhận mã", "en": "Declare to get a pass"},
    "venue.public.staff": {
        "vi": "Nhân viên địa điểm: mở trang quét mã",
        "en": "Venue staff: open the scanner",
    },
    # --- errors -------------------------------------------------------------------------
    "venue.error.name": {
        "vi": "Tên địa điểm từ 2 đến 200 ký tự.",
        "en": "The venue's name: 2 to 200 characters.",
    },
    "venue.error.address": {
        "vi": "Địa chỉ từ 5 đến 300 ký tự.",
        "en": "The address: 5 to 300 characters.",
    },
    "venue.error.contact_name": {
        "vi": "Tên người phụ trách từ 2 đến 120 ký tự.",
        "en": "The contact's name: 2 to 120 characters.",
    },
    "venue.error.phone": {
        "vi": "Số điện thoại Việt Nam: 0 hoặc +84 rồi 9–10 chữ số.",
        "en": "A Vietnamese phone number: 0 or +84, then 9–10 digits.",
    },
    "venue.error.event_id": {
        "vi": "Mã sự kiện phải là UUID phiên bản 7.",
        "en": "The event id must be a version 7 UUID.",
    },
    "venue.error.forbidden": {
        "vi": "Không có địa điểm {id} trong phạm vi của bạn.",
        "en": "Venue {id} is not within your scope.",
    },
    "venue.error.forbidden_page": {
        "vi": "Địa điểm này không có hoặc không thuộc phạm vi của bạn.",
        "en": "This venue does not exist or is not within your scope.",
    },
    "venue.error.not_found": {"vi": "Không có địa điểm này.", "en": "There is no such venue."},
    "venue.error.not_a_venue": {
        "vi": "{id} không phải địa điểm bạn quản lý.",
        "en": "{id} is not a venue you manage.",
    },
    "venue.error.already_registered": {
        "vi": "Địa điểm {id} đã được đăng ký.",
        "en": "Venue {id} is registered already.",
    },
    "venue.error.manager": {
        "vi": "Không có tài khoản quản lý địa điểm «{username}» đang hoạt động.",
        "en": "There is no active venue manager account “{username}”.",
    },
    "venue.error.manager_admin_only": {
        "vi": "Chỉ quản trị viên được giao địa điểm cho tài khoản khác.",
        "en": "Only administrators may give a venue to another account.",
    },
    "venue.error.keyring": {
        "vi": "Máy chủ chưa có khoá kiểm tra mã; báo quản trị viên.",
        "en": "The server holds no pass verification key; tell an administrator.",
    },
    "venue.error.venue_inactive": {
        "vi": "Địa điểm đang đóng: không nhận quét mã.",
        "en": "The venue is closed: no check-in.",
    },
    "venue.error.not_a_pass": {
        "vi": "Không phải mã thông hành kiểm dịch (mã bắt đầu bằng KD1:).",
        "en": "Not a checkpoint pass (the code starts with KD1:).",
    },
    "venue.error.event_id_taken": {
        "vi": "Mã sự kiện này đã dùng ở nơi khác.",
        "en": "This event id was used elsewhere.",
    },
    "venue.error.day": {
        "vi": "Ngày phải trong khoảng {first} đến {last}.",
        "en": "The day must be between {first} and {last}.",
    },
    "venue.error.day_page": {
        "vi": "Ngày không hợp lệ: hãy chọn một ngày từ 2020 trở đi.",
        "en": "Invalid day: pick a day from 2020 on.",
    },
    "venue.error.refused": {
        "vi": "Lượt quét bị từ chối và đã được lưu để kiểm tra.",
        "en": "The scan was refused and kept for review.",
    },
}

_JS_PREFIXES = ("venue.js.", "venue.checkin.", "venue.verdict.")


def js_strings(lang: str) -> dict[str, str]:
    """The texts ``static/venues.js`` shows, in ``lang`` (keyed by their full key)."""
    return {key: texts[lang] for key, texts in STRINGS.items() if key.startswith(_JS_PREFIXES)}
