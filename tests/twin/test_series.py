"""The twin's time series (twin/series.py, the syndrome_cases and bed_occupancy indicators) agree with a plain
count over the generator's resources, show the planted influenza season, measles cluster and hospital crunch,
and are served by the indicators API with ISO weeks, months and ranges. The reference here reads the NDJSON
files directly and shares no code with the views, the indicator SQL or the series module."""
from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from pathlib import Path

import orjson
import pytest

from healthtwin.analytics.indicators import IndicatorError, compute, load_indicators
from healthtwin.twin import series as S

ICD10 = "http://hl7.org/fhir/sid/icd-10"
# The groups, written independently of base_syndrome: ICD-10 three-character categories.
GROUPS = {
    "ili": lambda c: c[:3] in ("J09", "J10", "J11"),
    "ari": lambda c: c[0] == "J" and "J00" <= c[:3] <= "J22",
    "gastroenteritis": lambda c: c[0] == "A" and c[:3] <= "A09",
    "measles": lambda c: c[:3] == "B05",
    "chapter-X": lambda c: c[0] == "J",
    "chapter-IX": lambda c: c[0] == "I",
}


def _read(folder: Path, rtype: str) -> list[dict]:
    path = folder / f"{rtype}.ndjson"
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()] if path.exists() else []


class Reference:
    def __init__(self, folder: Path) -> None:
        self.home = {}
        for p in _read(folder, "Patient"):
            if not p.get("birthDate"):
                continue
            a = next((a for a in p.get("address", []) if a.get("use") == "home"), {})
            self.home[p["id"]] = (a.get("state", "unknown"), a.get("district", "unknown"))
        self.dx = []  # (patient, icd10, day) of diagnoses made at a contact
        for c in _read(folder, "Condition"):
            codes = [x["code"] for x in c["code"].get("coding", []) if x["system"] == ICD10]
            pid = c["subject"]["reference"].split("/")[1]
            if "encounter" in c and codes and pid in self.home:
                self.dx.append((pid, codes[0], dt.date.fromisoformat((c.get("onsetDateTime") or c["recordedDate"])[:10])))
        self.stays = [e for e in _read(folder, "Encounter") if e["class"]["code"] == "IMP"]
        locations = _read(folder, "Location")
        self.names = {loc["id"]: loc["name"] for loc in locations}  # the census is reported by hospital name
        self.beds = {loc["name"]: next(x["valueInteger"] for x in loc["extension"] if x["url"].endswith("bed-count"))
                     for loc in locations}

    def cases(self, group: str, level: str, bucket) -> Counter:
        out: Counter = Counter()
        for pid, code, day in self.dx:
            if GROUPS[group](code):
                r, d = self.home[pid]
                out[{"national": (), "region": (r,), "district": (r, d)}[level], bucket(day)] += 1
        return out

    def census(self) -> Counter:
        """(hospital name, day) -> patients in a bed at midnight: admission day to the day before discharge."""
        out: Counter = Counter()
        for e in self.stays:
            loc = self.names[e["location"][0]["location"]["reference"].split("/")[1]]
            s = dt.date.fromisoformat(e["period"]["start"][:10])
            t = dt.date.fromisoformat(e["period"]["end"][:10])
            for k in range(max((t - s).days, 1)):
                out[loc, s + dt.timedelta(days=k)] += 1
        return out


def _as_counter(found: list[S.Series]) -> Counter:
    return Counter({(s.key, d): c for s in found for d, c in zip(s.dates, s.counts) if c})


@pytest.mark.parametrize("group", sorted(GROUPS))
@pytest.mark.parametrize("level, interval", [("district", "week"), ("region", "month"), ("national", "day")])
def test_series_equal_a_direct_count_of_the_diagnoses(world, group, level, interval) -> None:
    mat, ref, _ = world
    found = S.counts(mat.con, group, level=level, interval=interval, whole=False)
    want = ref.cases(group, level, lambda d: S.bucket_start(d, interval))
    assert want, "nothing to compare"
    assert _as_counter(found) == want
    for s in found:  # regular: consecutive buckets, zeros included
        assert all(S.next_bucket(a, interval) == b for a, b in zip(s.dates, s.dates[1:]))
        assert s.periods[0] == S.label(s.dates[0], interval)


def test_whole_buckets_only_by_default(world) -> None:
    mat, _, _ = world
    first, last = S.record_days(mat.con)
    weeks = S.weekly_counts(mat.con, "ari", level="national")[0]
    assert weeks.dates[0] >= first and weeks.dates[-1] + dt.timedelta(days=6) <= last
    assert weeks.dates[0] - dt.timedelta(days=7) < first  # and none whole left out
    assert S.monthly_counts(mat.con, "ari", level="national")[0].periods[-1] == "2024-12"


def test_the_planted_influenza_season_stands_out(world) -> None:
    mat, _, truth = world
    flu = truth["influenza"]
    (nat,) = S.weekly_counts(mat.con, "ili", level="national")
    by_week = dict(zip(nat.periods, nat.counts))
    planted = flu["planted_by_iso_week"]
    assert sum(planted.values()) > 100
    assert all(by_week[w] >= n for w, n in planted.items())  # the planted episodes are all in the series
    peak = dt.date.fromisoformat(flu["peak_date"])
    season = [(d, c) for d, c in zip(nat.dates, nat.counts)
              if dt.date.fromisoformat(flu["season_start"]) <= d <= dt.date.fromisoformat(flu["season_end"])]
    top = max(season, key=lambda x: x[1])[0]
    assert abs((top - peak).days) <= 14
    before = [c for d, c in zip(nat.dates, nat.counts) if peak.replace(year=peak.year - 1) - dt.timedelta(42) <= d
              <= peak.replace(year=peak.year - 1) + dt.timedelta(42)]
    during = [c for d, c in season if abs((d - peak).days) <= 42]
    assert sum(during) / len(during) > 2 * sum(before) / len(before)


def test_the_measles_cluster_is_in_its_district_only(world) -> None:
    mat, _, truth = world
    m = truth["measles"]
    found = S.weekly_counts(mat.con, "measles", level="district")
    assert len(m["cases"]) >= 3
    assert [s.key for s in found] == [(m["region"], m["district_name"])]
    assert sum(found[0].counts) == len(m["cases"])
    first, last = dt.date.fromisoformat(m["period_start"]), dt.date.fromisoformat(m["period_end"])
    assert all(first - dt.timedelta(6) <= d <= last for d, c in zip(found[0].dates, found[0].counts) if c)


def test_bed_census_equals_the_stays_and_shows_the_crunch(world) -> None:
    mat, ref, truth = world
    census = ref.census()
    hospitals = S.occupancy(mat.con, "hospital")
    assert {h.key[-1] for h in hospitals} == set(ref.beds)
    got = Counter({(h.key[-1], d): c for h in hospitals for d, c in zip(h.dates, h.census) if c})
    assert got == census
    assert {h.key[-1]: h.beds for h in hospitals} == {k: float(v) for k, v in ref.beds.items()}
    regions = S.occupancy(mat.con, "region", bed_scale=0.5)
    assert sum(r.beds for r in regions) == sum(ref.beds.values()) * 0.5
    assert sum(sum(r.census) for r in regions) == sum(census.values())
    crunch = truth["hospital_crunch"]
    site = ref.names[crunch["location"].split("/")[1]]
    (h,) = [h for h in hospitals if h.key[-1] == site]
    start, end = dt.date.fromisoformat(crunch["period_start"]), dt.date.fromisoformat(crunch["period_end"])
    during = [c for d, c in zip(h.dates, h.census) if start <= d <= end]
    before = [c for d, c in zip(h.dates, h.census) if start - dt.timedelta(365) <= d < start]
    assert crunch["planted_admissions"] >= 2  # a sample of 3,000 persons: the crunch is a handful of stays
    assert sum(during) / len(during) > 3 * sum(before) / len(before), (during, sum(before) / len(before))


def test_admissions_per_region(world) -> None:
    mat, ref, _ = world
    found = S.admissions(mat.con, "national", "month", whole=False)
    want = Counter(S.bucket_start(dt.date.fromisoformat(e["period"]["start"][:10]), "month") for e in ref.stays)
    assert dict(zip(found[0].dates, found[0].counts)) == {d: want.get(d, 0) for d in found[0].dates}
    ili = S.admissions(mat.con, "region", "week", syndrome="ili")
    assert 0 < sum(sum(s.counts) for s in ili) < sum(want.values())


def test_the_indicators_api_serves_weeks_months_and_ranges(world) -> None:
    mat, ref, _ = world
    ind = load_indicators()["syndrome_cases"]
    week = ref.cases("ili", "national", lambda d: S.label(d, "week"))
    month = ref.cases("ili", "national", lambda d: S.label(d, "month"))
    r = compute(mat.con, ind, {"syndrome": "ili", "period": "2024-W03"}, threshold=1)
    assert r["interval"] == "week" and r["filters"]["period"] == "2024-W03"
    assert [(f["period"], f["numerator"]) for f in r["figures"]] == [("2024-W03", week[(), "2024-W03"])]
    r = compute(mat.con, ind, {"syndrome": "ili", "period": "2023-11/2024-02"}, threshold=1)
    assert [(f["period"], f["numerator"]) for f in r["figures"]] == [
        (m, month[(), m]) for m in ("2023-11", "2023-12", "2024-01", "2024-02")]
    r = compute(mat.con, ind, {"syndrome": "ili", "period": "2024-01", "interval": "week"}, threshold=1)
    assert [f["period"] for f in r["figures"]][:2] == ["2024-W01", "2024-W02"]  # Jan 2024 starts on a Monday
    r = compute(mat.con, ind, {"syndrome": "ili", "period": "2024-W03", "by": "region"}, threshold=1)
    assert sum(f["numerator"] for f in r["figures"]) == week[(), "2024-W03"]
    assert all(f["value"] == round(f["numerator"] / f["denominator"] * 1e5, 4) for f in r["figures"])
    occ = load_indicators()["bed_occupancy"]
    r = compute(mat.con, occ, {"period": "2024-03-01/2024-03-03", "by": "region"}, threshold=5)
    assert {f["period"] for f in r["figures"]} == {"2024-03-01", "2024-03-02", "2024-03-03"}
    census = ref.census()
    assert sum(f["numerator"] for f in r["figures"] if f["period"] == "2024-03-02") == sum(
        n for (_, d), n in census.items() if d == dt.date(2024, 3, 2))
    for params, where in (({"period": "2024-W54"}, "period"), ({"period": "2024-W01", "interval": "hour"}, "interval"),
                          ({"syndrome": "ili", "period": "2024"}, None)):
        if where is None:
            assert compute(mat.con, ind, params)["interval"] == "week"
            continue
        with pytest.raises(IndicatorError) as err:
            compute(mat.con, ind, params)
        assert err.value.location == where
    with pytest.raises(IndicatorError) as err:
        compute(mat.con, occ, {"interval": "week"})
    assert err.value.location == "interval"
    with pytest.raises(IndicatorError) as err:  # a yearly indicator keeps its year periods
        compute(mat.con, load_indicators()["population"], {"period": "2024-W01"})
    assert err.value.location == "period"


def test_residents_per_place_are_the_homes_of_the_living(world) -> None:
    # The forecaster's rates per 100,000 divide by these: every place a case series has, summing to the
    # nation's, none above the citizens ever homed there (the dead and the unborn of mid-year are not).
    mat, ref, _ = world
    by_region = S.residents(mat.con, "region")
    by_district = S.residents(mat.con, "district")
    (nation,) = S.residents(mat.con, "national").values()
    homes = Counter((r,) for r, _ in ref.home.values())
    assert set(by_region) <= set(homes) and {s.key for s in S.weekly_counts(mat.con, "ili", "region")} <= set(by_region)
    assert sum(by_region.values()) == pytest.approx(nation) == pytest.approx(sum(by_district.values()))
    assert all(0 < n <= homes[k] for k, n in by_region.items())
    assert nation > 0.8 * len(ref.home)
    with pytest.raises(S.SeriesError):
        S.residents(mat.con, "street")


def test_bad_series_requests_are_refused(world) -> None:
    mat, _, _ = world
    for call in (lambda: S.counts(mat.con, "flu"), lambda: S.counts(mat.con, "ili", level="street"),
                 lambda: S.counts(mat.con, "ili", interval="hour"), lambda: S.occupancy(mat.con, "ward")):
        with pytest.raises(S.SeriesError):
            call()
    kinds = Counter(s["kind"] for s in S.syndromes(mat.con))
    assert kinds["chapter"] == 22 and kinds["syndrome"] >= 3 and kinds["notifiable"] >= 20


def test_the_detection_run_raises_the_measles_cluster_to_its_district(world) -> None:
    """twin/surveillance/job.py over these series: the planted cluster's district gets a Communication."""
    from healthtwin.twin.surveillance import job
    mat, _, truth = world
    m = truth["measles"]
    series = job.series_from_analytics(mat.con, ["measles"], level="district")
    summary = job.run(series, job.district_epidemiologist, weeks=30)
    assert summary.raised >= 1
    places = {r["recipient"][0]["identifier"]["value"] for r in summary.resources}
    assert places == {m["district_name"]}

