"""Community energy use cases: sharing, balance, settlement and fairness of a community in the twin.

Each use case reads the community's meters from the twin (:mod:`bright.services.community`), calls
the pure computations of :mod:`bright.energy` and returns plain data (dataclasses holding the pure
results and pandas frames). With ``write=True`` it writes its results back into the twin:

- the shared volumes per quarter-hour and member, as series on each member's ``Meter``
  (``sharedOfftakeKwh`` and ``sharedInjectionKwh``, kWh): the default instance holds the community's
  own method (the DSO's figures), other methods go under the datasetId
  ``urn:ngsi-ld:Dataset:sharing:<method>`` (what-if runs never overwrite the official numbers);
- the community KPIs per day, month or year as SDM ``KeyPerformanceIndicator`` entities, one per
  community, indicator, method (and pricing) and period (:func:`kpi_entity`).

Every bad input (unknown method, missing key or price, mismatched ranges ...) raises
:class:`~bright.services.community.CommunityInputError`, an NGSI-LD ``BadRequestData``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, overload

import numpy as np
import pandas as pd

from bright.energy.balance import Balance, balance, ratio
from bright.energy.fairness import ShapleyResult, compare_with_settlement, shapley
from bright.energy.market import (
    DoubleAuction,
    FixedPrice,
    MidMarket,
    Pricing,
    Settlement,
    Tariff,
    monthly_statements,
    settle,
)
from bright.energy.sharing import (
    EnergyInputError,
    MeterReadings,
    SharingKey,
    SharingMethod,
    SharingResult,
    TariffType,
    share,
)
from bright.services.community import (
    PRICINGS,
    TERMS,
    Community,
    CommunityInputError,
    check_tz,
    community_tariff,
    interval_setting,
    parse_method,
    readings,
)
from bright.twin.errors import InternalError
from bright.twin.vocabulary import bright_context

__all__ = [
    "BALANCE_KPIS",
    "FREQUENCIES",
    "KPI_FREQUENCIES",
    "BalanceReport",
    "FairnessReport",
    "SettlementReport",
    "SharingRun",
    "community_balance",
    "community_fairness",
    "community_settlement",
    "community_sharing",
    "kpi_entity",
    "parse_freq",
    "parse_pricing",
    "sharing_dataset_id",
    "write_results",
    "write_sharing_series",
]

#: Aggregation periods of the API and CLI -> pandas aliases of :func:`bright.energy.balance.balance`.
FREQUENCIES: dict[str, str | None] = {"15min": None, "1h": "h", "1D": "D", "1M": "MS", "1Y": "YS"}
#: Periods for which KPI entities are written -> SDM ``calculationFrequency``.
KPI_FREQUENCIES = {"1D": "daily", "1M": "monthly", "1Y": "yearly"}
_OFFSETS = {"1D": pd.offsets.Day(1), "1M": pd.offsets.MonthBegin(1), "1Y": pd.offsets.YearBegin(1)}

#: Community KPIs of the balance: column -> (display name, UN/CEFACT unit code, description).
BALANCE_KPIS: dict[str, tuple[str, str, str]] = {
    "offtake_kwh": ("Gross offtake", "KWH", "energy taken from the grid by all members"),
    "injection_kwh": ("Gross injection", "KWH", "energy fed into the grid by all members"),
    "shared_kwh": ("Shared energy", "KWH", "energy shared between members, as the DSO allocates it"),
    "residual_offtake_kwh": ("Residual offtake", "KWH", "offtake still bought from suppliers"),
    "residual_injection_kwh": ("Residual injection", "KWH", "injection sold to suppliers (not shared)"),
    "self_consumption_rate": ("Self-consumption rate", "C62", "shared energy / injection"),
    "self_sufficiency": ("Self-sufficiency", "C62", "shared energy / offtake"),
    "peak_offtake_kw": ("Peak offtake", "KWT", "largest quarter-hourly offtake of the community"),
    "peak_net_offtake_kw": ("Peak net offtake", "KWT", "largest quarter-hourly offtake net of injection"),
    "co2_avoided_kg": ("CO2 avoided", "KGM", "shared energy x grid emission factor (kgCO2e)"),
}
#: Community KPIs of the settlement, per month (EUR; no UN/CEFACT code, the unit is in the name).
SETTLEMENT_KPIS: dict[str, tuple[str, str]] = {
    "savings_eur": (
        "Members' savings",
        "what the community saved its members against buying and selling alone",
    ),
    "network_reduction_eur": ("Network-charge reduction", "reduction of network charges on shared energy"),
    "community_purchase_eur": ("Value of shared energy", "what members paid for the shared energy"),
    "community_account_eur": ("Community account", "auction fees and fallback spread kept by the community"),
}
#: Columns of the member rows of a balance, in order.
MEMBER_BALANCE_COLUMNS = (
    "offtake_kwh",
    "injection_kwh",
    "shared_offtake_kwh",
    "shared_injection_kwh",
    "residual_offtake_kwh",
    "residual_injection_kwh",
    "self_consumption_rate",
    "self_sufficiency",
    "peak_offtake_kw",
    "co2_avoided_kg",
)
#: Energy columns of the per-interval sharing table, in order.
INTERVAL_COLUMNS = (
    "offtake_kwh",
    "injection_kwh",
    "shared_offtake_kwh",
    "shared_injection_kwh",
    "residual_offtake_kwh",
    "returned_injection_kwh",
)


@contextmanager
def _energy_errors(community: Community) -> Iterator[None]:
    """Turn the pure computations' input errors into CommunityInputError (HTTP 400)."""
    try:
        yield
    except EnergyInputError as exc:
        raise CommunityInputError(f"community {community.id}: {exc}") from None


def parse_freq(freq: str) -> str:
    """Validate an aggregation period: ``15min``, ``1h``, ``1D``, ``1M`` or ``1Y``.

    Raises
    ------
    CommunityInputError
        For any other value.
    """
    if freq not in FREQUENCIES:
        raise CommunityInputError(f"freq {freq!r} is unknown; use one of {', '.join(FREQUENCIES)}")
    return freq


def parse_pricing(community: Community, pricing: str | None) -> str:
    """The pricing asked, else the community's ``pricingMethod``.

    Raises
    ------
    CommunityInputError
        For an unknown pricing, or none asked and none set on the community.
    """
    chosen = pricing if pricing is not None else community.pricing
    if chosen is None:
        raise CommunityInputError(
            f"community {community.id} has no pricingMethod ({TERMS['pricingMethod']}); "
            f"choose a pricing: {', '.join(PRICINGS)}"
        )
    if chosen not in PRICINGS:
        raise CommunityInputError(f"pricing {chosen!r} is unknown; use one of {', '.join(PRICINGS)}")
    return chosen


# --------------------------------------------------------------------------------------------------
# Sharing
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SharingRun:
    """The sharing of a community over a period.

    Attributes
    ----------
    community : Community
        The community.
    readings : MeterReadings
        Gross offtake and injection per interval and member (kWh), columns = member ids.
    result : SharingResult
        Shared offtake and injection per interval and member (kWh).
    method : SharingMethod
        The allocation method used.
    key : SharingKey or None
        The fixed key used (keyed methods).
    group_type : TariffType
        Brussels tariff type of the community (A-D).
    series_written : int
        Values written to the twin's series (0 unless ``write=True``).
    """

    community: Community
    readings: MeterReadings
    result: SharingResult
    method: SharingMethod
    key: SharingKey | None
    group_type: TariffType
    series_written: int = 0

    @property
    def index(self) -> pd.DatetimeIndex:
        """Interval starts (UTC)."""
        assert self.readings.index is not None
        return self.readings.index

    @property
    def start(self) -> pd.Timestamp:
        """Start of the period (UTC)."""
        return pd.Timestamp(self.index[0])

    @property
    def end(self) -> pd.Timestamp:
        """End of the period, exclusive (UTC)."""
        return pd.Timestamp(self.index[-1]) + self.community.resolution

    def interval_frame(self, *, tz: str = "UTC") -> pd.DataFrame:
        """The allocation per interval and member, as the DSO publishes it (long format).

        Parameters
        ----------
        tz : str
            Zone of the ``interval_start`` column.

        Returns
        -------
        pandas.DataFrame
            Columns ``interval_start`` (tz-aware), ``member_id``, ``access_point_id`` and the kWh
            columns of :data:`INTERVAL_COLUMNS`; one row per interval and member, interval-major.
        """
        r = self.result
        n_t, n_m = r.offtake_kwh.shape
        data: dict[str, Any] = {
            "interval_start": np.repeat(self.index.tz_convert(tz), n_m),
            "member_id": np.tile(np.array(self.community.member_ids, dtype=object), n_t),
            "access_point_id": np.tile(
                np.array([m.access_point_id for m in self.community.members], dtype=object), n_t
            ),
        }
        values = (
            r.offtake_kwh,
            r.injection_kwh,
            r.shared_offtake_kwh,
            r.shared_injection_kwh,
            r.residual_offtake_kwh,
            r.returned_injection_kwh,
        )
        for name, array in zip(INTERVAL_COLUMNS, values, strict=True):
            data[name] = array.reshape(-1)
        return pd.DataFrame(data)

    def member_totals(self) -> pd.DataFrame:
        """Totals per member over the period (kWh); NaN when an interval was not shared.

        Returns
        -------
        pandas.DataFrame
            Index ``member_id``; columns of :data:`INTERVAL_COLUMNS`, ``self_sufficiency`` and
            ``self_consumption_rate`` (dimensionless).
        """
        r = self.result
        frame = pd.DataFrame(
            {
                "offtake_kwh": r.offtake_kwh.sum(axis=0),
                "injection_kwh": r.injection_kwh.sum(axis=0),
                "shared_offtake_kwh": r.shared_offtake_kwh.sum(axis=0),
                "shared_injection_kwh": r.shared_injection_kwh.sum(axis=0),
                "residual_offtake_kwh": r.residual_offtake_kwh.sum(axis=0),
                "returned_injection_kwh": r.returned_injection_kwh.sum(axis=0),
            },
            index=pd.Index(self.community.member_ids, name="member_id"),
        )
        frame["self_sufficiency"] = ratio(frame["shared_offtake_kwh"], frame["offtake_kwh"])
        frame["self_consumption_rate"] = ratio(frame["shared_injection_kwh"], frame["injection_kwh"])
        return frame


def _method(community: Community, method: SharingMethod | str | None) -> SharingMethod:
    if method is not None:
        return method if isinstance(method, SharingMethod) else parse_method(method)
    if community.sharing_method is None:
        raise CommunityInputError(
            f"community {community.id} has no sharingMethod; choose a method: "
            f"{', '.join(m.value for m in SharingMethod)}"
        )
    return community.sharing_method


def community_sharing(
    community: Community,
    *,
    start: Any = None,
    end: Any = None,
    method: SharingMethod | str | None = None,
    write: bool = False,
    workers: int = 1,
) -> SharingRun:
    """Allocate the community's injection to its members per interval, as the DSO does.

    Parameters
    ----------
    community : Community
        The community (:func:`bright.services.community.load_community`).
    start, end : timezone-aware timestamp or ISO 8601 string, optional
        Period ``[start, end)``; default: the span every member's readings cover.
    method : SharingMethod or str, optional
        Allocation method; default the community's ``sharingMethod``. The keyed methods (fixed,
        fixed_multi_round, hybrid) use the community's ``sharingKey``.
    write : bool
        Write the shared volumes (kWh per interval) to each member's Meter in the series store.
    workers : int
        Threads for the allocation (results do not depend on it).

    Returns
    -------
    SharingRun

    Raises
    ------
    CommunityInputError
        No method, a keyed method without a key, a key giving a share to a producer-only member,
        and every error of :func:`bright.services.community.readings`.
    """
    chosen = _method(community, method)
    key = None
    if chosen in (SharingMethod.FIXED, SharingMethod.FIXED_MULTI_ROUND, SharingMethod.HYBRID):
        key = community.sharing_key
        if key is None:
            raise CommunityInputError(
                f"the {chosen.value} method needs a sharing key; community {community.id} has no "
                f"sharingKey ({TERMS['sharingKey']}: {{member id: percent}})"
            )
    data = readings(community, start, end)
    with _energy_errors(community):
        result = share(
            data,
            chosen,
            key=key,
            access_points=community.access_points(),
            fixed_fraction=community.hybrid_fixed_fraction,
            workers=workers,
        )
    run = SharingRun(community, data, result, chosen, key, community.group_type)
    if write:
        run = replace(run, series_written=write_sharing_series(run))
    return run


def sharing_dataset_id(community: Community, method: SharingMethod) -> str | None:
    """datasetId of the sharing series of ``method``: None (default instance) for the community's own
    method, ``urn:ngsi-ld:Dataset:sharing:<method>`` for any other."""
    return None if method == community.sharing_method else f"urn:ngsi-ld:Dataset:sharing:{method.value}"


def write_sharing_series(run: SharingRun) -> int:
    """Write the shared offtake and injection (kWh per interval) on each member's Meter.

    Attributes ``https://w3id.org/bright/ns#sharedOfftakeKwh`` and ``...#sharedInjectionKwh``,
    unit KWH; intervals that could not be shared (missing readings) are written as missing (NaN).

    Returns
    -------
    int
        Number of values written.
    """
    community = run.community
    dataset = sharing_dataset_id(community, run.method)
    written = 0
    for term, values in (
        ("sharedOfftake", run.result.shared_offtake_kwh),
        ("sharedInjection", run.result.shared_injection_kwh),
    ):
        frame = pd.DataFrame(values, index=run.index, columns=pd.Index(community.meter_ids), copy=False)
        res = community.series.write(
            frame, tenant=community.tenant, attribute=TERMS[term], dataset_id=dataset, unit_code="KWH"
        )
        written += res.values
    return written


# --------------------------------------------------------------------------------------------------
# KPI entities
# --------------------------------------------------------------------------------------------------


def _slug(community_id: str) -> str:
    prefix = "urn:ngsi-ld:EnergyCommunity:"
    return community_id[len(prefix) :] if community_id.startswith(prefix) else community_id


def kpi_entity(
    community: Community,
    indicator: str,
    value: float,
    *,
    name: str,
    description: str,
    period: tuple[pd.Timestamp, pd.Timestamp],
    label: str,
    frequency: str | None,
    method: SharingMethod,
    unit_code: str | None = None,
    pricing: str | None = None,
    coverage: float | None = None,
) -> dict[str, Any]:
    """One SDM ``KeyPerformanceIndicator`` entity (NGSI-LD normalized, BRIGHT @context).

    Parameters
    ----------
    community : Community
        The community the KPI is about (``refEnergyCommunity``).
    indicator : str
        Machine name of the KPI, unit in the name (``shared_kwh``, ``self_sufficiency``, ``savings_eur``).
    value : float
        The value (``kpiValue``), in the unit of ``unit_code`` / of the name.
    name, description : str
        Human-readable name and definition.
    period : (pandas.Timestamp, pandas.Timestamp)
        ``calculationPeriod`` ``[from, to)``, written in local time with its offset.
    label : str
        Period label in the entity id (``2016-06-01``).
    frequency : str or None
        ``calculationFrequency`` (daily, monthly, yearly), None for a one-off period.
    method : SharingMethod
        Sharing method of the figures (``sharingMethod``).
    unit_code : str, optional
        UN/CEFACT code of ``kpiValue`` (KWH, KWT, KGM, C62 for a ratio).
    pricing : str, optional
        Pricing of settlement KPIs (``pricingMethod``).
    coverage : float, optional
        Share of the period's intervals with complete readings (0..1).

    Returns
    -------
    dict
        The entity; its id is ``urn:ngsi-ld:KeyPerformanceIndicator:<community>:<indicator>:<method>
        [-<pricing>]:<frequency or period>:<label>``, so a re-run replaces it.
    """
    variant = method.value if pricing is None else f"{method.value}-{pricing}"
    eid = f"urn:ngsi-ld:KeyPerformanceIndicator:{_slug(community.id)}:{indicator}:{variant}:{frequency or 'period'}:{label}"
    kpi_value: dict[str, Any] = {"type": "Property", "value": float(value)}
    if unit_code:
        kpi_value["unitCode"] = unit_code
    entity: dict[str, Any] = {
        "id": eid,
        "type": "KeyPerformanceIndicator",
        "name": {"type": "Property", "value": name},
        "description": {"type": "Property", "value": description},
        "category": {"type": "Property", "value": ["quantitative"]},
        "kpiValue": kpi_value,
        "calculationPeriod": {
            "type": "Property",
            "value": {"from": period[0].isoformat(), "to": period[1].isoformat()},
        },
        "sharingMethod": {"type": "Property", "value": method.value},
        TERMS["calculationMethod"]: {"type": "Property", "value": "automatic"},
        TERMS["indicator"]: {"type": "Property", "value": indicator},
        TERMS["refEnergyCommunity"]: {"type": "Relationship", "object": community.id},
    }
    if frequency:
        entity["calculationFrequency"] = {"type": "Property", "value": frequency}
    if pricing is not None:
        entity[TERMS["pricingMethod"]] = {"type": "Property", "value": pricing}
    if coverage is not None and np.isfinite(coverage):
        entity[TERMS["coverage"]] = {"type": "Property", "value": float(coverage)}
    return entity


def _upsert(community: Community, entities: list[dict[str, Any]]) -> tuple[str, ...]:
    if not entities:
        return ()
    res = community.twin.batch_upsert(community.tenant, entities, bright_context())
    if res["errors"]:
        first = res["errors"][0]
        raise InternalError(f"KPI entity {first['entityId']} was rejected: {first['error'].get('detail')}")
    return tuple(res["success"])


def _periods(
    labels: pd.DatetimeIndex, freq: str, start: pd.Timestamp, end: pd.Timestamp
) -> list[tuple[pd.Timestamp, pd.Timestamp, str]]:
    """Each period's [from, to) clipped to the run's range (local zone of ``labels``) and id label."""
    out = []
    offset = _OFFSETS[freq]
    tz = labels.tz
    for label in labels:
        lo = max(label, start.tz_convert(tz))
        hi = min(label + offset, end.tz_convert(tz))
        out.append((lo, hi, label.strftime("%Y-%m-%d")))
    return out


# --------------------------------------------------------------------------------------------------
# Balance
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BalanceReport:
    """Energy balance and KPIs of a community per period.

    Attributes
    ----------
    sharing : SharingRun
        The sharing it is computed from.
    balance : Balance
        The pure result (member frames and community KPIs per period).
    freq : str
        Period: ``15min``, ``1h``, ``1D``, ``1M`` or ``1Y``.
    tz : str
        Zone of the calendar periods and labels.
    kpi_ids : tuple of str
        KPI entities written (``write=True``).
    """

    sharing: SharingRun
    balance: Balance
    freq: str
    tz: str
    kpi_ids: tuple[str, ...] = ()

    def community_frame(self) -> pd.DataFrame:
        """Community KPIs per period: index ``period_start`` (local), columns of the balance."""
        frame = self.balance.community.copy()
        frame.index.name = "period_start"
        return frame

    def members_frame(self) -> pd.DataFrame:
        """Member KPIs per period (long): columns ``period_start``, ``member_id`` and
        :data:`MEMBER_BALANCE_COLUMNS`, period-major."""
        b = self.balance
        parts = {
            name: getattr(b, name).stack(future_stack=True)
            for name in MEMBER_BALANCE_COLUMNS
            if name not in ("self_consumption_rate", "self_sufficiency")
        }
        frame = pd.DataFrame(parts)
        frame["self_consumption_rate"] = ratio(frame["shared_injection_kwh"], frame["injection_kwh"])
        frame["self_sufficiency"] = ratio(frame["shared_offtake_kwh"], frame["offtake_kwh"])
        frame.index = frame.index.set_names(["period_start", "member_id"])
        return frame.reset_index()[["period_start", "member_id", *MEMBER_BALANCE_COLUMNS]]


def community_balance(
    community: Community,
    *,
    start: Any = None,
    end: Any = None,
    freq: str = "1M",
    tz: str = "Europe/Brussels",
    method: SharingMethod | str | None = None,
    emission_factor_kg_per_kwh: float | None = None,
    write: bool = False,
) -> BalanceReport:
    """Energy balance and KPIs of the community and of each member per period.

    Parameters
    ----------
    community : Community
        The community.
    start, end : timezone-aware timestamp or ISO 8601 string, optional
        Period ``[start, end)``; default the span of the readings.
    freq : str
        ``15min`` (native), ``1h``, ``1D``, ``1M`` or ``1Y``; calendar periods are cut in ``tz``.
    tz : str
        IANA zone of the periods (local days have 92 or 100 quarter-hours on DST days).
    method : SharingMethod or str, optional
        Sharing method; default the community's.
    emission_factor_kg_per_kwh : float, optional
        Grid emission factor (kgCO2e/kWh); default the community's ``emissionFactor`` (constant or
        series); without one the CO2 figures are NaN (unknown, not 0).
    write : bool
        Write the sharing series and one KPI entity per community KPI and period (``freq`` must
        then be ``1D``, ``1M`` or ``1Y``). A KPI whose value is NaN (missing data) is not written.

    Returns
    -------
    BalanceReport

    Raises
    ------
    CommunityInputError
        Unknown ``freq``, ``write`` with a sub-daily ``freq``, and the errors of
        :func:`community_sharing`.
    """
    parse_freq(freq)
    if write:
        _check_kpi_freq(freq)
    check_tz(tz)
    run = community_sharing(community, start=start, end=end, method=method)
    factor: Any = emission_factor_kg_per_kwh
    if factor is None:
        factor = interval_setting(community, "emissionFactor", run.index)
    with _energy_errors(community):
        result = balance(
            run.result,
            freq=FREQUENCIES[freq],
            tz=tz,
            emission_factor_kg_per_kwh=np.nan if factor is None else factor,
            interval_length_h=community.resolution / pd.Timedelta(hours=1),
        )
    report = BalanceReport(run, result, freq, tz)
    return write_results(report) if write else report


def _write_balance_kpis(report: BalanceReport) -> tuple[str, ...]:
    run, frame = report.sharing, report.community_frame()
    periods = _periods(pd.DatetimeIndex(frame.index), report.freq, run.start, run.end)
    entities = []
    for (lo, hi, label), (_, row) in zip(periods, frame.iterrows(), strict=True):
        for indicator, (name, unit, description) in BALANCE_KPIS.items():
            value = float(row[indicator])
            if not np.isfinite(value):
                continue
            entities.append(
                kpi_entity(
                    run.community,
                    indicator,
                    value,
                    name=name,
                    description=f"{description} ({run.method.value} sharing)",
                    period=(lo, hi),
                    label=label,
                    frequency=KPI_FREQUENCIES[report.freq],
                    method=run.method,
                    unit_code=unit,
                    coverage=float(row["coverage"]),
                )
            )
    return _upsert(run.community, entities)


# --------------------------------------------------------------------------------------------------
# Settlement
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SettlementReport:
    """The settlement of the shared energy of a community over a period.

    Attributes
    ----------
    sharing : SharingRun
        The sharing that was settled.
    settlement : Settlement
        The pure result: money flows per interval and member (EUR).
    pricing : str
        ``fixed``, ``mid_market`` or ``auction``.
    tariff : Tariff
        Outside prices used (EUR/kWh).
    statements : pandas.DataFrame
        Monthly statement lines per (local month, member) (:func:`bright.energy.market.monthly_statements`).
    tz : str
        Zone of the months.
    kpi_ids : tuple of str
        KPI entities written (``write=True``).
    """

    sharing: SharingRun
    settlement: Settlement
    pricing: str
    tariff: Tariff
    statements: pd.DataFrame
    tz: str
    kpi_ids: tuple[str, ...] = ()

    def member_totals(self) -> pd.DataFrame:
        """The statement lines summed over the months, per member (NaN if a month is NaN)."""
        lines = self.statements.drop(columns=["coverage"])
        return (
            lines.groupby(level="member_id", sort=False)
            .sum(min_count=1)
            .where(~lines.isna().groupby(level="member_id", sort=False).any())
        )

    def community_totals(self) -> dict[str, float]:
        """Community figures over the period: sums of the member lines (EUR, kWh), the community
        account (EUR) and, for an auction, the matched volume (kWh) and its mean price (EUR/kWh)."""
        totals = self.member_totals().sum(axis=0, skipna=False)  # a missing member total stays missing
        out = {name: float(totals[name]) for name in totals.index}
        out["community_account_eur"] = float(self.settlement.community_account_eur.sum())
        auction = self.settlement.auction
        if auction is not None:
            matched = float(auction.matched_buy_kwh.sum())
            paid = float(np.nansum(auction.matched_buy_kwh.sum(axis=1) * auction.price_eur_per_kwh))
            out["auction_matched_kwh"] = matched
            out["auction_mean_price_eur_per_kwh"] = paid / matched if matched > 0 else float("nan")
        return out


def _pricing(
    community: Community, pricing: str, index: pd.DatetimeIndex, community_price: float | None
) -> Pricing:
    if pricing == "fixed":
        price = (
            community_price
            if community_price is not None
            else interval_setting(community, "communityPrice", index)
        )
        if price is None:
            raise CommunityInputError(
                f"fixed pricing needs a community price; community {community.id} has no communityPrice "
                f"({TERMS['communityPrice']}, EUR/kWh)"
            )
        return FixedPrice(price)
    if pricing == "mid_market":
        return MidMarket()
    bids = {m.id: m.bid_eur_per_kwh for m in community.members if m.bid_eur_per_kwh is not None}
    asks = {m.id: m.ask_eur_per_kwh for m in community.members if m.ask_eur_per_kwh is not None}
    for side, prices, term in (("buyer", bids, "bidPrice"), ("seller", asks, "askPrice")):
        if not prices:
            raise CommunityInputError(
                f"the auction has no {side}: no member of {community.id} has a {term} ({TERMS[term]}, EUR/kWh)"
            )
    fee = interval_setting(community, "auctionFee", index)
    return DoubleAuction(bids, asks, 0.0 if fee is None else fee)


def _settle(
    run: SharingRun,
    pricing: str,
    *,
    tz: str,
    prices: Mapping[str, float | None],
) -> SettlementReport:
    community = run.community
    tariff = community_tariff(
        community,
        run.index,
        supplier_energy_eur_per_kwh=prices.get("supplier_energy_eur_per_kwh"),
        feed_in_eur_per_kwh=prices.get("feed_in_eur_per_kwh"),
        grid_fee_eur_per_kwh=prices.get("grid_fee_eur_per_kwh"),
    )
    rule = _pricing(community, pricing, run.index, prices.get("community_price_eur_per_kwh"))
    with _energy_errors(community):
        settlement = settle(run.result, tariff, rule, group_type=run.group_type)
        statements = monthly_statements(settlement, tz=tz)
    return SettlementReport(run, settlement, pricing, tariff, statements, tz)


def community_settlement(
    community: Community,
    *,
    start: Any = None,
    end: Any = None,
    method: SharingMethod | str | None = None,
    pricing: str | None = None,
    tz: str = "Europe/Brussels",
    supplier_energy_eur_per_kwh: float | None = None,
    feed_in_eur_per_kwh: float | None = None,
    grid_fee_eur_per_kwh: float | None = None,
    community_price_eur_per_kwh: float | None = None,
    write: bool = False,
) -> SettlementReport:
    """Price the shared energy and draw up the monthly statements of every member.

    Parameters
    ----------
    community : Community
        The community.
    start, end : timezone-aware timestamp or ISO 8601 string, optional
        Period ``[start, end)``; default the span of the readings.
    method : SharingMethod or str, optional
        Sharing method; default the community's.
    pricing : str, optional
        ``fixed`` (the community price), ``mid_market`` (half-way between supplier price and feed-in
        value) or ``auction`` (members' bid/ask prices, quarter-hourly double auction); default the
        community's ``pricingMethod``.
    tz : str
        Zone in which months are cut.
    supplier_energy_eur_per_kwh, feed_in_eur_per_kwh, grid_fee_eur_per_kwh, community_price_eur_per_kwh : float, optional
        Constant prices (EUR/kWh) overriding the community's.
    write : bool
        Write the sharing series and the monthly settlement KPIs (members' savings, network-charge
        reduction, value of shared energy, community account; EUR).

    Returns
    -------
    SettlementReport

    Raises
    ------
    CommunityInputError
        Unknown pricing, missing prices (the attribute is named), an auction without bids or asks,
        and the errors of :func:`community_sharing`.
    """
    check_tz(tz)
    chosen = parse_pricing(community, pricing)
    run = community_sharing(community, start=start, end=end, method=method)
    report = _settle(
        run,
        chosen,
        tz=tz,
        prices={
            "supplier_energy_eur_per_kwh": supplier_energy_eur_per_kwh,
            "feed_in_eur_per_kwh": feed_in_eur_per_kwh,
            "grid_fee_eur_per_kwh": grid_fee_eur_per_kwh,
            "community_price_eur_per_kwh": community_price_eur_per_kwh,
        },
    )
    return write_results(report) if write else report


def _write_settlement_kpis(report: SettlementReport) -> tuple[str, ...]:
    run = report.sharing
    by_month = report.statements.drop(columns=["coverage"]).groupby(level="month").sum(min_count=1)
    gaps = report.statements.isna().groupby(level="month").any()
    coverage = report.statements["coverage"].groupby(level="month").first()
    rows = pd.DatetimeIndex(run.index.tz_convert(report.tz))
    per_interval = pd.Series(report.settlement.community_account_eur, index=rows)
    account = per_interval.resample("MS", label="left", closed="left").sum()
    account = account.mask(per_interval.isna().resample("MS", label="left", closed="left").sum() > 0)
    months = pd.DatetimeIndex(by_month.index)
    periods = _periods(months, "1M", run.start, run.end)
    entities = []
    for (lo, hi, label), month in zip(periods, months, strict=True):
        values: dict[str, Any] = {
            "savings_eur": by_month.at[month, "savings_eur"],
            "network_reduction_eur": by_month.at[month, "network_reduction_eur"],
            "community_purchase_eur": by_month.at[month, "community_eur"],
            "community_account_eur": account.get(month, np.nan),
        }
        for indicator, (name, description) in SETTLEMENT_KPIS.items():
            value = float(values[indicator])
            if not np.isfinite(value) or (indicator != "community_account_eur" and gaps.loc[month].any()):
                continue
            entities.append(
                kpi_entity(
                    run.community,
                    indicator,
                    value,
                    name=name,
                    description=f"{description} ({run.method.value} sharing, {report.pricing} pricing)",
                    period=(lo, hi),
                    label=label,
                    frequency="monthly",
                    method=run.method,
                    pricing=report.pricing,
                    coverage=float(coverage.get(month, np.nan)),
                )
            )
    return _upsert(run.community, entities)


# --------------------------------------------------------------------------------------------------
# Fairness
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FairnessReport:
    """Each member's Shapley value of the community's savings beside what the settlement paid it.

    Attributes
    ----------
    settlement : SettlementReport
        The settlement of the same period (its ``sharing`` is the run).
    shapley : ShapleyResult
        The pure result (EUR over the period, with its 95 % interval).
    comparison : pandas.DataFrame
        Per member: shapley_eur, ci95_low_eur, ci95_high_eur, settled_savings_eur,
        settled_minus_shapley_eur (:func:`bright.energy.fairness.compare_with_settlement`).
    kpi_ids : tuple of str
        KPI entities written (``write=True``).
    """

    settlement: SettlementReport
    shapley: ShapleyResult
    comparison: pd.DataFrame
    kpi_ids: tuple[str, ...] = ()

    @property
    def sharing(self) -> SharingRun:
        """The sharing of the period."""
        return self.settlement.sharing

    @property
    def gap_eur(self) -> float:
        """Sum over members of |settled savings - Shapley value| (EUR): 0 when the settlement pays
        every member exactly its Shapley value."""
        return float(self.comparison["settled_minus_shapley_eur"].abs().sum())


def community_fairness(
    community: Community,
    *,
    start: Any = None,
    end: Any = None,
    method: SharingMethod | str | None = None,
    pricing: str | None = None,
    tz: str = "Europe/Brussels",
    exact_max_members: int = 18,
    n_permutations: int = 500,
    seed: int = 0,
    supplier_energy_eur_per_kwh: float | None = None,
    feed_in_eur_per_kwh: float | None = None,
    grid_fee_eur_per_kwh: float | None = None,
    community_price_eur_per_kwh: float | None = None,
    write: bool = False,
) -> FairnessReport:
    """Shapley value of each member in the community's savings, beside its settled savings.

    Parameters
    ----------
    community : Community
        The community.
    start, end : timezone-aware timestamp or ISO 8601 string, optional
        Period ``[start, end)``; default the span of the readings.
    method : SharingMethod or str, optional
        Sharing method (inside every coalition too); default the community's.
    pricing : str, optional
        Pricing of the settlement compared with; default the community's ``pricingMethod``.
    tz : str
        Zone of the settlement's months.
    exact_max_members : int
        Exact enumeration of all coalitions up to this many members (cost doubles per member);
        random join orders beyond.
    n_permutations : int
        Join orders sampled beyond ``exact_max_members`` (>= 2).
    seed : int
        Seed of the sampler.
    supplier_energy_eur_per_kwh, feed_in_eur_per_kwh, grid_fee_eur_per_kwh, community_price_eur_per_kwh : float, optional
        Constant prices (EUR/kWh) overriding the community's.
    write : bool
        Write the sharing series and two KPI entities for the period: the community's savings
        v(N) (``shapley_total_eur``) and the gap between settlement and Shapley values
        (``settlement_shapley_gap_eur``, see :attr:`FairnessReport.gap_eur`).

    Returns
    -------
    FairnessReport

    Raises
    ------
    CommunityInputError
        Bad sampling parameters, and the errors of :func:`community_settlement`.
    """
    if exact_max_members < 0:
        raise CommunityInputError(f"exact_max_members must be >= 0, got {exact_max_members}")
    if n_permutations < 2:
        raise CommunityInputError(f"n_permutations must be >= 2, got {n_permutations}")
    settlement = community_settlement(
        community,
        start=start,
        end=end,
        method=method,
        pricing=pricing,
        tz=tz,
        supplier_energy_eur_per_kwh=supplier_energy_eur_per_kwh,
        feed_in_eur_per_kwh=feed_in_eur_per_kwh,
        grid_fee_eur_per_kwh=grid_fee_eur_per_kwh,
        community_price_eur_per_kwh=community_price_eur_per_kwh,
    )
    run = settlement.sharing
    with _energy_errors(community):
        values = shapley(
            run.readings,
            settlement.tariff,
            method=run.method,
            key=run.key,
            access_points=community.access_points(),
            fixed_fraction=community.hybrid_fixed_fraction,
            exact_max_members=exact_max_members,
            n_permutations=n_permutations,
            seed=seed,
        )
        comparison = compare_with_settlement(values, settlement.settlement)
    report = FairnessReport(settlement, values, comparison)
    return write_results(report) if write else report


def _write_fairness_kpis(report: FairnessReport) -> tuple[str, ...]:
    run = report.sharing
    lo, hi = run.start.tz_convert(report.settlement.tz), run.end.tz_convert(report.settlement.tz)
    label = f"{lo.strftime('%Y-%m-%dT%H%M')}_{hi.strftime('%Y-%m-%dT%H%M')}"
    how = "exact" if report.shapley.exact else f"sampled, {report.shapley.n_permutations} join orders"
    figures = {
        "shapley_total_eur": (
            "Community savings (Shapley total)",
            f"savings of the whole community v(N), shared out by Shapley values ({how})",
            report.shapley.grand_coalition_eur,
        ),
        "settlement_shapley_gap_eur": (
            "Settlement-Shapley gap",
            "sum over members of |settled savings - Shapley value|; 0 = the settlement pays each its Shapley value",
            report.gap_eur,
        ),
    }
    entities = [
        kpi_entity(
            run.community,
            indicator,
            value,
            name=name,
            description=f"{description} ({run.method.value} sharing, {report.settlement.pricing} pricing)",
            period=(lo, hi),
            label=label,
            frequency=None,
            method=run.method,
            pricing=report.settlement.pricing,
            coverage=1.0 - report.shapley.excluded_intervals / max(len(run.index), 1),
        )
        for indicator, (name, description, value) in figures.items()
        if np.isfinite(value)
    ]
    return _upsert(run.community, entities)


# --------------------------------------------------------------------------------------------------
# Writing results
# --------------------------------------------------------------------------------------------------


def _check_kpi_freq(freq: str) -> None:
    if freq not in KPI_FREQUENCIES:
        raise CommunityInputError(
            f"KPI entities are written per day, month or year: use freq {', '.join(KPI_FREQUENCIES)}, not {freq!r}"
        )


@overload
def write_results(report: BalanceReport, *, series: bool = True) -> BalanceReport: ...
@overload
def write_results(report: SettlementReport, *, series: bool = True) -> SettlementReport: ...
@overload
def write_results(report: FairnessReport, *, series: bool = True) -> FairnessReport: ...


def write_results(
    report: BalanceReport | SettlementReport | FairnessReport, *, series: bool = True
) -> BalanceReport | SettlementReport | FairnessReport:
    """Write a report's results into the twin: the sharing series and its KPI entities.

    Parameters
    ----------
    report : BalanceReport, SettlementReport or FairnessReport
        A computed report (compute first, write once everything succeeded).
    series : bool
        Also write the shared volumes per interval on the members' Meters
        (:func:`write_sharing_series`).

    Returns
    -------
    BalanceReport, SettlementReport or FairnessReport
        The same report with ``kpi_ids`` (and ``sharing.series_written``) filled in; a fairness
        report writes the settlement's monthly KPIs too.

    Raises
    ------
    CommunityInputError
        A balance whose ``freq`` is finer than a day.
    """
    if isinstance(report, BalanceReport):
        _check_kpi_freq(report.freq)
    run = report.sharing
    if series:
        run = replace(run, series_written=write_sharing_series(run))
    if isinstance(report, BalanceReport):
        return replace(report, sharing=run, kpi_ids=_write_balance_kpis(report))
    if isinstance(report, SettlementReport):
        return replace(report, sharing=run, kpi_ids=_write_settlement_kpis(report))
    settlement = replace(report.settlement, sharing=run, kpi_ids=_write_settlement_kpis(report.settlement))
    return replace(report, settlement=settlement, kpi_ids=_write_fairness_kpis(report))
