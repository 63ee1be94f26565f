"""Systemic oestrogen products: what each one is (route, form) and how strong one unit is.

The BMS 2024 progestogen table [S34] is keyed on the oestrogen *dose band*, and the band depends
on the product family: pumps of Oestrogel, mg of Sandrena, sprays of Lenzetto, micrograms per 24
hours of a patch, mg of oral estradiol (clinical.md section 4.3). This module says, for a product,
which family it belongs to and the strength of one unit (a tablet, a patch, a pump...). The rule
(``fhir_safety.rules.hrt``) multiplies by the dose in the order and reads the band.

Two ways in, in this order:

1. **By code**: ``terminology/dose-tables/hrt-oestrogen-doses.json``, one row per code of the
   ``hrt-oestrogen-systemic`` ValueSet (display, family, strength), curated from the dm+d
   displays of the gm-sde lists [S32]; a unit test keeps it complete and consistent.
2. **By name**, for a medicine recorded only as text (or a code missing from the table):
   ``parse_oestrogen_name`` reads the family and strength from the words, carefully (a strength
   that cannot be read is left unknown, never guessed).

Loading reads one file once per process (``load_hrt_dose_table``); lookups are pure.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal

from fhir_safety.errors import TerminologyError
from fhir_safety.terminology import canonical_system, normalise_text

__all__ = [
    "BANDED_FAMILIES",
    "DOSE_TABLE_FILE",
    "FAMILIES",
    "Family",
    "HrtDoseTable",
    "OestrogenProduct",
    "load_hrt_dose_table",
    "parse_oestrogen_name",
]

DOSE_TABLE_FILE = Path("dose-tables") / "hrt-oestrogen-doses.json"

Family = Literal[
    "oral-estradiol",
    "patch",
    "gel-pump",
    "gel-sachet",
    "spray",
    "oral-estradiol-valerate",
    "oral-conjugated-oestrogens",
    "oral-estriol",
    "oral-estropipate",
    "oral-ethinylestradiol",
    "oral-other",
    "implant",
    "vaginal-ring-systemic",
    "nasal-spray",
    "injection",
    "unknown",
]

# Family -> (unit of the strength of one unit, the unit counted in a dose, a plain name).
FAMILIES: Mapping[str, tuple[str, str, str]] = {
    "oral-estradiol": ("mg", "tablet", "oral estradiol"),
    "patch": ("microgram/24h", "patch", "estradiol patch"),
    "gel-pump": ("mg", "pump", "estradiol gel (Oestrogel)"),
    "gel-sachet": ("mg", "sachet", "estradiol gel sachet (Sandrena)"),
    "spray": ("mg", "spray", "estradiol transdermal spray (Lenzetto)"),
    "oral-estradiol-valerate": ("mg", "tablet", "oral estradiol valerate"),
    "oral-conjugated-oestrogens": ("mg", "tablet", "oral conjugated oestrogens"),
    "oral-estriol": ("mg", "tablet", "oral estriol"),
    "oral-estropipate": ("mg", "tablet", "oral estropipate"),
    "oral-ethinylestradiol": ("microgram", "tablet", "oral ethinylestradiol"),
    "oral-other": ("mg", "tablet", "oral oestrogen"),
    "implant": ("mg", "implant", "estradiol implant"),
    "vaginal-ring-systemic": ("microgram/24h", "ring", "systemic estradiol vaginal ring"),
    "nasal-spray": ("microgram", "spray", "estradiol nasal spray"),
    "injection": ("mg", "vial", "oestrogen injection"),
    "unknown": ("mg", "unit", "oestrogen"),
}
# Families the BMS 2024 table bands (clinical.md section 4.3 [S34]); the others need checking.
BANDED_FAMILIES = frozenset({"oral-estradiol", "patch", "gel-pump", "gel-sachet", "spray"})

# Strength of one unit when the name gives none: Oestrogel 0.06% gel = 750 micrograms per
# actuation; Lenzetto = 1.53 mg per spray (dm+d displays, gm-sde lists [S32]).
_DEFAULT_STRENGTH = {"gel-pump": Decimal("0.75"), "spray": Decimal("1.53")}


@dataclass(frozen=True, slots=True)
class OestrogenProduct:
    """One systemic oestrogen product: its BMS family and the strength of one unit."""

    family: str  # a key of FAMILIES
    strength: Decimal | None  # per unit, in FAMILIES[family][0]; None when not known
    display: str
    by: Literal["table", "name"]

    @property
    def unit(self) -> str:
        return FAMILIES[self.family][0]

    @property
    def counted(self) -> str:
        return FAMILIES[self.family][1]

    @property
    def banded(self) -> bool:
        return self.family in BANDED_FAMILIES


class HrtDoseTable:
    """The curated product table, by (system, code). Immutable after construction."""

    def __init__(self, products: Mapping[tuple[str, str], OestrogenProduct]) -> None:
        self._products = dict(products)

    def lookup(self, system: str | None, code: str | None) -> OestrogenProduct | None:
        system = canonical_system(system)
        if system is None or code is None:
            return None
        return self._products.get((system, code))

    def codes(self) -> frozenset[tuple[str, str]]:
        return frozenset(self._products)

    @classmethod
    def from_json(cls, data: Any, *, name: str = DOSE_TABLE_FILE.name) -> HrtDoseTable:
        """Build the table from the file's JSON; inconsistent rows raise TerminologyError."""
        rows = data.get("products") if isinstance(data, dict) else None
        if not isinstance(rows, list) or not rows:
            raise TerminologyError(f"{name}: no 'products' rows")
        products: dict[tuple[str, str], OestrogenProduct] = {}
        for index, row in enumerate(rows):
            key, product = _row(row, f"{name}: products[{index}]")
            if key in products:
                raise TerminologyError(f"{name}: {key[1]} is listed twice")
            products[key] = product
        return cls(products)


def _row(row: Any, where: str) -> tuple[tuple[str, str], OestrogenProduct]:
    if not isinstance(row, dict):
        raise TerminologyError(f"{where}: not an object")
    system, code, display, family = (row.get(k) for k in ("system", "code", "display", "family"))
    if not (isinstance(system, str) and isinstance(code, str) and isinstance(display, str)):
        raise TerminologyError(f"{where}: needs system, code and display strings")
    if not isinstance(family, str) or family not in FAMILIES:
        raise TerminologyError(f"{where}: unknown family {family!r}")
    raw_strength = row.get("strength")
    strength: Decimal | None = None
    if raw_strength is not None:
        try:
            strength = Decimal(str(raw_strength))
        except InvalidOperation:
            raise TerminologyError(f"{where}: strength {raw_strength!r} is not a number") from None
        if strength <= 0:
            raise TerminologyError(f"{where}: strength must be positive")
    if family in BANDED_FAMILIES and strength is None:
        raise TerminologyError(f"{where}: a {family} product needs its strength")
    key = (canonical_system(system) or system, code)
    return key, OestrogenProduct(family, strength, display, "table")


@functools.lru_cache(maxsize=4)
def load_hrt_dose_table(terminology_dir: Path) -> HrtDoseTable:
    """``<terminology_dir>/dose-tables/hrt-oestrogen-doses.json``, read once per process."""
    path = terminology_dir / DOSE_TABLE_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TerminologyError(f"cannot read {path}: {exc}") from exc
    return HrtDoseTable.from_json(data)


# -- names ------------------------------------------------------------------------------------

_NUMBER = r"(\d+(?:\.\d+)?)"
_MICRO = r"(?:micrograms?|microg|mcg|µg|ug)"
_PER_DAY = r"(?:/24hours?|/24hrs?|/24h|/day| per 24 hours| a day| daily)"
_PATCH_PER_DAY_RE = re.compile(rf"(?<![\d.]){_NUMBER}{_MICRO}{_PER_DAY}")
# RxNorm writes a patch's or ring's release as mg per hour or per day ("168 HR estradiol
# 0.00208 MG/HR Transdermal System" = 50 micrograms/24 h).
_MG_PER_HOUR_RE = re.compile(rf"(?<![\d.]){_NUMBER}mg/hr?(?![a-z])")
_MG_PER_DAY_RE = re.compile(rf"(?<![\d.]){_NUMBER}mg(?:/day|/24h(?:ours?|rs?)?)(?![a-z])")
_PATCH_BRANDS = (
    "evorel",
    "estraderm tts",
    "estraderm mx",
    "estraderm",
    "estradot",
    "dermestril - septem",
    "dermestril-septem",
    "dermestril septem",
    "dermestril",
    "femseven",
    "fematrix",
    "menorest",
    "elleste solo mx",
    "progynova ts",
)
_PATCH_BRAND_RE = re.compile(
    r"(?<![a-z0-9])(?:"
    + "|".join(re.escape(b) for b in sorted(_PATCH_BRANDS, key=len, reverse=True))
    + rf")(?![a-z0-9])\s*{_NUMBER}(?![\d.])"
)
_PATCH_WORD_RE = re.compile(
    r"(?<![a-z0-9])(?:patch|patches|transdermal patch|transdermal patches|transdermal system|"
    + "|".join(re.escape(b) for b in _PATCH_BRANDS)
    + r")(?![a-z0-9])"
)
_MASS_RE = re.compile(rf"(?<![\d.]){_NUMBER}(mg|milligrams?|{_MICRO})(?![a-z0-9])")


def _words(text: str, *words: str) -> bool:
    return any(re.search(rf"(?<![a-z0-9]){re.escape(w)}(?![a-z0-9])", text) for w in words)


def _first_mass_mg(text: str) -> Decimal | None:
    """The first "<number><mass unit>" in the text, in mg (micrograms converted)."""
    found = _MASS_RE.search(text)
    if found is None:
        return None
    value = Decimal(found.group(1))
    return value if found.group(2).startswith(("mg", "milligram")) else value / 1000


def _release_microgram_per_day(text: str) -> Decimal | None:
    """An RxNorm-style release rate in micrograms/24 h, to the nearest 0.5 microgram.

    RxNorm rounds the hourly rate (0.00208 mg/h x 24 = 49.92), so the product's labelled
    daily dose (50) is the nearest half microgram.
    """
    if found := _MG_PER_HOUR_RE.search(text):
        per_day = Decimal(found.group(1)) * 24 * 1000
    elif found := _MG_PER_DAY_RE.search(text):
        per_day = Decimal(found.group(1)) * 1000
    else:
        return None
    return (per_day * 2).quantize(Decimal(1)) / 2


def _first_mass_microgram(text: str) -> Decimal | None:
    mg = _first_mass_mg(text)
    return None if mg is None else mg * 1000


def parse_oestrogen_name(text: str) -> OestrogenProduct:
    """The family and unit strength of a systemic oestrogen named in free text.

    Precedence follows the dm+d naming: a route/form word first (injection, nasal spray,
    implant, ring, transdermal spray, sachet, gel, patch), then the molecule for tablets. The
    strength is read only from a number with its unit (or a patch brand's number, e.g.
    "Evorel 50"); otherwise it is left unknown (``strength=None``).
    """
    t = normalise_text(text)
    family: str
    strength: Decimal | None
    if _words(t, "injection", "vial", "vials"):
        family, strength = "injection", _first_mass_mg(t)
    elif _words(t, "nasal spray", "aerodiol", "nasal"):
        family, strength = "nasal-spray", _first_mass_microgram(t)
    elif _words(t, "implant", "implants"):
        family, strength = "implant", _first_mass_mg(t)
    elif _words(t, "ring", "menoring"):
        per_day = _PATCH_PER_DAY_RE.search(t)
        menoring = re.search(r"menoring\s*(\d+(?:\.\d+)?)(?![\d.])", t)
        strength = Decimal(per_day.group(1)) if per_day else _release_microgram_per_day(t)
        if strength is None and menoring:
            strength = Decimal(menoring.group(1))
        family = "vaginal-ring-systemic"
    elif _words(t, "lenzetto", "transdermal spray", "spray"):
        family = "spray"
        dose = re.search(rf"(?<![\d.]){_NUMBER}mg(?:/dose|/spray| per spray| per dose)", t)
        strength = Decimal(dose.group(1)) if dose else _DEFAULT_STRENGTH["spray"]
    elif _words(t, "sandrena", "sachet", "sachets"):
        family, strength = "gel-sachet", _first_mass_mg(t)
    elif _words(t, "oestrogel", "estrogel", "gel", "pump-pack", "pump pack", "metered dose pump"):
        family = "gel-pump"
        per_actuation = re.search(
            rf"(?<![\d.]){_NUMBER}(mg|{_MICRO}) ?(?:per|/) ?(?:actuation|actuat|pump|dose)(?![a-z])",
            t,
        )
        if per_actuation:
            value = Decimal(per_actuation.group(1))
            strength = value if per_actuation.group(2) == "mg" else value / 1000
        elif _words(t, "oestrogel", "estrogel", "0.06%"):
            strength = _DEFAULT_STRENGTH["gel-pump"]
        else:
            strength = None  # an estradiol gel of unknown concentration
    elif _PATCH_WORD_RE.search(t):
        family = "patch"
        per_day = _PATCH_PER_DAY_RE.search(t)
        brand = _PATCH_BRAND_RE.search(t)
        plain = re.search(rf"(?<![\d.]){_NUMBER}{_MICRO}(?![a-z0-9])", t)
        found = per_day or brand or plain
        strength = Decimal(found.group(1)) if found else _release_microgram_per_day(t)
    elif _words(t, "valerate", "progynova", "climaval", "femtab"):
        family, strength = "oral-estradiol-valerate", _first_mass_mg(t)
    elif _words(t, "conjugated", "premarin"):
        family, strength = "oral-conjugated-oestrogens", _first_mass_mg(t)
    elif _words(t, "estriol", "oestriol", "ovestin"):
        family, strength = "oral-estriol", _first_mass_mg(t)
    elif _words(t, "estropipate", "harmogen"):
        family, strength = "oral-estropipate", _first_mass_mg(t)
    elif _words(t, "esterified"):
        family, strength = "oral-other", _first_mass_mg(t)  # esterified estrogens (Menest)
    elif _words(t, "ethinylestradiol", "ethinyloestradiol"):
        family, strength = "oral-ethinylestradiol", _first_mass_microgram(t)
    elif _words(t, "hormonin"):
        family, strength = "oral-other", None  # estradiol + estriol + estrone
    elif _words(
        t, "estradiol", "oestradiol", "zumenon", "elleste solo", "bedol", "adgyn estro"
    ) and not _words(t, "cream", "pessary", "pessaries", "vaginal"):
        family, strength = "oral-estradiol", _first_mass_mg(t)
    else:
        family, strength = "unknown", None
    if strength is not None and strength <= 0:
        strength = None
    return OestrogenProduct(family, strength, text, "name")
