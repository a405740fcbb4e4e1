"""Hà Nội's camera checkpoints on the roads into the city (the 2021 city-gate ring).

In 2021 Hà Nội ran 55 city-gate checkpoints, 45 of them with cameras reading
QR codes. This catalogue names 45 such sites along the real national highways
(QL), expressways (cao tốc) and Red River bridges. It is APPROXIMATE: the
sites, coordinates (±1 km) and lane counts are plausible, not surveyed, and
each site's ward is the post-2025 ward (``wards`` table, province code 1) the
place lies in, as best known. ``tests/test_city.py`` checks every ward code
exists in the migrated ``wards`` table under Hà Nội with the name given here.

``weight`` is relative traffic (an expressway or a main bridge carries several
times a provincial road); lanes are camera lanes per direction, one device each.
"""

from __future__ import annotations

from dataclasses import dataclass

from aggregator.db.schema import CheckpointKind

HANOI_PROVINCE_CODE = 1
ID_PREFIX = "hn"


@dataclass(frozen=True, slots=True)
class GateSite:
    """One checkpoint site: where, on which road, how many camera lanes."""

    slug: str
    name: str
    road: str
    kind: CheckpointKind
    ward_code: int
    ward_name: str
    lat: float
    lon: float
    lanes_in: int = 1
    lanes_out: int = 1
    weight: float = 1.0

    @property
    def checkpoint_id(self) -> str:
        """``hn-<slug>``, e.g. ``hn-ql1a-phapvan``."""
        return f"{ID_PREFIX}-{self.slug}"


_HW = CheckpointKind.HIGHWAY
_GATE = CheckpointKind.CITY_GATE

# fmt: off
HANOI_GATES: tuple[GateSite, ...] = (
    # South: QL1A, the Pháp Vân – Cầu Giẽ expressway, QL21B (towards Hà Nam, Ninh Bình)
    GateSite("ql1a-phapvan", "Chốt QL1A – Pháp Vân",
             "QL1A", _HW, 337, "Phường Hoàng Liệt", 20.9517, 105.8436, 2, 2, 3.0),
    GateSite("ql1a-vandien", "Chốt QL1A – Văn Điển",
             "QL1A", _HW, 640, "Xã Thanh Trì", 20.9455, 105.8448, 1, 1, 2.0),
    GateSite("ql1a-ngochoi", "Chốt QL1A – Ngọc Hồi",
             "QL1A", _HW, 679, "Xã Ngọc Hồi", 20.9155, 105.8466, 2, 2, 2.5),
    GateSite("ql1a-thuongtin", "Chốt QL1A – Thường Tín",
             "QL1A", _HW, 10183, "Xã Thường Tín", 20.8700, 105.8600, 1, 1, 1.5),
    GateSite("ql1a-phuxuyen", "Chốt QL1A – Phú Xuyên (giáp Hà Nam)",
             "QL1A", _HW, 10273, "Xã Phú Xuyên", 20.7370, 105.9080, 1, 1, 1.5),
    GateSite("ct-phapvan-caugie-phapvan", "Chốt cao tốc Pháp Vân – Cầu Giẽ, trạm Pháp Vân",
             "CT Pháp Vân – Cầu Giẽ", _HW, 331, "Phường Yên Sở", 20.9350, 105.8570, 2, 2, 4.0),
    GateSite("ct-phapvan-caugie-caugie", "Chốt cao tốc Pháp Vân – Cầu Giẽ, nút Cầu Giẽ",
             "CT Pháp Vân – Cầu Giẽ", _HW, 10333, "Xã Đại Xuyên", 20.6860, 105.9290, 2, 2, 3.0),
    GateSite("ql21b-thanhoai", "Chốt QL21B – Thanh Oai (Kim Bài)",
             "QL21B", _HW, 10114, "Xã Thanh Oai", 20.8530, 105.7700, 1, 1, 1.2),
    GateSite("ql21b-vandinh", "Chốt QL21B – Vân Đình (Ứng Hòa)",
             "QL21B", _HW, 10354, "Xã Vân Đình", 20.7290, 105.7720, 1, 1, 1.0),
    # West: QL6, Đại lộ Thăng Long, the Hòa Lạc – Hòa Bình expressway, Hồ Chí Minh road, QL21
    GateSite("ql6-bala", "Chốt QL6 – Ba La (Hà Đông)",
             "QL6", _HW, 9562, "Phường Yên Nghĩa", 20.9520, 105.7480, 2, 2, 3.0),
    GateSite("ql6-chuongmy", "Chốt QL6 – Chúc Sơn (Chương Mỹ)",
             "QL6", _HW, 10015, "Phường Chương Mỹ", 20.9200, 105.7050, 1, 1, 1.5),
    GateSite("ql6-xuanmai", "Chốt QL6 – Xuân Mai (giáp Hòa Bình)",
             "QL6", _HW, 10018, "Xã Xuân Mai", 20.8990, 105.5780, 1, 1, 1.5),
    GateSite("hcm-myduc", "Chốt đường Hồ Chí Minh – Mỹ Đức",
             "Đường Hồ Chí Minh", _HW, 10465, "Xã Hồng Sơn", 20.6460, 105.6640, 1, 1, 0.8),
    GateSite("dlthanglong-ankhanh", "Chốt Đại lộ Thăng Long – An Khánh",
             "Đại lộ Thăng Long", _HW, 9877, "Xã An Khánh", 21.0030, 105.7250, 2, 2, 4.0),
    GateSite("dlthanglong-phucat", "Chốt Đại lộ Thăng Long – Phú Cát (Quốc Oai)",
             "Đại lộ Thăng Long", _HW, 9922, "Xã Phú Cát", 20.9960, 105.5900, 2, 2, 2.5),
    GateSite("dlthanglong-hoalac", "Chốt Đại lộ Thăng Long – Hòa Lạc",
             "Đại lộ Thăng Long", _HW, 9988, "Xã Hòa Lạc", 21.0110, 105.5280, 2, 2, 2.0),
    GateSite("ct-hoalac-hoabinh", "Chốt cao tốc Hòa Lạc – Hòa Bình (Tiến Xuân)",
             "CT Hòa Lạc – Hòa Bình", _HW, 4936, "Xã Yên Xuân", 20.9500, 105.4900, 1, 1, 1.0),
    GateSite("ql21-thachthat", "Chốt QL21 – Thạch Thất",
             "QL21", _HW, 9955, "Xã Thạch Thất", 21.0550, 105.5470, 1, 1, 1.0),
    GateSite("ql21-sontay", "Chốt QL21 – Xuân Khanh (Sơn Tây)",
             "QL21", _HW, 9604, "Phường Tùng Thiện", 21.1080, 105.4950, 1, 1, 1.0),
    # North-west: QL32 (towards Phú Thọ) and the Red River crossing at Sơn Tây
    GateSite("ql32-nhon", "Chốt QL32 – Nhổn",
             "QL32", _HW, 613, "Phường Tây Tựu", 21.0500, 105.7380, 2, 2, 3.0),
    GateSite("ql32-cauphung", "Chốt QL32 – cầu Phùng (Đan Phượng)",
             "QL32", _HW, 9784, "Xã Đan Phượng", 21.0870, 105.6690, 1, 1, 1.5),
    GateSite("ql32-phuctho", "Chốt QL32 – Phúc Thọ",
             "QL32", _HW, 9715, "Xã Phúc Thọ", 21.1050, 105.5610, 1, 1, 1.0),
    GateSite("ql32-taydang", "Chốt QL32 – Tây Đằng (Ba Vì)",
             "QL32", _HW, 9619, "Xã Quảng Oai", 21.2000, 105.4200, 1, 1, 1.0),
    GateSite("ql32-trungha", "Chốt QL32 – cầu Trung Hà (giáp Phú Thọ)",
             "QL32", _HW, 9676, "Xã Bất Bạt", 21.2300, 105.3500, 1, 1, 0.8),
    GateSite("cau-vinhthinh", "Chốt cầu Vĩnh Thịnh (QL2C, giáp Vĩnh Phúc)",
             "QL2C", _GATE, 9574, "Phường Sơn Tây", 21.1640, 105.5160, 1, 1, 1.2),
    # North: QL2, QL23, QL3, QL18, the Nội Bài – Lào Cai and Hà Nội – Thái Nguyên expressways
    GateSite("ql2-noibai", "Chốt QL2 – Nội Bài (Phủ Lỗ)",
             "QL2", _HW, 433, "Xã Nội Bài", 21.2200, 105.8100, 2, 2, 2.5),
    GateSite("ql2-quangminh", "Chốt QL2 – Quang Minh (Mê Linh)",
             "QL2", _HW, 8974, "Xã Quang Minh", 21.1900, 105.7700, 1, 1, 1.5),
    GateSite("ql23-melinh", "Chốt QL23 – Tiền Phong (Mê Linh)",
             "QL23", _HW, 9022, "Xã Mê Linh", 21.1700, 105.7150, 1, 1, 1.0),
    GateSite("ct-noibai-laocai", "Chốt cao tốc Nội Bài – Lào Cai (nút Km 6)",
             "CT Nội Bài – Lào Cai", _HW, 8980, "Xã Yên Lãng", 21.2250, 105.7400, 2, 2, 2.5),
    GateSite("ql3-donganh", "Chốt QL3 – Đông Anh",
             "QL3", _HW, 454, "Xã Đông Anh", 21.1380, 105.8490, 1, 1, 2.0),
    GateSite("ql3-phulo", "Chốt QL3 – Phù Lỗ (Sóc Sơn)",
             "QL3", _HW, 382, "Xã Kim Anh", 21.2000, 105.8500, 1, 1, 1.5),
    GateSite("ql3-trunggia", "Chốt QL3 – Trung Giã (giáp Thái Nguyên)",
             "QL3", _HW, 385, "Xã Trung Giã", 21.3180, 105.8700, 1, 1, 1.2),
    GateSite("ct-hanoi-thainguyen", "Chốt cao tốc Hà Nội – Thái Nguyên (Sóc Sơn)",
             "CT Hà Nội – Thái Nguyên", _HW, 424, "Xã Đa Phúc", 21.2950, 105.8950, 2, 2, 2.5),
    GateSite("ql18-socson", "Chốt QL18 – Phù Linh (Sóc Sơn)",
             "QL18", _HW, 376, "Xã Sóc Sơn", 21.2550, 105.8750, 1, 1, 1.2),
    GateSite("vonguyengiap", "Chốt đường Võ Nguyên Giáp (Nhật Tân – Nội Bài)",
             "Võ Nguyên Giáp", _HW, 508, "Xã Vĩnh Thanh", 21.1400, 105.8000, 2, 2, 3.0),
    # East: QL1A (towards Bắc Ninh, Lạng Sơn), QL5 and the Hà Nội – Hải Phòng expressway
    GateSite("ql1a-phudong", "Chốt QL1A – cầu Phù Đổng (Gia Lâm)",
             "QL1A", _HW, 541, "Xã Phù Đổng", 21.0610, 105.9550, 2, 2, 3.0),
    GateSite("ql5-trauquy", "Chốt QL5 – Trâu Quỳ (Gia Lâm)",
             "QL5", _HW, 565, "Xã Gia Lâm", 21.0150, 105.9350, 2, 2, 3.0),
    GateSite("ct-hanoi-haiphong", "Chốt cao tốc Hà Nội – Hải Phòng (trạm Km 6)",
             "CT Hà Nội – Hải Phòng", _HW, 583, "Xã Bát Tràng", 20.9980, 105.9480, 2, 2, 3.0),
    # The Red River bridges into the centre
    GateSite("cau-longbien", "Chốt cầu Long Biên",
             "Cầu Long Biên", _GATE, 130, "Phường Bồ Đề", 21.0440, 105.8680, 1, 1, 1.0),
    GateSite("cau-thanhtri", "Chốt cầu Thanh Trì",
             "Vành đai 3", _GATE, 328, "Phường Lĩnh Nam", 20.9850, 105.8880, 2, 2, 4.0),
    GateSite("cau-vinhtuy", "Chốt cầu Vĩnh Tuy",
             "Vành đai 2", _GATE, 283, "Phường Vĩnh Tuy", 21.0050, 105.8800, 2, 2, 3.0),
    GateSite("cau-chuongduong", "Chốt cầu Chương Dương",
             "Cầu Chương Dương", _GATE, 70, "Phường Hoàn Kiếm", 21.0330, 105.8610, 1, 1, 2.0),
    GateSite("cau-nhattan", "Chốt cầu Nhật Tân",
             "Võ Nguyên Giáp", _GATE, 91, "Phường Phú Thượng", 21.0890, 105.8200, 2, 2, 3.5),
    GateSite("cau-thanglong", "Chốt cầu Thăng Long",
             "Vành đai 3", _GATE, 602, "Phường Đông Ngạc", 21.1000, 105.7900, 2, 2, 3.0),
    GateSite("cau-dongtru", "Chốt cầu Đông Trù",
             "Trường Sa", _GATE, 466, "Xã Phúc Thịnh", 21.0650, 105.8850, 1, 1, 1.5),
)
# fmt: on
