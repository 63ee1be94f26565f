"""NEWS2 (National Early Warning Score 2, Royal College of Physicians 2017).

Parameter scores (RCP Chart 1), the aggregate, its band (Chart 3/4) and the
clinical response the band calls for (Chart 4). The module is pure: time
arrives as ``now``, readings arrive already parsed, nothing here does I/O.

Source tags are those of ``/work/shared/reference/clinical.md`` §1 and
``docs/news2.md``:

* [S7] RCP NEWS2 Chart 1, the scoring system; Thorax Table 1 (Scale 1 vs Scale 2).
* [S8] RCP NEWS2 Chart 4, clinical response to the trigger thresholds.
* [S9] RCP NEWS2 observation chart (Scale 2 note) and the RCP 2017 report.

Three decisions are ours, not the RCP's, and are documented in docs/news2.md:

* Values between two charted bands (20.5 breaths/min, 35.05 °C) score in the
  *more abnormal* band. The chart is written for whole numbers (one decimal
  for temperature); a safety tool must never under-score a device reading
  that falls in a gap, so no rounding can move a value towards normal.
* An incomplete set (a parameter absent, stale, invalid or undeterminable)
  has no total and no band. ``partial_total`` and ``minimum_band`` say what
  the available readings already guarantee; ``minimum_band`` is never LOW, so
  an incomplete set can never be read as low risk.
* Values that cannot be a measurement (negative rates, SpO2 over 100%, a
  temperature outside 10-50 °C, which is usually °F) and readings dated in the
  future beyond ``FUTURE_TOLERANCE`` are not used and are listed as invalid.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from enum import IntEnum, StrEnum
from typing import Generic, Literal, TypeVar

__all__ = [
    "FUTURE_TOLERANCE",
    "RULE_ID",
    "Band",
    "ClinicalResponse",
    "Consciousness",
    "News2Result",
    "Number",
    "Parameter",
    "Reading",
    "SpO2Scale",
    "Status",
    "VitalSigns",
    "assess",
    "band_for",
    "clinical_response",
    "score_air_or_oxygen",
    "score_consciousness",
    "score_pulse",
    "score_respiration_rate",
    "score_spo2",
    "score_systolic_bp",
    "score_temperature",
]

RULE_ID = "news2"

# Device and server clocks drift; a reading a few minutes "ahead" is normal. One further
# ahead is a data error (wrong zone or date) and cannot be trusted as the current state.
FUTURE_TOLERANCE = timedelta(minutes=5)

# NEWS2 is an adult score. RCP 2017 report: not validated for under-16s or in pregnancy
# [S9]. The exact RCP wording is UNVERIFIED in clinical.md §1.1 and must be checked
# against the report before release (NICE MIB205 says the same in secondary form).
ADULT_AGE_YEARS = 16

# Plausibility guard, not RCP: body temperature in °C. A value outside this range is
# almost always a unit error (98.6 °F would otherwise score 2) and must not be scored.
_TEMPERATURE_RANGE_CELSIUS = (Decimal(10), Decimal(50))

Number = int | Decimal
T = TypeVar("T")
Status = Literal["scored", "incomplete", "not-applicable"]


def _require_aware(moment: datetime, name: str) -> None:
    # A naive time cannot be compared with ``now`` safely across BST/GMT: fail loudly.
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware: {moment!r}")


class Consciousness(StrEnum):
    """ACVPU: Alert, new Confusion, Voice, Pain, Unresponsive [S7]."""

    ALERT = "alert"
    NEW_CONFUSION = "new-confusion"
    VOICE = "voice"
    PAIN = "pain"
    UNRESPONSIVE = "unresponsive"


class SpO2Scale(IntEnum):
    """SpO2 Scale 1 (default, target 94-98%) or Scale 2 (prescribed 88-92% target) [S7][S9]."""

    SCALE_1 = 1
    SCALE_2 = 2


class Band(StrEnum):
    """Clinical risk band, lowest first (Chart 3/4) [S8]."""

    LOW = "low"
    LOW_MEDIUM = "low-medium"
    MEDIUM = "medium"
    HIGH = "high"

    @property
    def rank(self) -> int:
        return list(Band).index(self)


class Parameter(StrEnum):
    """The seven NEWS2 parameters, in Chart 1 order."""

    RESPIRATION_RATE = "respiration_rate"
    SPO2 = "spo2"
    AIR_OR_OXYGEN = "air_or_oxygen"
    SYSTOLIC_BP = "systolic_bp"
    PULSE = "pulse"
    CONSCIOUSNESS = "consciousness"
    TEMPERATURE = "temperature"


@dataclass(frozen=True, slots=True)
class Reading(Generic[T]):
    """One observed value, when it was taken, and the resource it came from."""

    value: T
    taken_at: datetime
    source: str | None = None  # e.g. "Observation/123", kept as evidence

    def __post_init__(self) -> None:
        _require_aware(self.taken_at, "Reading.taken_at")


@dataclass(frozen=True, slots=True)
class VitalSigns:
    """The latest reading of each parameter; None when there is none."""

    respiration_rate: Reading[Number] | None = None  # breaths/min
    spo2: Reading[Number] | None = None  # %
    on_oxygen: Reading[bool] | None = None  # True = supplemental oxygen, False = air
    systolic_bp: Reading[Number] | None = None  # mmHg
    pulse: Reading[Number] | None = None  # beats/min
    consciousness: Reading[Consciousness] | None = None
    temperature: Reading[Number] | None = None  # °C, Decimal to one place


@dataclass(frozen=True, slots=True)
class ClinicalResponse:
    """Minimum monitoring frequency and clinical response for a band (Chart 4) [S8]."""

    monitoring: str
    action: str


@dataclass(frozen=True, slots=True)
class News2Result:
    """The outcome of one NEWS2 assessment.

    ``total`` and ``band`` are set only when ``status == "scored"``. For an
    incomplete set, ``partial_total`` is the sum of the parameters that could be
    scored (a minimum: sub-scores are never negative) and ``minimum_band`` is the
    band that sum already guarantees, or None when it guarantees nothing above low.
    ``missing`` lists every parameter without a sub-score, whatever the cause;
    ``stale`` and ``invalid`` say which of them had a reading that was not used.
    """

    status: Status
    scale: SpO2Scale
    total: int | None = None
    band: Band | None = None
    partial_total: int | None = None
    minimum_band: Band | None = None
    sub_scores: Mapping[Parameter, int] = field(default_factory=dict)
    missing: tuple[Parameter, ...] = ()
    stale: tuple[Parameter, ...] = ()
    invalid: tuple[Parameter, ...] = ()
    reason: str | None = None
    response: ClinicalResponse | None = None
    evidence: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Structural guarantees, so no consumer can read an incomplete set as low.
        if self.status == "scored":
            if self.total is None or self.band is None or self.missing:
                raise ValueError("a scored result needs a total, a band and no missing parameter")
        elif self.total is not None or self.band is not None:
            raise ValueError(f"a {self.status} result must have neither total nor band")
        if self.minimum_band is Band.LOW:
            raise ValueError("minimum_band is never LOW: an incomplete set guarantees nothing")


# --- Chart 1 parameter scores [S7] -------------------------------------------------------
# Each band's charted edge is compared so that a value in the gap between two bands
# (e.g. 8.5 between "<=8" and "9-11") falls in the more abnormal one; see module docstring.


def score_respiration_rate(rate: Number) -> int:
    """Respiration rate (breaths/min): <=8 -> 3, 9-11 -> 1, 12-20 -> 0, 21-24 -> 2, >=25 -> 3."""
    value = _measurement(rate, "respiration rate")
    if value < 9:  # Chart 1: <=8 scores 3
        return 3
    if value < 12:  # Chart 1: 9-11 scores 1
        return 1
    if value <= 20:  # Chart 1: 12-20 scores 0
        return 0
    if value <= 24:  # Chart 1: 21-24 scores 2
        return 2
    return 3  # Chart 1: >=25 scores 3


def score_spo2(spo2: Number, scale: SpO2Scale, *, on_oxygen: bool) -> int:
    """SpO2 (%) on the given scale; ``on_oxygen`` matters only on Scale 2 [S7]."""
    value = _measurement(spo2, "SpO2", maximum=Decimal(100))
    if scale == SpO2Scale.SCALE_2:
        return _score_spo2_scale_2(value, on_oxygen=on_oxygen)
    return _score_spo2_scale_1(value)


def _score_spo2_scale_1(value: Decimal) -> int:
    if value < 92:  # Chart 1 Scale 1: <=91 scores 3
        return 3
    if value < 94:  # Chart 1 Scale 1: 92-93 scores 2
        return 2
    if value < 96:  # Chart 1 Scale 1: 94-95 scores 1
        return 1
    return 0  # Chart 1 Scale 1: >=96 scores 0


def _score_spo2_scale_2(value: Decimal, *, on_oxygen: bool) -> int:
    if value < 84:  # Chart 1 Scale 2: <=83 scores 3
        return 3
    if value < 86:  # Chart 1 Scale 2: 84-85 scores 2
        return 2
    if value < 88:  # Chart 1 Scale 2: 86-87 scores 1
        return 1
    if value <= 92 or not on_oxygen:  # Chart 1 Scale 2: 88-92, or >=93 on air, scores 0
        return 0
    # On oxygen above the 88-92% target risks hypercapnia: over-oxygenation scores [S7].
    if value <= 94:  # Chart 1 Scale 2: 93-94 on oxygen scores 1
        return 1
    if value <= 96:  # Chart 1 Scale 2: 95-96 on oxygen scores 2
        return 2
    return 3  # Chart 1 Scale 2: >=97 on oxygen scores 3


def score_air_or_oxygen(on_oxygen: bool) -> int:
    """Air or oxygen: supplemental oxygen scores 2, air scores 0 (Chart 1) [S7]."""
    return 2 if on_oxygen else 0


def score_systolic_bp(systolic: Number) -> int:
    """Systolic BP (mmHg): <=90 -> 3, 91-100 -> 2, 101-110 -> 1, 111-219 -> 0, >=220 -> 3."""
    value = _measurement(systolic, "systolic blood pressure")
    if value < 91:  # Chart 1: <=90 scores 3
        return 3
    if value < 101:  # Chart 1: 91-100 scores 2
        return 2
    if value < 111:  # Chart 1: 101-110 scores 1
        return 1
    if value <= 219:  # Chart 1: 111-219 scores 0
        return 0
    return 3  # Chart 1: >=220 scores 3


def score_pulse(pulse: Number) -> int:
    """Pulse (/min): <=40 -> 3, 41-50 -> 1, 51-90 -> 0, 91-110 -> 1, 111-130 -> 2, >=131 -> 3."""
    value = _measurement(pulse, "pulse")
    if value < 41:  # Chart 1: <=40 scores 3
        return 3
    if value < 51:  # Chart 1: 41-50 scores 1
        return 1
    if value <= 90:  # Chart 1: 51-90 scores 0
        return 0
    if value <= 110:  # Chart 1: 91-110 scores 1
        return 1
    if value <= 130:  # Chart 1: 111-130 scores 2
        return 2
    return 3  # Chart 1: >=131 scores 3


def score_consciousness(level: Consciousness) -> int:
    """ACVPU: Alert scores 0; new Confusion, Voice, Pain or Unresponsive score 3 [S7]."""
    # Compared by value: anything other than Alert scores 3, the safe direction.
    return 0 if level == Consciousness.ALERT else 3


def score_temperature(celsius: Number) -> int:
    """Temperature (°C, one decimal on the chart): <=35.0 -> 3, 35.1-36.0 -> 1,
    36.1-38.0 -> 0, 38.1-39.0 -> 1, >=39.1 -> 2."""
    value = _measurement(celsius, "temperature", minimum=_TEMPERATURE_RANGE_CELSIUS[0])
    if value > _TEMPERATURE_RANGE_CELSIUS[1]:
        raise ValueError(f"temperature {value} is not a body temperature in °C")
    if value < Decimal("35.1"):  # Chart 1: <=35.0 scores 3
        return 3
    if value < Decimal("36.1"):  # Chart 1: 35.1-36.0 scores 1
        return 1
    if value <= Decimal("38.0"):  # Chart 1: 36.1-38.0 scores 0
        return 0
    if value <= Decimal("39.0"):  # Chart 1: 38.1-39.0 scores 1
        return 1
    return 2  # Chart 1: >=39.1 scores 2


def _measurement(
    value: Number, name: str, *, minimum: Decimal = Decimal(0), maximum: Decimal | None = None
) -> Decimal:
    """``value`` as a Decimal, or ValueError when it cannot be a measurement."""
    # Floats are refused: binary 38.1 is not 38.1, and these edges are exact.
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise TypeError(f"{name} must be an int or Decimal, not {type(value).__name__}")
    number = Decimal(value)
    if not number.is_finite():
        raise ValueError(f"{name} is not a finite number: {value}")
    if number < minimum or (maximum is not None and number > maximum):
        raise ValueError(f"{name} {value} is outside the possible range")
    return number


# --- Aggregate, band and response (Chart 3/4) [S8] ----------------------------------------


def band_for(total: int, *, any_single_three: bool) -> Band:
    """The risk band of a complete aggregate score [S8]."""
    if total >= 7:  # Chart 4: 7 or more, emergency response threshold
        return Band.HIGH
    if total >= 5:  # Chart 4: 5 or more, urgent response threshold
        return Band.MEDIUM
    if any_single_three:  # Chart 4: 3 in a single parameter
        return Band.LOW_MEDIUM
    return Band.LOW  # Chart 4: 0, and 1-4


def clinical_response(band: Band, total: int) -> ClinicalResponse:
    """Chart 4's minimum monitoring and response for a band (and, for low, the total) [S8]."""
    if band is Band.LOW:
        return _RESPONSE_ZERO if total == 0 else _RESPONSE_LOW
    return _RESPONSES[band]


# Chart 4 [S8], lightly shortened; the chart's own wording is authoritative.
_RESPONSE_ZERO = ClinicalResponse(
    monitoring="Minimum 12-hourly",
    action="Continue routine NEWS monitoring.",
)
_RESPONSE_LOW = ClinicalResponse(
    monitoring="Minimum 4-6-hourly",
    action=(
        "Inform a registered nurse, who must assess the patient and decide whether "
        "increased frequency of monitoring and/or escalation of care is required."
    ),
)
_RESPONSES: Mapping[Band, ClinicalResponse] = {
    Band.LOW_MEDIUM: ClinicalResponse(
        monitoring="Minimum 1-hourly",
        action=(
            "Registered nurse to inform the medical team caring for the patient, who will "
            "review and decide whether escalation of care is necessary."
        ),
    ),
    Band.MEDIUM: ClinicalResponse(
        monitoring="Minimum 1-hourly",
        action=(
            "Urgent response: registered nurse to inform the medical team caring for the "
            "patient immediately and request urgent assessment by a clinician or team with "
            "core competencies in the care of acutely ill patients; provide clinical care in "
            "an environment with monitoring facilities."
        ),
    ),
    Band.HIGH: ClinicalResponse(
        monitoring="Continuous monitoring of vital signs",
        action=(
            "Emergency response: registered nurse to inform the medical team caring for the "
            "patient immediately (at least specialist registrar level); emergency assessment "
            "by a team with critical-care competencies, including advanced airway management; "
            "consider transfer to a level 2 or 3 care facility (HDU or ICU); clinical care in "
            "an environment with monitoring facilities."
        ),
    ),
}


# --- Assessment ----------------------------------------------------------------------------

_Unscored = Literal["absent", "invalid", "undetermined"]


def assess(
    vitals: VitalSigns,
    *,
    now: datetime,
    max_age: timedelta,
    scale2_target_documented: bool,
    age_years: int | None,
    pregnant: bool,
    future_tolerance: timedelta = FUTURE_TOLERANCE,
) -> News2Result:
    """Score ``vitals`` as at ``now``.

    Readings older than ``max_age`` are stale and readings more than
    ``future_tolerance`` after ``now`` are invalid; neither is used. A reading
    exactly ``max_age`` old is used. Scale 2 is used only when a clinician has
    documented an 88-92% target (``scale2_target_documented``) [S9]; otherwise
    Scale 1 ("if in doubt use Scale 1", secondary sources in [S9]). An unknown age is
    scored as an adult and said so in ``reason``: withholding the score would
    hide deterioration in the adults who make up nearly all inpatients.
    """
    _require_aware(now, "now")
    if max_age <= timedelta(0) or future_tolerance < timedelta(0):
        raise ValueError("max_age must be positive and future_tolerance not negative")
    if age_years is not None and age_years < 0:
        raise ValueError(f"age_years cannot be negative: {age_years}")
    scale = SpO2Scale.SCALE_2 if scale2_target_documented else SpO2Scale.SCALE_1
    exclusion = _exclusion_reason(age_years, pregnant=pregnant)
    if exclusion is not None:
        return News2Result(status="not-applicable", scale=scale, reason=exclusion)
    current, stale, too_new = _current_readings(vitals, now, max_age, future_tolerance)
    outcomes = _score_parameters(current, scale)
    return _result(
        scale=scale,
        outcomes=outcomes,
        stale=stale,
        invalid=tuple(p for p in Parameter if p in too_new or outcomes[p] == "invalid"),
        evidence=_evidence(current, outcomes),
        age_known=age_years is not None,
    )


def _exclusion_reason(age_years: int | None, *, pregnant: bool) -> str | None:
    # RCP 2017 report: NEWS2 is not validated for under-16s or in pregnancy [S9]; the
    # wording below is ours and the RCP statement is UNVERIFIED (clinical.md §1.1).
    reasons = []
    if age_years is not None and age_years < ADULT_AGE_YEARS:
        reasons.append(
            f"NEWS2 is not validated for patients under {ADULT_AGE_YEARS} (age {age_years}); "
            "use a paediatric early warning score (PEWS)."
        )
    if pregnant:
        reasons.append(
            "NEWS2 is not validated in pregnancy; use the obstetric early warning score "
            "in local use."
        )
    return " ".join(reasons) or None


_FIELDS: Mapping[Parameter, str] = {
    Parameter.RESPIRATION_RATE: "respiration_rate",
    Parameter.SPO2: "spo2",
    Parameter.AIR_OR_OXYGEN: "on_oxygen",
    Parameter.SYSTOLIC_BP: "systolic_bp",
    Parameter.PULSE: "pulse",
    Parameter.CONSCIOUSNESS: "consciousness",
    Parameter.TEMPERATURE: "temperature",
}


def _reading(vitals: VitalSigns, parameter: Parameter) -> Reading[object] | None:
    reading: Reading[object] | None = getattr(vitals, _FIELDS[parameter])
    return reading


def _current_readings(
    vitals: VitalSigns, now: datetime, max_age: timedelta, future_tolerance: timedelta
) -> tuple[VitalSigns, tuple[Parameter, ...], tuple[Parameter, ...]]:
    """``vitals`` without stale or future readings, and the parameters each removed."""
    stale: list[Parameter] = []
    too_new: list[Parameter] = []
    for parameter in Parameter:
        reading = _reading(vitals, parameter)
        if reading is None:
            continue
        if now - reading.taken_at > max_age:
            stale.append(parameter)
        elif reading.taken_at - now > future_tolerance:
            too_new.append(parameter)
    unusable = {_FIELDS[p]: None for p in (*stale, *too_new)}
    return replace(vitals, **unusable), tuple(stale), tuple(too_new)


def _score_parameters(vitals: VitalSigns, scale: SpO2Scale) -> dict[Parameter, int | _Unscored]:
    oxygen = vitals.on_oxygen.value if vitals.on_oxygen is not None else None
    return {
        Parameter.RESPIRATION_RATE: _apply(vitals.respiration_rate, score_respiration_rate),
        Parameter.SPO2: _apply(vitals.spo2, lambda v: _spo2_if_determined(v, scale, oxygen)),
        Parameter.AIR_OR_OXYGEN: _apply(vitals.on_oxygen, score_air_or_oxygen),
        Parameter.SYSTOLIC_BP: _apply(vitals.systolic_bp, score_systolic_bp),
        Parameter.PULSE: _apply(vitals.pulse, score_pulse),
        Parameter.CONSCIOUSNESS: _apply(vitals.consciousness, score_consciousness),
        Parameter.TEMPERATURE: _apply(vitals.temperature, score_temperature),
    }


def _apply(reading: Reading[T] | None, scorer: Callable[[T], int | None]) -> int | _Unscored:
    if reading is None:
        return "absent"
    try:
        score = scorer(reading.value)
    except ValueError:
        return "invalid"
    return "undetermined" if score is None else score


def _spo2_if_determined(spo2: Number, scale: SpO2Scale, on_oxygen: bool | None) -> int | None:
    # Without a usable air/oxygen reading, Scale 2 at >=93% cannot be scored (0 on air,
    # 1-3 on oxygen); any score that does not depend on oxygen is still determined.
    if on_oxygen is not None:
        return score_spo2(spo2, scale, on_oxygen=on_oxygen)
    on_air = score_spo2(spo2, scale, on_oxygen=False)
    return on_air if on_air == score_spo2(spo2, scale, on_oxygen=True) else None


def _evidence(vitals: VitalSigns, outcomes: Mapping[Parameter, int | _Unscored]) -> tuple[str, ...]:
    sources = (_reading(vitals, p) for p in Parameter if isinstance(outcomes[p], int))
    return tuple(dict.fromkeys(r.source for r in sources if r is not None and r.source))


def _result(
    *,
    scale: SpO2Scale,
    outcomes: Mapping[Parameter, int | _Unscored],
    stale: tuple[Parameter, ...],
    invalid: tuple[Parameter, ...],
    evidence: tuple[str, ...],
    age_known: bool,
) -> News2Result:
    sub_scores = {p: s for p, s in outcomes.items() if isinstance(s, int)}
    missing = tuple(p for p in Parameter if p not in sub_scores)
    partial = sum(sub_scores.values())
    band = band_for(partial, any_single_three=3 in sub_scores.values())
    caveat = None if age_known else _AGE_UNKNOWN
    if not missing:
        return News2Result(
            status="scored",
            scale=scale,
            total=partial,
            band=band,
            partial_total=partial,
            sub_scores=sub_scores,
            reason=caveat,
            response=clinical_response(band, partial),
            evidence=evidence,
        )
    # Sub-scores are never negative, so the band of the partial sum is a floor.
    floor = None if band is Band.LOW else band
    return News2Result(
        status="incomplete",
        scale=scale,
        partial_total=partial,
        minimum_band=floor,
        sub_scores=sub_scores,
        missing=missing,
        stale=stale,
        invalid=invalid,
        reason=_incomplete_reason(outcomes, stale, invalid, partial, floor, caveat),
        response=None if floor is None else clinical_response(floor, partial),
        evidence=evidence,
    )


_AGE_UNKNOWN = (
    f"Age unknown: scored as an adult, but NEWS2 is not validated under {ADULT_AGE_YEARS}."
)


def _incomplete_reason(
    outcomes: Mapping[Parameter, int | _Unscored],
    stale: tuple[Parameter, ...],
    invalid: tuple[Parameter, ...],
    partial: int,
    floor: Band | None,
    caveat: str | None,
) -> str:
    missing = tuple(p for p in Parameter if not isinstance(outcomes[p], int))
    parts = [f"Incomplete set, NEWS2 not calculated: no score for {_names(missing)}."]
    if stale:
        parts.append(f"Too old to use: {_names(stale)}.")
    if invalid:
        parts.append(f"Invalid (future-dated or impossible value): {_names(invalid)}.")
    if outcomes[Parameter.SPO2] == "undetermined":
        parts.append("SpO2 of 93% or more on Scale 2 cannot be scored without air or oxygen.")
    parts.append(f"The other parameters score {partial}; a complete score is at least that.")
    if floor is not None:
        parts.append(f"That alone is already {floor} risk.")
    parts.append("Record a full set of observations.")
    if caveat is not None:
        parts.append(caveat)
    return " ".join(parts)


def _names(parameters: tuple[Parameter, ...]) -> str:
    return ", ".join(p.value.replace("_", " ") for p in parameters)
