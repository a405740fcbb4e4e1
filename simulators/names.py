"""Pools of Vietnamese personal data for the population simulator, with their weights.

Name lists come from Faker's ``vi_VN`` providers (read once, then sampled by
index with numpy: calling Faker per person is far too slow for a million
people). Weights are rough public figures, enough to make the registry look
like a real one: Nguyễn carries about four in ten people, "Thị" is the usual
women's middle name, mobile numbers use the carriers' real prefixes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from faker.providers.address.vi_VN import Provider as AddressProvider
from faker.providers.person.vi_VN import Provider as PersonProvider


def _unique(items: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    # Faker's tuples repeat a few names ("Đức", "Quang"): keep the first of each.
    return tuple(dict.fromkeys(items))


# Share of the population per family name (percent; Nguyễn ~38%, Trần ~12%, ...).
_SURNAME_SHARE = {
    "Nguyễn": 38.4,
    "Trần": 12.1,
    "Lê": 9.5,
    "Phạm": 7.0,
    "Hoàng": 5.1,
    "Vũ": 3.9,
    "Đặng": 2.1,
    "Bùi": 2.0,
    "Dương": 1.0,
    "Mai": 0.5,
}
_DEFAULT_SURNAME_SHARE = 0.5

LAST_NAMES = _unique(PersonProvider.last_names)
MIDDLE_NAMES = _unique(PersonProvider.middle_names)
FIRST_NAMES_MALE = _unique(PersonProvider.first_names_male + PersonProvider.first_names_unisex)
FIRST_NAMES_FEMALE = _unique(PersonProvider.first_names_female + PersonProvider.first_names_unisex)
STREETS = _unique(AddressProvider.streets)

# Mobile prefixes (10-digit numbers) by carrier, and the carriers' market shares.
_CARRIER_PREFIXES: dict[str, tuple[float, tuple[str, ...]]] = {
    "viettel": (
        0.54,
        ("086", "096", "097", "098", "032", "033", "034", "035", "036", "037", "038", "039"),
    ),
    "vinaphone": (0.22, ("088", "091", "094", "081", "082", "083", "084", "085")),
    "mobifone": (0.20, ("089", "090", "093", "070", "076", "077", "078", "079")),
    "vietnamobile": (0.03, ("092", "056", "058")),
    "gmobile": (0.01, ("099", "059")),
}

# Age pyramid (Vietnam, early 2020s): share of people per 5-year band, 0-4 ... 90-99.
AGE_BANDS: tuple[tuple[int, int, float], ...] = (
    (0, 5, 7.6),
    (5, 10, 8.3),
    (10, 15, 7.7),
    (15, 20, 6.9),
    (20, 25, 6.9),
    (25, 30, 7.6),
    (30, 35, 8.1),
    (35, 40, 7.9),
    (40, 45, 7.5),
    (45, 50, 6.8),
    (50, 55, 6.1),
    (55, 60, 5.4),
    (60, 65, 4.5),
    (65, 70, 3.4),
    (70, 75, 2.1),
    (75, 80, 1.3),
    (80, 85, 0.9),
    (85, 90, 0.6),
    (90, 100, 0.4),
)

# Approximate population (millions) of the 34 provinces after the 2025 merger.
PROVINCE_POPULATION_M: dict[int, float] = {
    1: 8.7,  # Hà Nội
    4: 0.57,
    8: 1.87,
    11: 0.65,
    12: 0.48,
    14: 1.3,
    15: 1.78,
    19: 1.8,
    20: 0.8,
    22: 1.4,
    24: 3.6,
    25: 4.0,
    31: 4.7,
    33: 3.6,
    37: 4.4,
    38: 4.3,
    40: 3.8,
    42: 1.6,
    44: 1.9,
    46: 1.4,
    48: 3.1,
    51: 2.2,
    52: 3.6,
    56: 2.2,
    66: 3.3,
    68: 3.9,
    75: 4.5,
    79: 14.0,  # TP Hồ Chí Minh
    80: 3.3,
    82: 4.4,
    86: 4.3,
    91: 4.9,
    92: 4.2,
    96: 2.6,
}
HANOI = 1
HO_CHI_MINH_CITY = 79

SYMPTOMS = (
    "sốt",
    "ho",
    "khó thở",
    "đau họng",
    "mất vị giác",
    "mất khứu giác",
    "mệt mỏi",
    "đau mỏi người",
)


def _normalised(weights: list[float]) -> np.ndarray:
    array = np.asarray(weights, dtype=float)
    return array / array.sum()


@dataclass(frozen=True)
class NamePools:
    """Index-sampleable name lists with their probabilities."""

    last: tuple[str, ...]
    last_p: np.ndarray
    middle_male: tuple[str, ...]
    middle_male_p: np.ndarray
    middle_female: tuple[str, ...]
    middle_female_p: np.ndarray
    first_male: tuple[str, ...]
    first_female: tuple[str, ...]


def name_pools() -> NamePools:
    """Build the pools: "Văn" is half of men's middle names, "Thị" half of women's."""
    last_p = _normalised([_SURNAME_SHARE.get(n, _DEFAULT_SURNAME_SHARE) for n in LAST_NAMES])
    middle_male = tuple(n for n in MIDDLE_NAMES if n != "Thị")
    middle_female = tuple(n for n in MIDDLE_NAMES if n != "Văn")

    def middle_weights(names: tuple[str, ...], usual: str) -> np.ndarray:
        others = (len(names) - 1) or 1
        return _normalised([0.5 if n == usual else 0.5 / others for n in names])

    return NamePools(
        last=LAST_NAMES,
        last_p=last_p,
        middle_male=middle_male,
        middle_male_p=middle_weights(middle_male, "Văn"),
        middle_female=middle_female,
        middle_female_p=middle_weights(middle_female, "Thị"),
        first_male=FIRST_NAMES_MALE,
        first_female=FIRST_NAMES_FEMALE,
    )


def phone_prefixes() -> tuple[tuple[str, ...], np.ndarray]:
    """All mobile prefixes and the probability of each (carrier share spread evenly)."""
    prefixes: list[str] = []
    weights: list[float] = []
    for share, carrier_prefixes in _CARRIER_PREFIXES.values():
        prefixes.extend(carrier_prefixes)
        weights.extend([share / len(carrier_prefixes)] * len(carrier_prefixes))
    return tuple(prefixes), _normalised(weights)


def age_band_probabilities() -> np.ndarray:
    """Probability of each band in :data:`AGE_BANDS`."""
    return _normalised([share for _, _, share in AGE_BANDS])
