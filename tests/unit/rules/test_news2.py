"""NEWS2 engine: every Chart 1 band edge, the Chart 4 bands, and the data-quality rules.

Tables are fixed (no random factories) so a clinical reviewer can read them against
the RCP chart; the hypothesis properties at the end guard the shape of the score.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fhir_safety.rules import news2
from fhir_safety.rules.news2 import (
    Band,
    Consciousness,
    News2Result,
    Number,
    Parameter,
    Reading,
    SpO2Scale,
    VitalSigns,
    assess,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
MAX_AGE = timedelta(hours=6)
D = Decimal
T = TypeVar("T")
NORMAL_TEMPERATURE = D("37.0")
Scorer = Callable[[Number], int]

# No example database: keeps runs reproducible and leaves no .hypothesis/ directory behind.
PROPERTY = settings(database=None, deadline=None, max_examples=300)


def reading(
    value: T, *, age: timedelta = timedelta(minutes=10), source: str | None = None
) -> Reading[T]:
    return Reading(value=value, taken_at=NOW - age, source=source)


def vitals(
    *,
    rr: Number = 16,
    spo2: Number = 97,
    on_oxygen: bool = False,
    sbp: Number = 120,
    pulse: Number = 70,
    acvpu: Consciousness = Consciousness.ALERT,
    temp: Number = NORMAL_TEMPERATURE,
) -> VitalSigns:
    """A complete, current set; the defaults all score 0."""
    return VitalSigns(
        respiration_rate=reading(rr, source="Observation/rr"),
        spo2=reading(spo2, source="Observation/spo2"),
        on_oxygen=reading(on_oxygen, source="Observation/o2"),
        systolic_bp=reading(sbp, source="Observation/bp"),
        pulse=reading(pulse, source="Observation/pulse"),
        consciousness=reading(acvpu, source="Observation/acvpu"),
        temperature=reading(temp, source="Observation/temp"),
    )


def run(
    v: VitalSigns,
    *,
    scale2: bool = False,
    age: int | None = 70,
    pregnant: bool = False,
) -> News2Result:
    return assess(
        v,
        now=NOW,
        max_age=MAX_AGE,
        scale2_target_documented=scale2,
        age_years=age,
        pregnant=pregnant,
    )


def test_rule_id() -> None:
    assert news2.RULE_ID == "news2"


# --- Chart 1, every band edge -------------------------------------------------------------


@pytest.mark.parametrize(
    ("rate", "score"),
    [(0, 3), (8, 3), (9, 1), (11, 1), (12, 0), (20, 0), (21, 2), (24, 2), (25, 3), (60, 3)],
)
def test_score_respiration_rate_band_edges(rate: int, score: int) -> None:
    assert news2.score_respiration_rate(rate) == score


@pytest.mark.parametrize(
    ("spo2", "score"), [(70, 3), (91, 3), (92, 2), (93, 2), (94, 1), (95, 1), (96, 0), (100, 0)]
)
@pytest.mark.parametrize("on_oxygen", [False, True])
def test_score_spo2_scale_1_band_edges_ignore_oxygen(
    spo2: int, score: int, on_oxygen: bool
) -> None:
    assert news2.score_spo2(spo2, SpO2Scale.SCALE_1, on_oxygen=on_oxygen) == score


@pytest.mark.parametrize(
    ("spo2", "on_air", "on_oxygen"),
    [
        (70, 3, 3),
        (83, 3, 3),
        (84, 2, 2),
        (85, 2, 2),
        (86, 1, 1),
        (87, 1, 1),
        (88, 0, 0),
        (92, 0, 0),
        (93, 0, 1),
        (94, 0, 1),
        (95, 0, 2),
        (96, 0, 2),
        (97, 0, 3),
        (100, 0, 3),
    ],
)
def test_score_spo2_scale_2_band_edges_on_air_and_oxygen(
    spo2: int, on_air: int, on_oxygen: int
) -> None:
    assert news2.score_spo2(spo2, SpO2Scale.SCALE_2, on_oxygen=False) == on_air
    assert news2.score_spo2(spo2, SpO2Scale.SCALE_2, on_oxygen=True) == on_oxygen


@pytest.mark.parametrize(("on_oxygen", "score"), [(False, 0), (True, 2)])
def test_score_air_or_oxygen(on_oxygen: bool, score: int) -> None:
    assert news2.score_air_or_oxygen(on_oxygen) == score


@pytest.mark.parametrize(
    ("sbp", "score"),
    [(0, 3), (90, 3), (91, 2), (100, 2), (101, 1), (110, 1), (111, 0), (219, 0), (220, 3)],
)
def test_score_systolic_bp_band_edges(sbp: int, score: int) -> None:
    assert news2.score_systolic_bp(sbp) == score


@pytest.mark.parametrize(
    ("pulse", "score"),
    [
        (0, 3),
        (40, 3),
        (41, 1),
        (50, 1),
        (51, 0),
        (90, 0),
        (91, 1),
        (110, 1),
        (111, 2),
        (130, 2),
        (131, 3),
        (220, 3),
    ],
)
def test_score_pulse_band_edges(pulse: int, score: int) -> None:
    assert news2.score_pulse(pulse) == score


@pytest.mark.parametrize(
    ("celsius", "score"),
    [
        ("34.0", 3),
        ("35.0", 3),
        ("35.1", 1),
        ("36.0", 1),
        ("36.1", 0),
        ("38.0", 0),
        ("38.1", 1),
        ("39.0", 1),
        ("39.1", 2),
        ("41.5", 2),
    ],
)
def test_score_temperature_band_edges(celsius: str, score: int) -> None:
    assert news2.score_temperature(D(celsius)) == score


def test_score_temperature_accepts_whole_degrees() -> None:
    assert news2.score_temperature(37) == 0


@pytest.mark.parametrize(
    ("level", "score"),
    [
        (Consciousness.ALERT, 0),
        (Consciousness.NEW_CONFUSION, 3),
        (Consciousness.VOICE, 3),
        (Consciousness.PAIN, 3),
        (Consciousness.UNRESPONSIVE, 3),
    ],
)
def test_score_consciousness_each_level(level: Consciousness, score: int) -> None:
    assert news2.score_consciousness(level) == score


# --- Values between charted bands score in the more abnormal band ------------------------


@pytest.mark.parametrize(
    ("scorer", "value", "score"),
    [
        (news2.score_respiration_rate, D("8.5"), 3),  # between <=8 (3) and 9-11 (1)
        (news2.score_respiration_rate, D("11.5"), 1),  # between 9-11 (1) and 12-20 (0)
        (news2.score_respiration_rate, D("20.5"), 2),  # between 12-20 (0) and 21-24 (2)
        (news2.score_respiration_rate, D("24.5"), 3),  # between 21-24 (2) and >=25 (3)
        (news2.score_systolic_bp, D("90.5"), 3),
        (news2.score_systolic_bp, D("110.5"), 1),
        (news2.score_systolic_bp, D("219.5"), 3),
        (news2.score_pulse, D("40.5"), 3),
        (news2.score_pulse, D("50.5"), 1),
        (news2.score_pulse, D("90.5"), 1),
        (news2.score_pulse, D("130.5"), 3),
        (news2.score_temperature, D("35.05"), 3),  # between 35.0 (3) and 35.1 (1)
        (news2.score_temperature, D("36.05"), 1),  # between 36.0 (1) and 36.1 (0)
        (news2.score_temperature, D("38.05"), 1),  # between 38.0 (0) and 38.1 (1)
        (news2.score_temperature, D("39.05"), 2),  # between 39.0 (1) and 39.1 (2)
    ],
)
def test_fractional_value_between_bands_scores_more_abnormal_band(
    scorer: Scorer, value: Decimal, score: int
) -> None:
    assert scorer(value) == score


@pytest.mark.parametrize(
    ("value", "scale", "on_oxygen", "score"),
    [
        (D("91.5"), SpO2Scale.SCALE_1, False, 3),
        (D("95.5"), SpO2Scale.SCALE_1, False, 1),
        (D("83.5"), SpO2Scale.SCALE_2, False, 3),
        (D("87.5"), SpO2Scale.SCALE_2, False, 1),
        (D("92.5"), SpO2Scale.SCALE_2, False, 0),
        (D("92.5"), SpO2Scale.SCALE_2, True, 1),
        (D("96.5"), SpO2Scale.SCALE_2, True, 3),
    ],
)
def test_fractional_spo2_between_bands_scores_more_abnormal_band(
    value: Decimal, scale: SpO2Scale, on_oxygen: bool, score: int
) -> None:
    assert news2.score_spo2(value, scale, on_oxygen=on_oxygen) == score


# --- Impossible values are refused, not scored --------------------------------------------


@pytest.mark.parametrize(
    ("scorer", "value"),
    [
        (news2.score_respiration_rate, -1),
        (news2.score_pulse, D("-0.1")),
        (news2.score_systolic_bp, -5),
        (news2.score_temperature, D("98.6")),  # Fahrenheit
        (news2.score_temperature, D("9.9")),
        (news2.score_respiration_rate, D("NaN")),
        (news2.score_pulse, D("Infinity")),
    ],
)
def test_impossible_value_raises_value_error(scorer: Scorer, value: Number) -> None:
    with pytest.raises(ValueError, match=r"range|finite|temperature"):
        scorer(value)


@pytest.mark.parametrize("value", [101, D("100.1"), -1])
def test_score_spo2_outside_0_to_100_raises(value: Number) -> None:
    with pytest.raises(ValueError, match="range"):
        news2.score_spo2(value, SpO2Scale.SCALE_1, on_oxygen=False)


@pytest.mark.parametrize("value", [20.5, True])
def test_float_or_bool_raises_type_error(value: object) -> None:
    with pytest.raises(TypeError, match="int or Decimal"):
        news2.score_respiration_rate(value)  # type: ignore[arg-type]


# --- Chart 3/4: bands and responses -------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "any_three", "band"),
    [
        (0, False, Band.LOW),
        (4, False, Band.LOW),
        (3, True, Band.LOW_MEDIUM),
        (4, True, Band.LOW_MEDIUM),
        (5, False, Band.MEDIUM),
        (5, True, Band.MEDIUM),
        (6, True, Band.MEDIUM),
        (7, False, Band.HIGH),
        (20, True, Band.HIGH),
    ],
)
def test_band_for(total: int, any_three: bool, band: Band) -> None:
    assert news2.band_for(total, any_single_three=any_three) is band


@pytest.mark.parametrize(
    ("band", "total", "monitoring"),
    [
        (Band.LOW, 0, "Minimum 12-hourly"),
        (Band.LOW, 4, "Minimum 4-6-hourly"),
        (Band.LOW_MEDIUM, 3, "Minimum 1-hourly"),
        (Band.MEDIUM, 5, "Minimum 1-hourly"),
        (Band.HIGH, 7, "Continuous monitoring of vital signs"),
    ],
)
def test_clinical_response_monitoring(band: Band, total: int, monitoring: str) -> None:
    assert news2.clinical_response(band, total).monitoring == monitoring


def test_clinical_response_urgent_and_emergency_wording() -> None:
    assert news2.clinical_response(Band.MEDIUM, 5).action.startswith("Urgent response")
    assert "HDU or ICU" in news2.clinical_response(Band.HIGH, 7).action


@pytest.mark.parametrize(
    ("v", "total", "band"),
    [
        (vitals(), 0, Band.LOW),
        (vitals(rr=21, pulse=95, temp=D("38.5")), 4, Band.LOW),  # 2 + 1 + 1
        (vitals(acvpu=Consciousness.VOICE), 3, Band.LOW_MEDIUM),  # a single 3
        (vitals(rr=21, spo2=93, pulse=95), 5, Band.MEDIUM),  # 2 + 2 + 1
        (vitals(rr=21, spo2=93, pulse=95, temp=D("38.5")), 6, Band.MEDIUM),
        (vitals(rr=25, spo2=93, pulse=111), 7, Band.HIGH),  # 3 + 2 + 2
        (
            vitals(
                rr=25,
                spo2=91,
                on_oxygen=True,
                sbp=90,
                pulse=131,
                acvpu=Consciousness.UNRESPONSIVE,
                temp=D("35.0"),
            ),
            20,
            Band.HIGH,
        ),
    ],
)
def test_assess_aggregate_bands(v: VitalSigns, total: int, band: Band) -> None:
    result = run(v)
    assert result.status == "scored"
    assert (result.total, result.band) == (total, band)
    assert result.response == news2.clinical_response(band, total)
    assert result.partial_total == total
    assert result.missing == ()


def test_assess_uk_core_news2_example_sub_scores_total_6_medium() -> None:
    # UK Core NEWS2 example bundle [S3]: RR 2, pulse 1, SpO2 scale 1 2, air 0, temp 1,
    # SBP 0, consciousness 0. Raw values chosen to give those sub-scores.
    result = run(vitals(rr=21, pulse=95, spo2=93, on_oxygen=False, temp=D("38.5"), sbp=120))
    assert dict(result.sub_scores) == {
        Parameter.RESPIRATION_RATE: 2,
        Parameter.SPO2: 2,
        Parameter.AIR_OR_OXYGEN: 0,
        Parameter.SYSTOLIC_BP: 0,
        Parameter.PULSE: 1,
        Parameter.CONSCIOUSNESS: 0,
        Parameter.TEMPERATURE: 1,
    }
    assert (result.total, result.band, result.scale) == (6, Band.MEDIUM, SpO2Scale.SCALE_1)


def test_assess_uk_core_example_raw_values_score_temperature_0() -> None:
    # The same bundle's raw Observations are RR 21, pulse 95, SpO2 93, room air, 37.5 °C,
    # SBP 120, alert. On Chart 1, 37.5 °C scores 0, not the example's 1: the example is
    # internally inconsistent, and the chart wins (total 5, still medium).
    result = run(vitals(rr=21, pulse=95, spo2=93, temp=D("37.5"), sbp=120))
    assert result.sub_scores[Parameter.TEMPERATURE] == 0
    assert (result.total, result.band) == (5, Band.MEDIUM)


def test_assess_evidence_lists_sources_of_used_readings_in_chart_order() -> None:
    assert run(vitals()).evidence == (
        "Observation/rr",
        "Observation/spo2",
        "Observation/o2",
        "Observation/bp",
        "Observation/pulse",
        "Observation/acvpu",
        "Observation/temp",
    )


# --- Stale, future-dated and missing readings ---------------------------------------------


def test_assess_reading_exactly_max_age_old_is_used() -> None:
    v = replace(vitals(), pulse=reading(120, age=MAX_AGE))
    result = run(v)
    assert result.status == "scored"
    assert result.sub_scores[Parameter.PULSE] == 2
    assert result.stale == ()


def test_assess_reading_older_than_max_age_is_stale_and_set_incomplete() -> None:
    v = replace(vitals(), pulse=reading(120, age=MAX_AGE + timedelta(seconds=1), source="O/p"))
    result = run(v)
    assert result.status == "incomplete"
    assert (result.total, result.band) == (None, None)
    assert result.stale == (Parameter.PULSE,)
    assert result.missing == (Parameter.PULSE,)
    assert Parameter.PULSE not in result.sub_scores
    assert "O/p" not in result.evidence
    assert result.reason is not None
    assert "Too old to use: pulse" in result.reason


def test_assess_reading_within_future_tolerance_is_used() -> None:
    v = replace(vitals(), pulse=reading(70, age=-news2.FUTURE_TOLERANCE))
    assert run(v).status == "scored"


def test_assess_reading_beyond_future_tolerance_is_invalid() -> None:
    too_far = -(news2.FUTURE_TOLERANCE + timedelta(seconds=1))
    result = run(replace(vitals(), temperature=reading(D("37.0"), age=too_far)))
    assert result.status == "incomplete"
    assert result.invalid == (Parameter.TEMPERATURE,)
    assert result.missing == (Parameter.TEMPERATURE,)
    assert result.stale == ()


def test_assess_impossible_value_is_invalid_not_scored() -> None:
    result = run(vitals(spo2=101))
    assert result.status == "incomplete"
    assert result.invalid == (Parameter.SPO2,)
    assert result.band is None


@pytest.mark.parametrize("parameter", list(Parameter))
def test_assess_missing_parameter_is_incomplete_without_band(parameter: Parameter) -> None:
    field_name = "on_oxygen" if parameter is Parameter.AIR_OR_OXYGEN else parameter.value
    result = run(replace(vitals(), **{field_name: None}))
    assert result.status == "incomplete"
    assert (result.total, result.band, result.minimum_band) == (None, None, None)
    assert result.response is None
    assert result.missing == (parameter,)
    assert result.partial_total == 0
    assert result.reason is not None
    assert result.reason.startswith("Incomplete set")


def test_assess_empty_set_is_incomplete_with_everything_missing() -> None:
    result = run(VitalSigns())
    assert result.status == "incomplete"
    assert result.missing == tuple(Parameter)
    assert result.band is None
    assert result.evidence == ()


def test_assess_incomplete_set_reports_band_it_already_guarantees() -> None:
    v = replace(vitals(rr=25, spo2=91, on_oxygen=True), temperature=None)
    result = run(v)
    assert result.status == "incomplete"
    assert result.band is None
    assert result.partial_total == 8
    assert result.minimum_band is Band.HIGH
    assert result.response == news2.clinical_response(Band.HIGH, 8)
    assert result.reason is not None
    assert "already high risk" in result.reason


def test_assess_incomplete_set_with_single_three_guarantees_low_medium() -> None:
    result = run(replace(vitals(acvpu=Consciousness.PAIN), pulse=None))
    assert result.minimum_band is Band.LOW_MEDIUM
    assert result.band is None


# --- SpO2 Scale 2 --------------------------------------------------------------------------


def test_assess_scale_2_without_documented_target_uses_scale_1() -> None:
    result = run(vitals(spo2=90), scale2=False)
    assert result.scale is SpO2Scale.SCALE_1
    assert result.sub_scores[Parameter.SPO2] == 3


def test_assess_scale_2_with_documented_target() -> None:
    result = run(vitals(spo2=90), scale2=True)
    assert result.scale is SpO2Scale.SCALE_2
    assert result.sub_scores[Parameter.SPO2] == 0


def test_assess_scale_2_on_oxygen_scores_over_oxygenation_and_oxygen() -> None:
    result = run(vitals(spo2=97, on_oxygen=True), scale2=True)
    assert result.sub_scores[Parameter.SPO2] == 3
    assert result.sub_scores[Parameter.AIR_OR_OXYGEN] == 2
    assert (result.total, result.band) == (5, Band.MEDIUM)


def test_assess_scale_2_high_spo2_without_oxygen_status_is_undetermined() -> None:
    result = run(replace(vitals(spo2=95), on_oxygen=None), scale2=True)
    assert result.missing == (Parameter.SPO2, Parameter.AIR_OR_OXYGEN)
    assert result.invalid == ()
    assert result.reason is not None
    assert "cannot be scored without air or oxygen" in result.reason


def test_assess_scale_2_low_spo2_without_oxygen_status_is_still_scored() -> None:
    result = run(replace(vitals(spo2=85), on_oxygen=None), scale2=True)
    assert result.sub_scores[Parameter.SPO2] == 2
    assert result.missing == (Parameter.AIR_OR_OXYGEN,)


def test_assess_scale_1_spo2_without_oxygen_status_is_scored() -> None:
    result = run(replace(vitals(spo2=93), on_oxygen=None))
    assert result.sub_scores[Parameter.SPO2] == 2


# --- Who NEWS2 applies to ------------------------------------------------------------------


def test_assess_age_15_not_applicable() -> None:
    result = run(vitals(rr=30), age=15)
    assert result.status == "not-applicable"
    assert (result.total, result.band, result.partial_total) == (None, None, None)
    assert result.sub_scores == {}
    assert result.reason is not None
    assert "under 16" in result.reason


def test_assess_age_16_scored() -> None:
    result = run(vitals(), age=16)
    assert result.status == "scored"
    assert result.reason is None


def test_assess_pregnant_not_applicable() -> None:
    result = run(vitals(), pregnant=True)
    assert result.status == "not-applicable"
    assert result.reason is not None
    assert "pregnancy" in result.reason


def test_assess_under_16_and_pregnant_gives_both_reasons() -> None:
    reason = run(vitals(), age=15, pregnant=True).reason
    assert reason is not None
    assert "under 16" in reason
    assert "pregnancy" in reason


def test_assess_unknown_age_incomplete_set_keeps_caveat() -> None:
    reason = run(replace(vitals(), pulse=None), age=None).reason
    assert reason is not None
    assert reason.startswith("Incomplete set")
    assert reason.endswith("NEWS2 is not validated under 16.")


def test_assess_unknown_age_scored_with_caveat() -> None:
    result = run(vitals(), age=None)
    assert result.status == "scored"
    assert result.reason is not None
    assert result.reason.startswith("Age unknown")


# --- Programming errors fail loudly --------------------------------------------------------


def test_assess_naive_now_raises() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        assess(
            vitals(),
            now=NOW.replace(tzinfo=None),
            max_age=MAX_AGE,
            scale2_target_documented=False,
            age_years=70,
            pregnant=False,
        )


def test_reading_naive_taken_at_raises() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        Reading(value=16, taken_at=NOW.replace(tzinfo=None))


@pytest.mark.parametrize("max_age", [timedelta(0), timedelta(minutes=-1)])
def test_assess_non_positive_max_age_raises(max_age: timedelta) -> None:
    with pytest.raises(ValueError, match="max_age"):
        assess(
            vitals(),
            now=NOW,
            max_age=max_age,
            scale2_target_documented=False,
            age_years=70,
            pregnant=False,
        )


def test_assess_negative_age_raises() -> None:
    with pytest.raises(ValueError, match="age_years"):
        run(vitals(), age=-1)


def test_result_cannot_be_incomplete_with_a_band() -> None:
    with pytest.raises(ValueError, match="neither total nor band"):
        News2Result(status="incomplete", scale=SpO2Scale.SCALE_1, band=Band.LOW)


def test_result_cannot_be_scored_without_a_band() -> None:
    with pytest.raises(ValueError, match="scored result"):
        News2Result(status="scored", scale=SpO2Scale.SCALE_1, total=0)


def test_result_minimum_band_is_never_low() -> None:
    with pytest.raises(ValueError, match="never LOW"):
        News2Result(status="incomplete", scale=SpO2Scale.SCALE_1, minimum_band=Band.LOW)


# --- Properties ----------------------------------------------------------------------------

tenths = st.decimals(min_value=0, max_value=300, places=1)
temperatures = st.decimals(min_value=10, max_value=50, places=1)
saturations = st.decimals(min_value=0, max_value=100, places=1)

full_sets = st.builds(
    vitals,
    rr=st.integers(0, 80),
    spo2=st.integers(50, 100),
    on_oxygen=st.booleans(),
    sbp=st.integers(40, 300),
    pulse=st.integers(0, 250),
    acvpu=st.sampled_from(Consciousness),
    temp=temperatures,
)


@PROPERTY
@given(v=full_sets, scale2=st.booleans())
def test_property_total_within_0_to_20_and_sum_of_sub_scores(v: VitalSigns, scale2: bool) -> None:
    result = run(v, scale2=scale2)
    assert result.status == "scored"
    assert result.total is not None
    assert 0 <= result.total <= 20
    assert result.total == sum(result.sub_scores.values())
    assert all(0 <= s <= 3 for s in result.sub_scores.values())


# (scorer, upper end of the 0 band's low side, lower end of its high side). The score
# must not fall as a value moves further below the normal range or further above it.
NORMAL_RANGES = [
    pytest.param(news2.score_respiration_rate, D(12), D(20), tenths, id="respiration"),
    pytest.param(news2.score_systolic_bp, D(111), D(219), tenths, id="systolic_bp"),
    pytest.param(news2.score_pulse, D(51), D(90), tenths, id="pulse"),
    pytest.param(news2.score_temperature, D("36.1"), D("38.0"), temperatures, id="temperature"),
]


@pytest.mark.parametrize(("scorer", "low", "high", "values"), NORMAL_RANGES)
@PROPERTY
@given(data=st.data())
def test_property_more_abnormal_never_scores_lower(
    scorer: Scorer,
    low: Decimal,
    high: Decimal,
    values: st.SearchStrategy[Decimal],
    data: st.DataObject,
) -> None:
    a, b = sorted((data.draw(values), data.draw(values)))
    if b <= high:  # both at or below the top of normal: lower is at least as abnormal
        assert scorer(a) >= scorer(b)
    if a >= low:  # both at or above the bottom of normal: higher is at least as abnormal
        assert scorer(b) >= scorer(a)


@PROPERTY
@given(x=saturations, y=saturations, on_oxygen=st.booleans())
def test_property_spo2_scales_monotonic_away_from_target(
    x: Decimal, y: Decimal, on_oxygen: bool
) -> None:
    a, b = sorted((x, y))

    def scale_1(value: Decimal) -> int:
        return news2.score_spo2(value, SpO2Scale.SCALE_1, on_oxygen=on_oxygen)

    def scale_2(value: Decimal) -> int:
        return news2.score_spo2(value, SpO2Scale.SCALE_2, on_oxygen=on_oxygen)

    assert scale_1(a) >= scale_1(b)  # Scale 1: only low saturations score
    if b <= 92:  # at or below the top of the 88-92% target
        assert scale_2(a) >= scale_2(b)
    if a >= 88:  # at or above the bottom of the target: only oxygen makes it abnormal
        assert scale_2(b) >= scale_2(a)


@PROPERTY
@given(v=full_sets, scale2=st.booleans())
def test_property_adding_oxygen_never_lowers_total(v: VitalSigns, scale2: bool) -> None:
    on_air = run(replace(v, on_oxygen=reading(False)), scale2=scale2)
    on_oxygen = run(replace(v, on_oxygen=reading(True)), scale2=scale2)
    assert on_air.total is not None
    assert on_oxygen.total is not None
    assert on_oxygen.total >= on_air.total + 2


@PROPERTY
@given(v=full_sets, scale2=st.booleans(), dropped=st.sets(st.sampled_from(Parameter), min_size=1))
def test_property_incomplete_set_never_banded_and_partial_is_a_floor(
    v: VitalSigns, scale2: bool, dropped: set[Parameter]
) -> None:
    full = run(v, scale2=scale2)
    fields = {"on_oxygen" if p is Parameter.AIR_OR_OXYGEN else p.value: None for p in dropped}
    partial = run(replace(v, **fields), scale2=scale2)
    assert partial.status == "incomplete"
    assert (partial.total, partial.band) == (None, None)
    assert partial.minimum_band is not Band.LOW
    assert full.total is not None
    assert full.band is not None
    assert partial.partial_total is not None
    assert partial.partial_total <= full.total
    if partial.minimum_band is not None:
        assert partial.minimum_band.rank <= full.band.rank
    assert set(partial.missing) >= dropped
    assert set(partial.sub_scores) | set(partial.missing) == set(Parameter)
