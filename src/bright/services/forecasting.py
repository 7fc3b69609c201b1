"""Day-ahead forecasts of a community in the twin: per member, for the community, stored and served.

This use case reads a community from the twin (:mod:`bright.services.community`), calls the pure
forecasting computations of :mod:`bright.energy.forecast`, and writes the results back:

- **what is forecast.** Per member, its ``consumption`` behind the meter and, for members that
  control a ``PhotovoltaicDevice``, its PV ``production`` (kWh per quarter-hour, quantiles 0.1 / 0.5 /
  0.9). The histories are rebuilt from the access point, gross and >= 0 as the DSO meters them::

      production  = sum of the PV devices' production series       (when metered)
                  = injection                                      (otherwise: what the meter sees)
      consumption = offtake - injection + production               (= offtake without PV)

  The community forecasts are the sums of the members' (``bottom_up`` reconciliation of
  :func:`bright.energy.forecast.hierarchy.reconcile_forecasts`): the community median equals the
  sum of the member medians at every quarter-hour; its band is the community model's own band
  re-centred on that sum (summing member quantiles would not be a quantile of the sum).
- **models.** One model per member and quantity (and one for each community total), trained with
  :func:`bright.energy.forecast.select.train_member_model` on the history known at the issue time and
  stored with its backtest scores in the table ``forecast_models`` (migration step 40). A stored
  model is reused until it is older than ``max_model_age_days`` (then retrained) or on demand
  (``retrain=True``). Its scores come from a rolling-origin backtest over the ``score_days`` full days
  before the issue (the model trained once at the start of that window, against seasonal naive).
  A day in the past of a stored model gets a model trained for that issue time, not stored.
- **forecasts in the twin.** Each target and quantity has one long-lived ``Forecast`` entity
  (:func:`forecast_entity_id`) describing the latest issue (issue time, model, horizon, quantile
  levels, reason for a fallback, daily totals per quantile), and its quantile series in the
  :class:`~bright.twin.series.SeriesStore` on that entity: attribute ``consumptionKwh`` /
  ``productionKwh``, datasetIds ``urn:ngsi-ld:Dataset:forecast:q10`` / ``q50`` / ``q90``, unit KWH.
  Every issue is also logged in ``forecast_issues`` (step 41), so the model and reason of any
  past delivery day stay known after the entity moved on.

Days are local days of the community (Europe/Brussels by default); the day-ahead forecast of day
D is issued on D-1 at 12:00 local and sees the readings known then. Without a ``day``, the day
after the last complete day of readings is forecast (in a live node: tomorrow).

Errors are :class:`~bright.services.community.CommunityInputError` (HTTP 400 ProblemDetails) or
:class:`~bright.twin.errors.ResourceNotFound` (404), naming the member, the quantity or the day.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal

import numpy as np
import pandas as pd
from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    delete,
    select,
)

from bright.energy.forecast.backtest import BacktestResult, Predictor, Trainer, rolling_origin
from bright.energy.forecast.baselines import (
    QUANTILES,
    Forecast,
    persistence,
    profile_average,
    seasonal_naive,
)
from bright.energy.forecast.features import (
    BRUSSELS,
    HistoryError,
    LeakageError,
    Site,
    day_ahead_issue_time,
    delivery_day_index,
)
from bright.energy.forecast.gbm import LoadModel
from bright.energy.forecast.hierarchy import ReconciliationError, reconcile_forecasts
from bright.energy.forecast.pv import PVModel, PVSystem, pv_reference_forecast
from bright.energy.forecast.select import forecast_member, train_member_model
from bright.services.community import (
    BRIGHT_NS,
    TERMS,
    Community,
    CommunityInputError,
    readings,
    readings_span,
)
from bright.twin import migrations
from bright.twin.errors import InternalError, ResourceNotFound
from bright.twin.vocabulary import bright_context

__all__ = [
    "DATASETS",
    "FORECAST_TERMS",
    "QUANTITIES",
    "BacktestReport",
    "ForecastRun",
    "ModelStore",
    "StoredModel",
    "TargetForecast",
    "backtest_member",
    "community_site",
    "dataset_id",
    "default_day",
    "forecast_day",
    "forecast_entity_id",
    "histories",
    "member_devices",
    "parse_day",
    "pv_system_of",
    "stored_forecast",
    "train_models",
]

Quantity = Literal["consumption", "production"]
#: Forecast quantities: consumption behind the meter (load model) and PV production (PV model).
QUANTITIES: tuple[str, ...] = ("consumption", "production")
KIND: dict[str, Literal["load", "pv"]] = {"consumption": "load", "production": "pv"}
RESOLUTION = pd.Timedelta(minutes=15)
HORIZON = "day-ahead"
#: Quantile level -> NGSI-LD datasetId of its series on the Forecast entity.
DATASETS: dict[float, str] = {q: f"urn:ngsi-ld:Dataset:forecast:q{round(q * 100):02d}" for q in QUANTILES}
#: History read before the issue time: the models' 365-day window plus their longest lags.
HISTORY_DAYS = 400
_ONE_US = pd.Timedelta(microseconds=1)


def dataset_id(level: float) -> str:
    """The datasetId of a quantile level's series (``urn:ngsi-ld:Dataset:forecast:q10`` for 0.1)."""
    return f"urn:ngsi-ld:Dataset:forecast:q{round(level * 100):02d}"


def _iri(term: str) -> str:
    return bright_context().expand(term)


#: Attributes of the Forecast entities: short name -> IRI (BRIGHT namespace; not yet @context terms).
FORECAST_TERMS: dict[str, str] = {
    "consumption": BRIGHT_NS + "consumptionKwh",
    "production": BRIGHT_NS + "productionKwh",
    "forecastOf": BRIGHT_NS + "forecastOf",
    "refEnergyCommunity": TERMS["refEnergyCommunity"],
    "quantity": BRIGHT_NS + "forecastQuantity",
    "issuedAt": BRIGHT_NS + "issuedAt",
    "horizon": BRIGHT_NS + "forecastHorizon",
    "deliveryDay": BRIGHT_NS + "deliveryDay",
    "validFrom": BRIGHT_NS + "validFrom",
    "validTo": BRIGHT_NS + "validTo",
    "model": BRIGHT_NS + "forecastModel",
    "reason": BRIGHT_NS + "forecastReason",
    "quantileLevels": BRIGHT_NS + "quantileLevels",
    "totalKwh": BRIGHT_NS + "forecastTotalKwh",
    "modelTrainedUntil": BRIGHT_NS + "modelTrainedUntil",
    "modelScores": BRIGHT_NS + "modelScores",
}


# --------------------------------------------------------------------------------------------------
# Model store (migration steps 40 and 41)
# --------------------------------------------------------------------------------------------------

metadata = MetaData()
_ID = BigInteger().with_variant(Integer(), "sqlite")

models_table = Table(
    "forecast_models",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("tenant", String(128), nullable=False),
    Column("target_id", Text, nullable=False),  # member (EnergyProsumer) or EnergyCommunity id
    Column("quantity", String(32), nullable=False),
    Column("kind", String(8), nullable=False),  # load | pv
    Column("model", String(32), nullable=False),  # gbm | pv_gbm
    Column("trained_from_us", BigInteger, nullable=False),
    Column("trained_until_us", BigInteger, nullable=False),
    Column("created_us", BigInteger, nullable=False),
    Column("reason", Text, nullable=False),
    Column("scores", Text, nullable=False),  # JSON: metric -> value
    Column("blob", LargeBinary, nullable=False),  # LoadModel / PVModel .to_bytes()
    UniqueConstraint("tenant", "target_id", "quantity", name="uq_forecast_models_key"),
)

issues_table = Table(
    "forecast_issues",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("tenant", String(128), nullable=False),
    Column("entity_id", Text, nullable=False),  # the Forecast entity
    Column("delivery_day", String(10), nullable=False),  # local YYYY-MM-DD
    Column("issue_us", BigInteger, nullable=False),
    Column("model", String(64), nullable=False),
    Column("reason", Text, nullable=False),
    Column("created_us", BigInteger, nullable=False),
    UniqueConstraint("tenant", "entity_id", "delivery_day", name="uq_forecast_issues_key"),
)


def _create_models(conn: Connection) -> None:
    models_table.create(conn, checkfirst=True)


def _create_issues(conn: Connection) -> None:
    issues_table.create(conn, checkfirst=True)


migrations.register(40, "forecasting: trained models per member and their backtest scores", _create_models)
migrations.register(41, "forecasting: log of issued forecasts per delivery day", _create_issues)


def _us(ts: pd.Timestamp) -> int:
    return int((pd.Timestamp(ts).tz_convert("UTC") - pd.Timestamp(0, tz="UTC")) // _ONE_US)


def _ts(us: int) -> pd.Timestamp:
    return pd.Timestamp(int(us), unit="us", tz="UTC")


@dataclass(frozen=True)
class StoredModel:
    """A trained model of one target and quantity, as kept in the node's database.

    Attributes
    ----------
    target_id : str
        Entity id of the member (``EnergyProsumer``) or of the ``EnergyCommunity``.
    quantity : str
        ``consumption`` or ``production``.
    kind : str
        ``load`` or ``pv``.
    model : str
        ``gbm`` (load) or ``pv_gbm`` (PV correction).
    trained_from, trained_until : pandas.Timestamp
        First training target and end of the training data (UTC).
    created : pandas.Timestamp
        When it was stored (UTC).
    reason : str
        What the training said (period, usable history).
    scores : dict of str to float
        Backtest scores: ``days``, ``mae`` (kWh per interval), ``rmae``, ``skill`` (vs seasonal naive),
        ``pinball`` (kWh per interval), ``coverage`` (of the 80 % interval), ``reference_mae``.
    blob : bytes
        The serialised model.
    """

    target_id: str
    quantity: str
    kind: str
    model: str
    trained_from: pd.Timestamp
    trained_until: pd.Timestamp
    created: pd.Timestamp
    reason: str
    scores: dict[str, float]
    blob: bytes = field(repr=False)

    def load(self) -> LoadModel | PVModel:
        """The model object (:class:`LoadModel` or :class:`PVModel`)."""
        return LoadModel.from_bytes(self.blob) if self.kind == "load" else PVModel.from_bytes(self.blob)

    def age(self, at: pd.Timestamp) -> pd.Timedelta:
        """How old the training data is at ``at``: ``at - trained_until``."""
        return pd.Timestamp(at).tz_convert("UTC") - self.trained_until


class ModelStore:
    """Trained forecasting models per tenant, target and quantity (one current model each).

    Parameters
    ----------
    engine : sqlalchemy.Engine
        The node's database (SQLite or PostgreSQL).
    create : bool
        Apply pending migrations (creates ``forecast_models`` and ``forecast_issues``).
    """

    def __init__(self, engine: Engine, *, create: bool = True) -> None:
        self.engine = engine
        if create:
            migrations.migrate(engine)

    def save(self, tenant: str, model: StoredModel) -> None:
        """Store ``model``, replacing the previous model of its target and quantity."""
        t = models_table
        row = {
            "tenant": tenant,
            "target_id": model.target_id,
            "quantity": model.quantity,
            "kind": model.kind,
            "model": model.model,
            "trained_from_us": _us(model.trained_from),
            "trained_until_us": _us(model.trained_until),
            "created_us": _us(model.created),
            "reason": model.reason,
            "scores": json.dumps(_finite_scores(model.scores)),
            "blob": model.blob,
        }
        with self.engine.begin() as conn:
            conn.execute(
                delete(t).where(
                    and_(
                        t.c.tenant == tenant, t.c.target_id == model.target_id, t.c.quantity == model.quantity
                    )
                )
            )
            conn.execute(t.insert().values(**row))

    def get(self, tenant: str, target_id: str, quantity: str) -> StoredModel | None:
        """The stored model of a target and quantity, or None."""
        found = self.list(tenant, target_ids=[target_id], quantity=quantity)
        return found[0] if found else None

    def list(
        self, tenant: str, *, target_ids: Sequence[str] | None = None, quantity: str | None = None
    ) -> list[StoredModel]:
        """Stored models of a tenant (optionally of some targets / one quantity), by target and quantity."""
        t = models_table
        q = select(t).where(t.c.tenant == tenant).order_by(t.c.target_id, t.c.quantity)
        if target_ids is not None:
            q = q.where(t.c.target_id.in_(list(target_ids)))
        if quantity is not None:
            q = q.where(t.c.quantity == quantity)
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        return [
            StoredModel(
                target_id=r.target_id,
                quantity=r.quantity,
                kind=r.kind,
                model=r.model,
                trained_from=_ts(r.trained_from_us),
                trained_until=_ts(r.trained_until_us),
                created=_ts(r.created_us),
                reason=r.reason,
                scores={k: float(v) for k, v in json.loads(r.scores).items() if v is not None},
                blob=bytes(r.blob),
            )
            for r in rows
        ]

    def update_scores(self, tenant: str, target_id: str, quantity: str, scores: Mapping[str, float]) -> bool:
        """Merge ``scores`` into a stored model's scores; False when there is no such model."""
        stored = self.get(tenant, target_id, quantity)
        if stored is None:
            return False
        merged = {**stored.scores, **dict(scores)}
        t = models_table
        with self.engine.begin() as conn:
            conn.execute(
                t.update()
                .where(and_(t.c.tenant == tenant, t.c.target_id == target_id, t.c.quantity == quantity))
                .values(scores=json.dumps(_finite_scores(merged)))
            )
        return True

    def log_issue(
        self, tenant: str, entity_id: str, day: date, issue: pd.Timestamp, model: str, reason: str
    ) -> None:
        """Record (or replace) the issue of a Forecast entity for a delivery day."""
        t = issues_table
        with self.engine.begin() as conn:
            conn.execute(
                delete(t).where(
                    and_(
                        t.c.tenant == tenant, t.c.entity_id == entity_id, t.c.delivery_day == day.isoformat()
                    )
                )
            )
            conn.execute(
                t.insert().values(
                    tenant=tenant,
                    entity_id=entity_id,
                    delivery_day=day.isoformat(),
                    issue_us=_us(issue),
                    model=model[:64],
                    reason=reason,
                    created_us=_us(pd.Timestamp.now(tz="UTC")),
                )
            )

    def issues(
        self, tenant: str, entity_ids: Sequence[str], day: date
    ) -> dict[str, tuple[pd.Timestamp, str, str]]:
        """Logged issues of a delivery day: entity id -> (issue time, model, reason)."""
        t = issues_table
        q = select(t).where(
            and_(
                t.c.tenant == tenant, t.c.delivery_day == day.isoformat(), t.c.entity_id.in_(list(entity_ids))
            )
        )
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        return {r.entity_id: (_ts(r.issue_us), r.model, r.reason) for r in rows}


def _num(value: Any) -> float:
    """A pandas cell as a float (NaN when it is missing)."""
    return float(value) if value is not None else float("nan")


def _finite_scores(scores: Mapping[str, float]) -> dict[str, float | None]:
    return {k: (float(v) if v is not None and math.isfinite(float(v)) else None) for k, v in scores.items()}


# --------------------------------------------------------------------------------------------------
# The community as the forecasts see it: site, devices, histories
# --------------------------------------------------------------------------------------------------


def _instances(doc: Mapping[str, Any], iri: str) -> list[dict[str, Any]]:
    return list(doc.get("attrs", {}).get(iri, []))


def attr_value(doc: Mapping[str, Any], term: str) -> Any:
    """Value of the default instance of attribute ``term`` (short term or IRI) of a stored entity."""
    iri = term if "://" in term else _iri(term)
    found = _instances(doc, iri)
    if not found:
        return None
    inst = next((i for i in found if "datasetId" not in i), found[0])
    for key in ("value", "object", "json", "vocab", "valueList", "objectList"):
        if key in inst:
            return inst[key]
    return None


def attr_objects(doc: Mapping[str, Any], term: str) -> list[str]:
    """Objects of a relationship ``term`` (every instance, one or many objects each)."""
    iri = term if "://" in term else _iri(term)
    out: list[str] = []
    for inst in _instances(doc, iri):
        obj = inst.get("object", inst.get("objectList"))
        if isinstance(obj, list):
            out.extend(str(o) for o in obj)
        elif obj is not None:
            out.append(str(obj))
    return list(dict.fromkeys(out))


def member_devices(community: Community) -> dict[str, list[dict[str, Any]]]:
    """The devices each member ``controls`` (stored entity documents), in member order.

    Devices are found through the member's ``controls`` relationship (SDM EnergyProsumer); an object
    that does not exist is an error naming the member.

    Raises
    ------
    CommunityInputError
        A member controls an entity that is not in the twin.
    """
    twin, tenant = community.twin, community.tenant
    docs = twin.store.get_many(tenant, list(community.member_ids))
    wanted = {m: attr_objects(docs.get(m, {}), "controls") for m in community.member_ids}
    every = [d for ids in wanted.values() for d in ids]
    found = twin.store.get_many(tenant, every) if every else {}
    out: dict[str, list[dict[str, Any]]] = {}
    for m, ids in wanted.items():
        missing = [d for d in ids if d not in found]
        if missing:
            raise CommunityInputError(f"member {m} controls {missing[0]}, which is not in the twin")
        out[m] = [found[d] for d in ids]
    return out


def is_type(doc: Mapping[str, Any], type_term: str) -> bool:
    """Whether a stored entity has the type ``type_term`` (short term of the BRIGHT @context)."""
    return _iri(type_term) in doc.get("type", [])


def community_site(community: Community) -> Site:
    """Where the community is, for the clock, the holidays and the sun.

    The ``location`` of the ``EnergyCommunity`` (a GeoJSON Point, lon/lat) gives the position; the
    clock is the members' ``timezone`` (Europe/Brussels when not set), the holidays Belgian.
    Without a location, Brussels.
    """
    doc = community.twin.store.get(community.tenant, community.id) or {}
    loc = attr_value(doc, "location")
    tz = BRUSSELS.tz
    members = community.twin.store.get_many(community.tenant, list(community.member_ids[:1]))
    for d in members.values():
        zone = attr_value(d, "timezone")
        if isinstance(zone, str) and zone:
            tz = zone
    if isinstance(loc, Mapping) and loc.get("type") == "Point":
        coords = loc.get("coordinates") or []
        if len(coords) >= 2 and all(isinstance(c, int | float) for c in coords[:2]):
            try:
                return Site(
                    latitude_deg=float(coords[1]), longitude_deg=float(coords[0]), altitude_m=100.0, tz=tz
                )
            except ValueError as exc:
                raise CommunityInputError(f"location of {community.id}: {exc}") from None
    return Site(BRUSSELS.latitude_deg, BRUSSELS.longitude_deg, BRUSSELS.altitude_m, tz=tz)


def pv_system_of(devices: Sequence[Mapping[str, Any]], site: Site) -> PVSystem | None:
    """The member's PV as one installation: kWp summed over its ``PhotovoltaicDevice``\\ s, tilt and
    azimuth of the largest (35 deg / south when not given); None without PV."""
    pvs = [d for d in devices if is_type(d, "PhotovoltaicDevice")]
    if not pvs:
        return None
    sizes = [float(attr_value(d, "peakPower") or 0.0) for d in pvs]
    largest = pvs[int(np.argmax(sizes))]
    tilt = attr_value(largest, "tilt")
    azimuth = attr_value(largest, "azimuth")
    return PVSystem(
        kwp=float(sum(sizes)),
        tilt_deg=35.0 if tilt is None else float(tilt),
        azimuth_deg=180.0 if azimuth is None else float(azimuth),
        site=site,
    )


def parse_day(value: Any) -> date:
    """A delivery day from ``YYYY-MM-DD`` (or a date).

    Raises
    ------
    CommunityInputError
        If the value is not a calendar date.
    """
    if isinstance(value, date) and not isinstance(value, pd.Timestamp):
        return value
    text = str(value).strip()
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise CommunityInputError(f"day {value!r} is not a date YYYY-MM-DD") from None


def default_day(community: Community, tz: str) -> date:
    """The local day after the last complete day of readings (in a live node: tomorrow).

    Raises
    ------
    CommunityInputError
        If the community has no readings.
    """
    span = readings_span(community)
    if span is None:
        raise CommunityInputError(
            f"community {community.id} has no common readings to forecast from (offtake and injection of "
            "every member)"
        )
    last = (span[1] - _ONE_US).tz_convert(tz)
    return (last.normalize() + pd.Timedelta(days=1)).date()


@dataclass(frozen=True)
class History:
    """The measured history of one target and quantity (kWh per interval, UTC starts; NaN missing).

    Attributes
    ----------
    target_id, quantity : str
        Member or community id; ``consumption`` or ``production``.
    values : pandas.Series
        kWh per interval.
    pv_system : PVSystem or None
        The installation (production).
    note : str
        How the history was made (e.g. PV not metered: injection used).
    """

    target_id: str
    quantity: str
    values: pd.Series
    pv_system: PVSystem | None = None
    note: str = ""


def histories(
    community: Community,
    start: pd.Timestamp,
    end: pd.Timestamp,
    *,
    site: Site,
    devices: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
) -> dict[tuple[str, str], History]:
    """Consumption and production histories of every member over ``[start, end)``.

    Parameters
    ----------
    community : Community
        The community.
    start, end : pandas.Timestamp
        UTC bounds on the 15-minute grid, inside the readings' span.
    site : Site
        The community's site (PV systems are placed there).
    devices : mapping, optional
        Member id -> device documents (:func:`member_devices`; read when omitted).

    Returns
    -------
    dict
        ``(member id, quantity) -> History``; ``production`` only for members with PV.

    Raises
    ------
    CommunityInputError
        Readings that cannot be read, or a consumption that comes out negative (injection above
        offtake plus production: the PV metering is inconsistent; member and interval named).
    """
    devs = member_devices(community) if devices is None else devices
    r = readings(community, start, end)
    index = r.index
    assert index is not None
    offtake = pd.DataFrame(r.offtake_kwh, index=index, columns=list(r.member_ids))
    injection = pd.DataFrame(r.injection_kwh, index=index, columns=list(r.member_ids))
    production_iri = _iri("production")
    metered = {
        info.entity_id
        for info in community.series.series(community.tenant, attribute=production_iri)
        if info.dataset_id is None and info.first is not None
    }
    pv_ids = [
        d["id"] for m in community.member_ids for d in devs.get(m, []) if is_type(d, "PhotovoltaicDevice")
    ]
    prod_frame = (
        community.series.read(
            [p for p in pv_ids if p in metered], production_iri, start, end, tenant=community.tenant
        ).reindex(index)
        if any(p in metered for p in pv_ids)
        else pd.DataFrame(index=index)
    )
    out: dict[tuple[str, str], History] = {}
    for m in community.member_ids:
        pv = pv_system_of(devs.get(m, []), site)
        own = [d["id"] for d in devs.get(m, []) if is_type(d, "PhotovoltaicDevice")]
        note = ""
        if pv is None:
            production = None
            consumption = offtake[m]
            if np.nansum(injection[m].to_numpy()) > 0:
                note = "injection without a PhotovoltaicDevice is not forecast"
        else:
            if own and all(p in metered for p in own):
                production = prod_frame[own].sum(axis=1, min_count=len(own))
                prod_note = "PV production metered"
            else:
                production = injection[m]
                prod_note = "PV production not metered: the injection is used (a lower bound)"
            consumption = offtake[m] - injection[m] + production
            low = consumption < -1e-6
            if low.any():
                t = consumption.index[np.flatnonzero(low.to_numpy())[0]]
                raise CommunityInputError(
                    f"member {m}: injection {injection[m].loc[t]:.4f} kWh at {t.isoformat()} exceeds offtake "
                    f"plus PV production ({production.loc[t]:.4f} kWh); check the PV production series"
                )
            consumption = consumption.clip(lower=0.0)
            note = prod_note
            out[(m, "production")] = History(m, "production", production.rename(m), pv, prod_note)
        out[(m, "consumption")] = History(m, "consumption", consumption.rename(m), None, note)
    return out


# --------------------------------------------------------------------------------------------------
# Training and scoring
# --------------------------------------------------------------------------------------------------


def _baseline_trainer(fn: Callable[..., Forecast], tz: str) -> Trainer:
    def train(known: pd.Series, issue: pd.Timestamp) -> Predictor:
        def predict(h: pd.Series, i: pd.Timestamp, t: pd.DatetimeIndex) -> Forecast:
            return fn(h, i, t, tz=tz)

        return predict

    return train


def _learned_trainer(h: History, site: Site) -> Trainer:
    kind = KIND[h.quantity]

    def train(known: pd.Series, issue: pd.Timestamp) -> Predictor:
        outcome = train_member_model(
            known, until=issue, kind=kind, site=site, pv_system=h.pv_system, member=h.target_id
        )
        model = outcome.model

        def predict(hist: pd.Series, i: pd.Timestamp, t: pd.DatetimeIndex) -> Forecast:
            return forecast_member(
                hist, i, HORIZON, kind=kind, model=model, site=site, pv_system=h.pv_system, member=h.target_id
            )

        return predict

    return train


def _physical_trainer(system: PVSystem) -> Trainer:
    def train(known: pd.Series, issue: pd.Timestamp) -> Predictor:
        def predict(hist: pd.Series, i: pd.Timestamp, t: pd.DatetimeIndex) -> Forecast:
            return pv_reference_forecast(system, hist if len(hist.dropna()) else None, i, t)

        return predict

    return train


def _score(h: History, issue: pd.Timestamp, site: Site, days: int) -> dict[str, float]:
    """Rolling-origin scores of the product path over the ``days`` full local days before the issue."""
    issue_day = issue.tz_convert(site.tz).normalize().tz_localize(None)
    first = issue_day - pd.Timedelta(days=days)
    delivery = pd.date_range(first, issue_day - pd.Timedelta(days=1), freq="D")
    known = h.values.loc[h.values.index < issue]
    trainers = {
        "seasonal_naive": _baseline_trainer(seasonal_naive, site.tz),
        "model": _learned_trainer(h, site),
    }
    try:
        res = rolling_origin(known, trainers, days=delivery, tz=site.tz, retrain_every_days=days + 1)
        table = res.scores()
    except (ValueError, HistoryError, LeakageError):
        return {"days": 0.0}
    if "model" not in table.index:
        return {"days": 0.0}
    ref = _num(table.at["seasonal_naive", "mae"]) if "seasonal_naive" in table.index else float("nan")
    out = {
        k: _num(table.at["model", k]) for k in ("days", "mae", "rmae", "skill", "pinball", "crps", "coverage")
    }
    return {**out, "reference_mae": ref}


def _train(h: History, issue: pd.Timestamp, site: Site, score_days: int) -> tuple[StoredModel | None, str]:
    kind = KIND[h.quantity]
    y = h.values.loc[h.values.index < issue]
    outcome = train_member_model(
        y, until=issue, kind=kind, site=site, pv_system=h.pv_system, member=h.target_id
    )
    if outcome.model is None:
        return None, outcome.reason
    m = outcome.model
    scores = _score(h, issue, site, score_days) if score_days > 0 else {}
    m.scores = dict(scores)
    stored = StoredModel(
        target_id=h.target_id,
        quantity=h.quantity,
        kind=kind,
        model="gbm" if kind == "load" else "pv_gbm",
        trained_from=m.trained_from,
        trained_until=m.trained_until,
        created=pd.Timestamp.now(tz="UTC"),
        reason=outcome.reason,
        scores=scores,
        blob=m.to_bytes(),
    )
    return stored, outcome.reason


def train_models(
    community: Community,
    *,
    day: Any = None,
    members: Sequence[str] | None = None,
    score_days: int = 7,
    models: ModelStore | None = None,
) -> list[StoredModel]:
    """Train (on demand) and store the models of the members (and the community totals).

    Parameters
    ----------
    community : Community
        The community.
    day : str or date, optional
        Train as for the day-ahead forecast of this local day (data up to D-1 12:00); default the
        day after the readings.
    members : sequence of str, optional
        Only these members (no community totals); default every member and the community.
    score_days : int
        Days of the rolling-origin backtest stored with each model (0: none).
    models : ModelStore, optional
        Where the models go (default: a store on the community's database).

    Returns
    -------
    list of StoredModel
        The models trained and stored (targets whose history is too short are skipped).
    """
    run = forecast_day(
        community,
        day=day,
        members=members,
        retrain=True,
        score_days=score_days,
        write=False,
        models=models,
    )
    return list(run.trained)


# --------------------------------------------------------------------------------------------------
# Forecasting
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TargetForecast:
    """The forecast of one target (member or community) and quantity.

    Attributes
    ----------
    target_id : str
        Member (``EnergyProsumer``) or ``EnergyCommunity`` id.
    level : str
        ``member`` or ``community``.
    quantity : str
        ``consumption`` or ``production``.
    forecast : Forecast
        Quantiles in kWh per interval, model, reason, issue time.
    entity_id : str
        Its ``Forecast`` entity in the twin.
    model_scores : dict of str to float
        Backtest scores of the stored model used (empty for a fallback).
    model_trained_until : pandas.Timestamp or None
        End of the training data of the model used.
    """

    target_id: str
    level: str
    quantity: str
    forecast: Forecast
    entity_id: str
    model_scores: dict[str, float] = field(default_factory=dict)
    model_trained_until: pd.Timestamp | None = None


@dataclass(frozen=True)
class ForecastRun:
    """The day-ahead forecasts of a community for one delivery day.

    Attributes
    ----------
    community : Community
        The community.
    day : datetime.date
        Local delivery day.
    tz : str
        Local clock.
    issue_time : pandas.Timestamp
        D-1 12:00 local, in UTC.
    targets : pandas.DatetimeIndex
        The day's quarter-hours (UTC starts; 92, 96 or 100).
    forecasts : tuple of TargetForecast
        Members first, then the community totals.
    trained : tuple of StoredModel
        Models trained (and stored) by this run.
    entities : tuple of str
        Forecast entities written (empty unless written).
    series_written : int
        Values written to the series store.
    elapsed_s : float
        Wall time of the run, s.
    """

    community: Community
    day: date
    tz: str
    issue_time: pd.Timestamp
    targets: pd.DatetimeIndex
    forecasts: tuple[TargetForecast, ...]
    trained: tuple[StoredModel, ...] = ()
    entities: tuple[str, ...] = ()
    series_written: int = 0
    elapsed_s: float = 0.0

    def get(self, target_id: str, quantity: str = "consumption") -> TargetForecast:
        """The forecast of a target and quantity.

        Raises
        ------
        ResourceNotFound
            If the run has none.
        """
        for f in self.forecasts:
            if f.target_id == target_id and f.quantity == quantity:
                return f
        raise ResourceNotFound(f"no {quantity} forecast of {target_id} for {self.day.isoformat()}")

    def frame(
        self, quantity: str = "consumption", level: float = 0.5, *, members_only: bool = False
    ) -> pd.DataFrame:
        """One quantile of every target as columns (kWh per interval), index = the day's quarter-hours."""
        cols = {
            f.target_id: f.forecast.quantile(level)
            for f in self.forecasts
            if f.quantity == quantity and (not members_only or f.level == "member")
        }
        return pd.DataFrame(cols, index=self.targets)


def forecast_entity_id(target_id: str, quantity: str) -> str:
    """Id of the Forecast entity of a target and quantity.

    ``urn:ngsi-ld:EnergyProsumer:c1:home01`` and ``consumption`` give
    ``urn:ngsi-ld:Forecast:EnergyProsumer:c1:home01:consumption``.
    """
    tail = target_id[len("urn:ngsi-ld:") :] if target_id.startswith("urn:ngsi-ld:") else target_id
    return f"urn:ngsi-ld:Forecast:{tail}:{quantity}"


def _check_members(community: Community, members: Sequence[str] | None) -> list[str]:
    if members is None:
        return list(community.member_ids)
    out = [community.member(m).id for m in members]  # ResourceNotFound for an unknown member
    return list(dict.fromkeys(out))


def _model_for(
    h: History,
    issue: pd.Timestamp,
    site: Site,
    store: ModelStore,
    tenant: str,
    *,
    retrain: bool,
    max_age: pd.Timedelta,
    score_days: int,
    trained: list[StoredModel],
) -> tuple[StoredModel | None, str]:
    """The model to forecast with: stored if fresh, else trained now (stored unless for a past day)."""
    stored = store.get(tenant, h.target_id, h.quantity)
    usable = stored is not None and stored.trained_until <= issue
    if usable and not retrain and stored is not None and stored.age(issue) <= max_age:
        return stored, ""
    fresh, why = _train(h, issue, site, score_days)
    if fresh is None:
        if usable and stored is not None:
            return (
                stored,
                f"retraining failed ({why}); the stored model of {stored.trained_until.date()} is used",
            )
        return None, why
    if stored is None or stored.trained_until <= fresh.trained_until:
        store.save(tenant, fresh)
        trained.append(fresh)
        return fresh, ""
    # A day before the stored model's data: use a model for that issue time, keep the newer one.
    return fresh, "model trained for this past issue time (not stored)"


def _forecast_target(
    h: History, issue: pd.Timestamp, site: Site, model: StoredModel | None, note: str
) -> Forecast:
    kind = KIND[h.quantity]
    obj = model.load() if model is not None else None
    f = forecast_member(
        h.values, issue, HORIZON, kind=kind, model=obj, site=site, pv_system=h.pv_system, member=h.target_id
    )
    reason = "; ".join(x for x in (f.reason, h.note, note) if x)
    return Forecast(f.quantiles, f.issue_time, f.model, reason=reason, member=h.target_id)


def forecast_day(
    community: Community,
    *,
    day: Any = None,
    members: Sequence[str] | None = None,
    retrain: bool = False,
    max_model_age_days: float = 7.0,
    score_days: int = 7,
    write: bool = True,
    models: ModelStore | None = None,
    history_days: int = HISTORY_DAYS,
) -> ForecastRun:
    """Forecast a delivery day for the members and the community, and write it to the twin.

    Parameters
    ----------
    community : Community
        The community (:func:`bright.services.community.load_community`).
    day : str or date, optional
        Local delivery day ``YYYY-MM-DD``; default :func:`default_day` (tomorrow in a live node).
    members : sequence of str, optional
        Only these members (entity id, meter id or EAN); the community totals are made only when
        every member is forecast.
    retrain : bool
        Retrain every model now instead of reusing stored ones.
    max_model_age_days : float
        A stored model whose training data ends more than this many days before the issue is
        retrained (days).
    score_days : int
        Days of the rolling-origin backtest stored with a newly trained model (0: none).
    write : bool
        Write the Forecast entities, their quantile series and the issue log.
    models : ModelStore, optional
        The model store (default: one on the community's database).
    history_days : int
        Days of readings read before the issue time (the models use up to 365 plus lags).

    Returns
    -------
    ForecastRun

    Raises
    ------
    CommunityInputError
        Bad day, no readings before the issue time, inconsistent PV metering.
    ResourceNotFound
        An unknown member.
    """
    t0 = time.perf_counter()
    site = community_site(community)
    tz = site.tz
    d = default_day(community, tz) if day is None else parse_day(day)
    ids = _check_members(community, members)
    whole = set(ids) == set(community.member_ids)
    if max_model_age_days < 0 or not math.isfinite(max_model_age_days):
        raise CommunityInputError(f"max_model_age_days must be >= 0, got {max_model_age_days}")
    if score_days < 0:
        raise CommunityInputError(f"score_days must be >= 0, got {score_days}")
    issue = day_ahead_issue_time(d, tz=tz)
    targets = delivery_day_index(d, tz=tz)
    span = readings_span(community)
    if span is None or span[0] >= issue:
        covered = "none" if span is None else f"{span[0].isoformat()} .. {span[1].isoformat()}"
        raise CommunityInputError(
            f"no readings of community {community.id} before the issue time {issue.isoformat()} of "
            f"{d.isoformat()} (readings cover {covered})"
        )
    start = max(span[0], (issue - pd.Timedelta(days=history_days)).floor(RESOLUTION))
    end = min(span[1], issue.floor(RESOLUTION))
    devices = member_devices(community)
    hist = histories(community, start, end, site=site, devices=devices)
    store = models if models is not None else ModelStore(community.twin.engine)
    max_age = pd.Timedelta(days=max_model_age_days)
    trained: list[StoredModel] = []
    results: list[TargetForecast] = []
    by_quantity: dict[str, dict[str, Forecast]] = {q: {} for q in QUANTITIES}
    used: dict[tuple[str, str], StoredModel | None] = {}
    for m in ids:
        for q in QUANTITIES:
            h = hist.get((m, q))
            if h is None:
                continue
            model, note = _model_for(
                h, issue, site, store, community.tenant,
                retrain=retrain, max_age=max_age, score_days=score_days, trained=trained,
            )  # fmt: skip
            by_quantity[q][m] = _forecast_target(h, issue, site, model, note)
            used[(m, q)] = model
    community_fc: dict[str, Forecast] = {}
    if whole:
        for q in QUANTITIES:
            fcs = by_quantity[q]
            if not fcs:
                continue
            total = pd.concat([hist[(m, q)].values for m in fcs], axis=1).sum(axis=1, min_count=len(fcs))
            h = History(community.id, q, total.rename(community.id), _total_pv(hist, fcs, site))
            model, note = _model_for(
                h, issue, site, store, community.tenant,
                retrain=retrain, max_age=max_age, score_days=score_days, trained=trained,
            )  # fmt: skip
            own = _forecast_target(h, issue, site, model, note)
            used[(community.id, q)] = model
            try:
                rec_members, rec_total = reconcile_forecasts(
                    fcs,
                    community=own,
                    method="bottom_up",
                    tz=tz,
                    community_name=community.id,
                    lower_bound=0.0,
                )
            except ReconciliationError as exc:
                raise InternalError(
                    f"community {community.id}: {q} forecasts do not reconcile: {exc}"
                ) from None
            by_quantity[q] = rec_members
            community_fc[q] = Forecast(
                rec_total.quantiles,
                rec_total.issue_time,
                rec_total.model,
                reason=f"{rec_total.reason}; community model: {own.model} ({own.reason})",
                member=community.id,
            )
    for m in ids:
        for q in QUANTITIES:
            if m in by_quantity[q]:
                results.append(_target(m, "member", q, by_quantity[q][m], used.get((m, q))))
    for q, f in community_fc.items():
        results.append(_target(community.id, "community", q, f, used.get((community.id, q))))
    run = ForecastRun(community, d, tz, issue, targets, tuple(results), tuple(trained))
    if write:
        entities, written = _write(run, store)
        run = ForecastRun(
            community, d, tz, issue, targets, tuple(results), tuple(trained), entities, written,
            time.perf_counter() - t0,
        )  # fmt: skip
    else:
        run = ForecastRun(
            community, d, tz, issue, targets, tuple(results), tuple(trained), (), 0, time.perf_counter() - t0
        )
    return run


def _total_pv(hist: Mapping[tuple[str, str], History], members: Iterable[str], site: Site) -> PVSystem | None:
    systems = [hist[(m, "production")].pv_system for m in members if (m, "production") in hist]
    systems_ok = [s for s in systems if s is not None]
    if not systems_ok:
        return None
    largest = max(systems_ok, key=lambda s: s.kwp)
    return PVSystem(
        kwp=float(sum(s.kwp for s in systems_ok)),
        tilt_deg=largest.tilt_deg,
        azimuth_deg=largest.azimuth_deg,
        site=site,
    )


def _target(target: str, level: str, quantity: str, f: Forecast, model: StoredModel | None) -> TargetForecast:
    return TargetForecast(
        target_id=target,
        level=level,
        quantity=quantity,
        forecast=f,
        entity_id=forecast_entity_id(target, quantity),
        model_scores=dict(model.scores) if model is not None else {},
        model_trained_until=model.trained_until if model is not None else None,
    )


# --------------------------------------------------------------------------------------------------
# Writing and reading back
# --------------------------------------------------------------------------------------------------


def _iso(ts: pd.Timestamp) -> str:
    return pd.Timestamp(ts).tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


def _prop(value: Any, unit: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "Property", "value": value}
    if unit:
        out["unitCode"] = unit
    return out


def forecast_entity(run: ForecastRun, tf: TargetForecast) -> dict[str, Any]:
    """The ``Forecast`` entity of one target and quantity (NGSI-LD normalized, BRIGHT @context).

    Attributes (IRIs of :data:`FORECAST_TERMS`): ``forecastOf`` (the member or community),
    ``refEnergyCommunity``, ``forecastQuantity``, ``issuedAt``, ``forecastHorizon`` (day-ahead),
    ``deliveryDay``, ``validFrom``/``validTo`` (UTC), ``forecastModel`` and ``forecastReason`` (which
    model made it and why the ones before were skipped), ``quantileLevels``, ``forecastTotalKwh``
    (the day's total per quantile, one instance per datasetId, unit KWH), and the stored model's
    ``modelTrainedUntil`` and ``modelScores`` when one was used. The quarter-hourly quantiles are
    series of ``consumptionKwh``/``productionKwh`` on this entity (:data:`DATASETS`).
    """
    f = tf.forecast
    step = RESOLUTION
    ft = FORECAST_TERMS
    totals = f.quantiles.sum(axis=0, min_count=len(f.quantiles))
    entity: dict[str, Any] = {
        "id": tf.entity_id,
        "type": "Forecast",
        "name": _prop(f"Day-ahead {tf.quantity} forecast of {tf.target_id}"),
        ft["forecastOf"]: {"type": "Relationship", "object": tf.target_id},
        ft["refEnergyCommunity"]: {"type": "Relationship", "object": run.community.id},
        ft["quantity"]: _prop(tf.quantity),
        ft["issuedAt"]: _prop(_iso(f.issue_time)),
        ft["horizon"]: _prop(HORIZON),
        ft["deliveryDay"]: _prop(run.day.isoformat()),
        ft["validFrom"]: _prop(_iso(run.targets[0])),
        ft["validTo"]: _prop(_iso(run.targets[-1] + step)),
        ft["model"]: _prop(f.model),
        ft["reason"]: _prop(f.reason or "-"),
        ft["quantileLevels"]: _prop([float(v) for v in f.levels]),
    }
    known = [lv for lv in f.quantiles.columns if np.isfinite(totals[lv])]
    if known:  # a day with a missing quarter-hour has no total (NaN is not written as a value)
        entity[ft["totalKwh"]] = [
            {**_prop(round(float(totals[lv]), 6), "KWH"), "datasetId": dataset_id(float(lv))} for lv in known
        ]
    if tf.model_trained_until is not None:
        entity[ft["modelTrainedUntil"]] = _prop(_iso(tf.model_trained_until))
    if tf.model_scores:
        entity[ft["modelScores"]] = _prop(_finite_scores(tf.model_scores))
    return entity


def _write(run: ForecastRun, store: ModelStore) -> tuple[tuple[str, ...], int]:
    community = run.community
    entities = [forecast_entity(run, tf) for tf in run.forecasts]
    if not entities:
        return (), 0
    res = community.twin.batch_upsert(community.tenant, entities, bright_context())
    if res["errors"]:
        first = res["errors"][0]
        raise InternalError(
            f"Forecast entity {first['entityId']} was rejected: {first['error'].get('detail')}"
        )
    parts = []
    for tf in run.forecasts:
        q = tf.forecast.quantiles
        for lv in q.columns:
            parts.append(
                pd.DataFrame(
                    {
                        "entity_id": tf.entity_id,
                        "time": q.index,
                        "value": q[lv].to_numpy(dtype="float64"),
                        "attribute": FORECAST_TERMS[tf.quantity],
                        "dataset_id": dataset_id(float(lv)),
                    }
                )
            )
    written = community.series.write(
        pd.concat(parts, ignore_index=True), tenant=community.tenant, unit_code="KWH"
    )
    for tf in run.forecasts:
        store.log_issue(
            community.tenant,
            tf.entity_id,
            run.day,
            tf.forecast.issue_time,
            tf.forecast.model,
            tf.forecast.reason,
        )
    return tuple(res["success"]), written.values


def stored_forecast(
    community: Community,
    *,
    day: Any = None,
    members: Sequence[str] | None = None,
    quantities: Sequence[str] = QUANTITIES,
    models: ModelStore | None = None,
    require: bool = True,
) -> ForecastRun:
    """The forecasts of a delivery day as stored in the twin (no computation).

    Parameters
    ----------
    community : Community
        The community.
    day : str or date, optional
        Local delivery day; default :func:`default_day`.
    members : sequence of str, optional
        Only these members (and no community totals).
    quantities : sequence of str
        Quantities to read.
    models : ModelStore, optional
        Where the issue log is.
    require : bool
        Raise :class:`ResourceNotFound` when nothing is stored for the day (else an empty run).

    Returns
    -------
    ForecastRun
        The stored quantiles, with the model and reason logged for that day.

    Raises
    ------
    ResourceNotFound
        Nothing stored for the day (with ``require``), or an unknown member.
    CommunityInputError
        Bad day or quantity.
    """
    for q in quantities:
        if q not in QUANTITIES:
            raise CommunityInputError(f"quantity {q!r} is unknown; use one of {', '.join(QUANTITIES)}")
    site = community_site(community)
    tz = site.tz
    d = default_day(community, tz) if day is None else parse_day(day)
    ids = _check_members(community, members)
    whole = members is None
    targets = delivery_day_index(d, tz=tz)
    store = models if models is not None else ModelStore(community.twin.engine)
    wanted = [(m, "member", q) for m in ids for q in quantities]
    if whole:
        wanted += [(community.id, "community", q) for q in quantities]
    entity_ids = [forecast_entity_id(t, q) for t, _, q in wanted]
    log = store.issues(community.tenant, entity_ids, d)
    out: list[TargetForecast] = []
    end = targets[-1] + RESOLUTION
    for target, level, q in wanted:
        eid = forecast_entity_id(target, q)
        if eid not in log:
            continue
        issue, model_name, reason = log[eid]
        cols = {}
        for lv, ds in DATASETS.items():
            s = community.series.read(
                eid, FORECAST_TERMS[q], targets[0], end, tenant=community.tenant, dataset_id=ds
            )
            cols[lv] = s[eid].reindex(targets)
        frame = pd.DataFrame(cols, index=targets)
        out.append(
            TargetForecast(
                target, level, q, Forecast(frame, issue, model_name, reason=reason, member=target), eid
            )
        )
    if require and not out:
        raise ResourceNotFound(
            f"no forecast of community {community.id} is stored for {d.isoformat()}; POST to "
            f"/api/communities/{community.id}/forecast to make one"
        )
    issue = max((tf.forecast.issue_time for tf in out), default=day_ahead_issue_time(d, tz=tz))
    return ForecastRun(community, d, tz, pd.Timestamp(issue), targets, tuple(out))


# --------------------------------------------------------------------------------------------------
# Backtest on demand
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BacktestReport:
    """A rolling-origin backtest of one member's quantity.

    Attributes
    ----------
    member_id, quantity : str
        What was backtested.
    days : pandas.DatetimeIndex
        Local delivery days.
    scores : pandas.DataFrame
        Index = model (``seasonal_naive``, ``persistence``, ``profile_average`` / ``pv_physical``,
        ``gbm`` / ``pv_gbm``); columns ``mae`` and ``pinball`` (kWh per interval), ``rmae``,
        ``skill`` (vs seasonal naive), ``crps``, ``coverage`` (80 % interval), ``n``, ``days``,
        ``used`` (which model made the forecasts after fallbacks, days per model).
    result : BacktestResult
        Every forecast, in long form.
    elapsed_s : float
        Wall time, s.
    """

    member_id: str
    quantity: str
    days: pd.DatetimeIndex
    scores: pd.DataFrame
    result: BacktestResult
    elapsed_s: float


def backtest_member(
    community: Community,
    member: str,
    *,
    quantity: str = "consumption",
    days: int = 60,
    end_day: Any = None,
    retrain_every_days: int = 7,
    models: ModelStore | None = None,
    store_scores: bool = False,
) -> BacktestReport:
    """Backtest a member's day-ahead forecast over the last ``days`` days, every model side by side.

    Parameters
    ----------
    community : Community
        The community.
    member : str
        Member entity id (or meter id, or EAN).
    quantity : str
        ``consumption`` or ``production``.
    days : int
        Delivery days to backtest (1..366), ending with ``end_day``.
    end_day : str or date, optional
        Last delivery day; default the last complete day of the readings.
    retrain_every_days : int
        Retrain the learned model every this many days (>= 1).
    models : ModelStore, optional
        Where to store the scores (with ``store_scores``).
    store_scores : bool
        Attach the learned model's scores (prefixed ``backtest_``) to the member's stored model.

    Returns
    -------
    BacktestReport

    Raises
    ------
    CommunityInputError
        Bad quantity, days, day, a member without PV asked for production, no readings.
    ResourceNotFound
        Unknown member.
    """
    t0 = time.perf_counter()
    if quantity not in QUANTITIES:
        raise CommunityInputError(f"quantity {quantity!r} is unknown; use one of {', '.join(QUANTITIES)}")
    if not 1 <= int(days) <= 366:
        raise CommunityInputError(f"days must be within 1..366, got {days}")
    if retrain_every_days < 1:
        raise CommunityInputError(f"retrain_every_days must be >= 1, got {retrain_every_days}")
    m = community.member(member).id
    site = community_site(community)
    tz = site.tz
    span = readings_span(community)
    if span is None:
        raise CommunityInputError(f"community {community.id} has no common readings to backtest on")
    last = parse_day(end_day) if end_day is not None else default_day(community, tz) - pd.Timedelta(days=1)
    first = pd.Timestamp(last) - pd.Timedelta(days=int(days) - 1)
    delivery = pd.date_range(first, pd.Timestamp(last), freq="D")
    end = min(span[1], delivery_day_index(last, tz=tz)[-1] + RESOLUTION)
    start = max(
        span[0], day_ahead_issue_time(first.date(), tz=tz).floor(RESOLUTION) - pd.Timedelta(days=HISTORY_DAYS)
    )
    if end <= start:
        raise CommunityInputError(f"the readings of {community.id} do not cover the backtest days")
    hist = histories(community, start, end, site=site)
    h = hist.get((m, quantity))
    if h is None:
        raise CommunityInputError(f"member {m} has no PV: there is no production to backtest")
    if KIND[quantity] == "load":
        trainers: dict[str, Trainer] = {
            "seasonal_naive": _baseline_trainer(seasonal_naive, tz),
            "persistence": _baseline_trainer(persistence, tz),
            "profile_average": _baseline_trainer(profile_average, tz),
            "gbm": _learned_trainer(h, site),
        }
        learned = "gbm"
    else:
        assert h.pv_system is not None
        trainers = {
            "seasonal_naive": _baseline_trainer(seasonal_naive, tz),
            "persistence": _baseline_trainer(persistence, tz),
            "pv_physical": _physical_trainer(h.pv_system),
            "pv_gbm": _learned_trainer(h, site),
        }
        learned = "pv_gbm"
    try:
        res = rolling_origin(h.values, trainers, days=delivery, tz=tz, retrain_every_days=retrain_every_days)
        scores = res.scores()
    except (HistoryError, LeakageError, ValueError) as exc:
        raise CommunityInputError(f"backtest of member {m} ({quantity}): {exc}") from None
    per_day = res.frame.groupby(["model", "issue_time"])["used_model"].first()
    scores["used"] = [
        ", ".join(f"{k}: {v} d" for k, v in per_day.loc[name].value_counts().items()) for name in scores.index
    ]
    if store_scores and learned in scores.index:
        (models if models is not None else ModelStore(community.twin.engine)).update_scores(
            community.tenant,
            m,
            quantity,
            {
                f"backtest_{k}": _num(scores.at[learned, k])
                for k in ("days", "mae", "rmae", "skill", "pinball", "coverage")
            },
        )
    return BacktestReport(m, quantity, delivery, scores, res, time.perf_counter() - t0)
