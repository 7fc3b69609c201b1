"""NGSI-LD entities: parsing request payloads into the stored (expanded) form, and rendering back.

The stored form (``doc``) has full IRIs for attribute names and types, one list of instances per
attribute (one instance per ``datasetId``), sub-attributes keyed by IRI inside their instance, and
date-times normalised to ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` in UTC. Rendering compacts it with the
requester's @context into the normalized, concise or keyValues representation (clause 4.5).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from bright.twin.context import ActiveContext
from bright.twin.errors import BadRequestData

NGSI = "https://uri.etsi.org/ngsi-ld/"
ATTR_TYPES = (
    "VocabProperty",
    "Property",
    "Relationship",
    "GeoProperty",
    "LanguageProperty",
    "VocabularyProperty",
    "JsonProperty",
    "ListProperty",
    "ListRelationship",
)
GEO_TYPES = {"Point", "LineString", "Polygon", "MultiPoint", "MultiLineString", "MultiPolygon"}
# Keys of an attribute instance that are not sub-attributes.
INSTANCE_KEYS = {
    "type",
    "value",
    "object",
    "languageMap",
    "vocab",
    "json",
    "valueList",
    "objectList",
    "datasetId",
    "observedAt",
    "unitCode",
    "objectType",
    "createdAt",
    "modifiedAt",
    "deletedAt",
    "instanceId",
    "lang",
    "previousValue",
    "previousObject",
}
ENTITY_KEYS = {"id", "type", "@context", "scope", "createdAt", "modifiedAt", "deletedAt"}
SYS_KEYS = {"createdAt", "modifiedAt", "deletedAt"}
_FORBIDDEN_NAME = re.compile(r"[<>\"'=;()\s&?/#\\]")
_URI_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:[^\s<>\"{}|\\^`]+$")
NULL = "urn:ngsi-ld:null"


def now_iso() -> str:
    """The current instant as the node stamps it (UTC, microseconds, ``Z``)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_CANONICAL_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d*[1-9])?Z$")


def parse_datetime(text: Any, what: str) -> str:
    """Normalise an ISO-8601 date-time with a zone to the stored UTC form.

    Raises
    ------
    BadRequestData
        ``text`` is not a string, not ISO-8601, or has no time zone (``what`` names the field).
    """
    if not isinstance(text, str):
        raise BadRequestData(f"{what} must be an ISO-8601 date-time string, got {type(text).__name__}")
    if _CANONICAL_UTC.match(text):
        try:
            datetime.fromisoformat(text[:-1])  # validates the fields (month 13, day 32...)
            return text  # already the stored form: the common case for meter readings
        except ValueError:
            raise BadRequestData(f"{what}: {text!r} is not a valid date-time") from None
    s = text.strip()
    if s.endswith(("Z", "z")):
        s = s[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        raise BadRequestData(f"{what}: {text!r} is not an ISO-8601 date-time") from None
    if dt.tzinfo is None:
        raise BadRequestData(f"{what}: {text!r} has no time zone (use Z or an offset)")
    return format_datetime(dt)


def format_datetime(dt: datetime) -> str:
    """UTC ISO-8601 with ``Z``; the fraction only when non-zero, without trailing zeros."""
    dt = dt.astimezone(UTC)
    base = dt.strftime("%Y-%m-%dT%H:%M:%S")
    if dt.microsecond:
        base += "." + f"{dt.microsecond:06d}".rstrip("0")
    return base + "Z"


def is_null_instance(inst: dict[str, Any]) -> bool:
    """True for an NGSI-LD Null instance (``urn:ngsi-ld:null`` as value/object/vocab/json/languageMap)."""
    for key in ("value", "object", "vocab", "json"):
        if inst.get(key) == NULL:
            return True
    lm = inst.get("languageMap")
    if lm == NULL or (isinstance(lm, dict) and lm.get("@none") == NULL):
        return True
    return inst.get("valueList") == [NULL] or inst.get("objectList") == [NULL]


def is_uri(text: Any) -> bool:
    """True when ``text`` is an absolute URI (a scheme, a colon, no spaces or forbidden chars)."""
    return isinstance(text, str) and bool(_URI_RE.match(text))


def check_entity_id(eid: Any) -> str:
    if not is_uri(eid):
        raise BadRequestData(f"entity id {eid!r} is not a valid URI")
    return str(eid)


_FORBIDDEN_IN_IRI = re.compile(r"[<>\"'=;()\s\\]")


def check_name(name: Any, what: str = "attribute name") -> str:
    """Validate a term or an absolute IRI used as an attribute name or type (BadRequestData)."""
    if isinstance(name, str) and _URI_RE.match(name) and not _FORBIDDEN_IN_IRI.search(name):
        return name
    if not isinstance(name, str) or not name or name.startswith("@") or _FORBIDDEN_NAME.search(name):
        raise BadRequestData(
            f"{what} {name!r} is not valid (characters <>\"'=;()&?/# and spaces are forbidden)"
        )
    return name


def parse_attr_type(raw_type: Any, ctx: ActiveContext, attr: str) -> str:
    """The attribute type named by ``raw_type`` (``Property``, ``ngsi-ld:Relationship``...)."""
    if not isinstance(raw_type, str):
        raise BadRequestData(f"attribute {attr!r}: type must be a string")
    t = raw_type
    if t not in ATTR_TYPES:
        iri = ctx.expand(t)
        t = iri[len(NGSI) :] if iri.startswith(NGSI) else iri
    if t == "VocabProperty":
        t = "VocabularyProperty"
    if t not in ATTR_TYPES:
        raise BadRequestData(f"attribute {attr!r}: unknown attribute type {raw_type!r}")
    return t


def is_geometry(value: Any) -> bool:
    return isinstance(value, dict) and value.get("type") in GEO_TYPES and "coordinates" in value


def _check_positions(coords: Any, depth: int, attr: str) -> None:
    if depth == 0:
        if (
            not isinstance(coords, list)
            or len(coords) < 2
            or len(coords) > 3
            or not all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in coords)
        ):
            raise BadRequestData(f"attribute {attr!r}: invalid GeoJSON position {coords!r}")
        return
    if not isinstance(coords, list) or not coords:
        raise BadRequestData(f"attribute {attr!r}: invalid GeoJSON coordinates")
    for c in coords:
        _check_positions(c, depth - 1, attr)


_GEO_DEPTH = {
    "Point": 0,
    "LineString": 1,
    "MultiPoint": 1,
    "Polygon": 2,
    "MultiLineString": 2,
    "MultiPolygon": 3,
}


def check_geometry(value: Any, attr: str) -> dict[str, Any]:
    """Validate a GeoJSON geometry object (types, nesting depth, numeric positions, closed rings)."""
    if not isinstance(value, dict) or value.get("type") not in GEO_TYPES:
        raise BadRequestData(f"attribute {attr!r}: a GeoProperty value must be a GeoJSON geometry")
    if "coordinates" not in value:
        raise BadRequestData(f"attribute {attr!r}: GeoJSON geometry without coordinates")
    gtype = value["type"]
    if gtype == "Point":  # the common case, checked inline
        c = value["coordinates"]
        if type(c) is list and 2 <= len(c) <= 3 and all(type(x) in (int, float) for x in c):
            return value
    _check_positions(value["coordinates"], _GEO_DEPTH[gtype], attr)
    if gtype == "LineString" and len(value["coordinates"]) < 2:
        raise BadRequestData(f"attribute {attr!r}: a LineString needs at least two positions")
    rings = (
        value["coordinates"]
        if gtype == "Polygon"
        else [r for p in value["coordinates"] for r in p]
        if gtype == "MultiPolygon"
        else []
    )
    for ring in rings:
        if len(ring) < 4 or ring[0] != ring[-1]:
            raise BadRequestData(f"attribute {attr!r}: a Polygon ring must be closed and have >= 4 positions")
    return value


def _normalize_value(value: Any, attr: str) -> Any:
    if (
        isinstance(value, dict)
        and value.get("@type") in ("DateTime", f"{NGSI}DateTime")
        and "@value" in value
    ):
        return {"@type": "DateTime", "@value": parse_datetime(value["@value"], f"attribute {attr!r} value")}
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        raise BadRequestData(f"attribute {attr!r}: NaN and Infinity are not valid JSON values")
    return value


def infer_type(raw: dict[str, Any]) -> str:
    """Attribute type of a concise instance without ``type`` (clause 4.5.3)."""
    if "value" in raw:
        return "GeoProperty" if is_geometry(raw["value"]) else "Property"
    for key, t in (
        ("object", "Relationship"),
        ("languageMap", "LanguageProperty"),
        ("vocab", "VocabularyProperty"),
        ("json", "JsonProperty"),
        ("valueList", "ListProperty"),
        ("objectList", "ListRelationship"),
    ):
        if key in raw:
            return t
    return "Property"


def parse_instance(
    raw: Any, ctx: ActiveContext, attr: str, now: str, *, allow_null: bool = False
) -> dict[str, Any]:
    """Parse one attribute instance (normalized or concise) into the stored form.

    Parameters
    ----------
    raw
        The instance as received.
    ctx
        The request's active @context, used to expand sub-attribute names and vocab values.
    attr
        The attribute's short name, for error messages.
    now
        The request's timestamp, stamped as ``createdAt``/``modifiedAt``.
    allow_null
        Accept ``"urn:ngsi-ld:null"`` / null values (merge-patch semantics: delete).
    """
    if raw is None:
        raise BadRequestData(f'attribute {attr!r}: JSON null is not valid (use "urn:ngsi-ld:null" to delete)')
    if not isinstance(raw, dict) or (is_geometry(raw) and "value" not in raw):
        if is_geometry(raw):
            return {
                "type": "GeoProperty",
                "value": check_geometry(raw, attr),
                "createdAt": now,
                "modifiedAt": now,
            }
        if isinstance(raw, list):
            raise BadRequestData(f"attribute {attr!r}: a list of instances is only allowed at the top level")
        return {"type": "Property", "value": _normalize_value(raw, attr), "createdAt": now, "modifiedAt": now}
    t = parse_attr_type(raw["type"], ctx, attr) if "type" in raw else infer_type(raw)
    inst: dict[str, Any] = {"type": t}
    if t == "Property":
        if "value" not in raw or raw["value"] is None:
            raise BadRequestData(f"attribute {attr!r}: a Property needs a non-null value")
        inst["value"] = _normalize_value(raw["value"], attr)
    elif t == "GeoProperty":
        if "value" not in raw:
            raise BadRequestData(f"attribute {attr!r}: a GeoProperty needs a value")
        v = raw["value"]
        inst["value"] = (
            v if (allow_null and v in (None, NULL)) or isinstance(v, str) else check_geometry(v, attr)
        )
        if isinstance(v, str) and v != NULL:
            raise BadRequestData(f"attribute {attr!r}: a GeoProperty value must be a GeoJSON geometry")
    elif t == "Relationship":
        obj = raw.get("object")
        objs = obj if isinstance(obj, list) else [obj]
        valid = obj is not None and objs and all(is_uri(o) for o in objs)
        if not valid and not (allow_null and obj == NULL):
            raise BadRequestData(f"attribute {attr!r}: a Relationship needs an object that is a URI")
        inst["object"] = obj
        if "objectType" in raw:
            ot = raw["objectType"]
            inst["objectType"] = [ctx.expand(x) for x in ot] if isinstance(ot, list) else ctx.expand(str(ot))
    elif t == "LanguageProperty":
        lm = raw.get("languageMap")
        if (
            not isinstance(lm, dict)
            or not all(
                isinstance(v, str) or (isinstance(v, list) and all(isinstance(x, str) for x in v))
                for v in lm.values()
            )
        ) and not (allow_null and lm == NULL):
            raise BadRequestData(f"attribute {attr!r}: a LanguageProperty needs a languageMap of strings")
        inst["languageMap"] = lm
    elif t == "VocabularyProperty":
        voc = raw.get("vocab")
        if isinstance(voc, str):
            inst["vocab"] = voc if voc == NULL else ctx.expand(voc)
        elif isinstance(voc, list) and voc and all(isinstance(x, str) for x in voc):
            inst["vocab"] = [ctx.expand(x) for x in voc]
        else:
            raise BadRequestData(f"attribute {attr!r}: a VocabularyProperty needs a vocab string or list")
    elif t == "JsonProperty":
        if "json" not in raw:
            raise BadRequestData(f"attribute {attr!r}: a JsonProperty needs json")
        inst["json"] = raw["json"]
    elif t == "ListProperty":
        vl = raw.get("valueList")
        if not isinstance(vl, list):
            raise BadRequestData(f"attribute {attr!r}: a ListProperty needs a valueList array")
        inst["valueList"] = vl
    elif t == "ListRelationship":
        ol = raw.get("objectList")
        items = [o.get("object") if isinstance(o, dict) else o for o in ol] if isinstance(ol, list) else None
        if items is None or not all(is_uri(o) for o in items):
            raise BadRequestData(f"attribute {attr!r}: a ListRelationship needs an objectList of URIs")
        inst["objectList"] = items
    if "datasetId" in raw:
        if not is_uri(raw["datasetId"]):
            raise BadRequestData(f"attribute {attr!r}: datasetId {raw['datasetId']!r} is not a URI")
        inst["datasetId"] = raw["datasetId"]
    if "observedAt" in raw:
        inst["observedAt"] = parse_datetime(raw["observedAt"], f"attribute {attr!r} observedAt")
    if "unitCode" in raw:
        if not isinstance(raw["unitCode"], str):
            raise BadRequestData(f"attribute {attr!r}: unitCode must be a string")
        inst["unitCode"] = raw["unitCode"]
    inst["createdAt"] = now
    inst["modifiedAt"] = now
    for key, sub in raw.items():
        if key in INSTANCE_KEYS:
            continue
        if key == "@context":
            raise BadRequestData(f"attribute {attr!r}: @context is only allowed at the top level")
        check_name(key, f"sub-attribute name in {attr!r}")
        if isinstance(sub, list):
            raise BadRequestData(f"sub-attribute {key!r} of {attr!r} cannot have several instances")
        inst[ctx.expand(key)] = parse_instance(sub, ctx, f"{attr}.{key}", now, allow_null=allow_null)
    return inst


def parse_attribute(
    raw: Any, ctx: ActiveContext, attr: str, now: str, *, allow_null: bool = False
) -> list[dict]:
    """Parse an attribute's value in a payload: one instance or an array of instances by datasetId."""
    items = raw if isinstance(raw, list) and (not raw or isinstance(raw[0], dict)) else [raw]
    if isinstance(raw, list) and raw and not isinstance(raw[0], dict):
        # A bare JSON array is a concise Property whose value is that array.
        items = [{"value": raw}]
    if not items:
        raise BadRequestData(f"attribute {attr!r}: an empty array of instances")
    out = [parse_instance(it, ctx, attr, now, allow_null=allow_null) for it in items]
    seen: set[str | None] = set()
    for inst in out:
        ds = inst.get("datasetId")
        if ds in seen:
            raise BadRequestData(f"attribute {attr!r}: two instances with the same datasetId {ds!r}")
        seen.add(ds)
    return out


def parse_types(raw: Any, ctx: ActiveContext) -> list[str]:
    types = raw if isinstance(raw, list) else [raw]
    if not types or not all(isinstance(t, str) and t for t in types):
        raise BadRequestData("entity type must be a non-empty string or array of strings")
    for t in types:
        check_name(t, "entity type")
    out: list[str] = []
    for t in types:
        iri = ctx.expand(t)
        if iri.startswith("@") or ":" not in iri:
            raise BadRequestData(f"entity type {t!r} expands to {iri!r}, which is not an IRI")
        if iri not in out:
            out.append(iri)
    return out


def parse_scope(raw: Any) -> list[str]:
    scopes = raw if isinstance(raw, list) else [raw]
    for s in scopes:
        if not isinstance(s, str) or not re.fullmatch(r"(/[^/+#\s]+)+", s):
            raise BadRequestData(f"scope {s!r} is not valid (e.g. /Brussels/Ixelles)")
    return list(dict.fromkeys(scopes))


def parse_entity(
    raw: Any, ctx: ActiveContext, now: str, *, require_type: bool = True, allow_null: bool = False
) -> dict[str, Any]:
    """Parse an entity payload into its stored form (``createdAt``/``modifiedAt`` = ``now``).

    Raises
    ------
    BadRequestData
        The payload is not an object, lacks a valid id or type, or has an invalid attribute.
    """
    if not isinstance(raw, dict):
        raise BadRequestData("an entity must be a JSON object")
    if "id" not in raw:
        raise BadRequestData("entity without id")
    doc: dict[str, Any] = {"id": check_entity_id(raw["id"])}
    if "type" in raw:
        doc["type"] = parse_types(raw["type"], ctx)
    elif require_type:
        raise BadRequestData(f"entity {raw['id']!r} has no type")
    else:
        doc["type"] = []
    if "scope" in raw:
        doc["scope"] = parse_scope(raw["scope"])
    doc["createdAt"] = now
    doc["modifiedAt"] = now
    doc["attrs"] = parse_attributes(raw, ctx, now, allow_null=allow_null)
    return doc


def parse_attributes(
    raw: dict[str, Any], ctx: ActiveContext, now: str, *, allow_null: bool = False
) -> dict[str, list[dict]]:
    """Parse the attribute part of a payload (every key but id, type, scope, @context, system ones)."""
    attrs: dict[str, list[dict]] = {}
    for key, value in raw.items():
        if key in ENTITY_KEYS:
            continue
        check_name(key)
        iri = ctx.expand(key)
        if iri in attrs:
            raise BadRequestData(f"attribute {key!r} appears twice (after @context expansion)")
        attrs[iri] = parse_attribute(value, ctx, key, now, allow_null=allow_null)
    return attrs


# --- rendering -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RenderOptions:
    """How to render an entity (query parameters ``options``, ``format``, ``attrs``, ``pick``...)."""

    fmt: str = "normalized"  # normalized | concise | keyValues
    sys_attrs: bool = False
    attrs: frozenset[str] | None = None  # expanded IRIs to keep
    pick: dict[str, Any] | None = None  # projection tree over compact names (incl. id, type)
    omit: dict[str, Any] | None = None
    join: str | None = None  # inline | flat | None
    join_level: int = 1
    lang: str | None = None
    dataset_ids: frozenset[str] | None = None  # '@none' for the default instance


def _pick_lang(lm: dict[str, Any], lang: str) -> tuple[str, Any]:
    wanted = [p.split(";")[0].strip() for p in lang.split(",") if p.strip()]
    for w in wanted:
        if w == "*" and lm:
            k = next(iter(lm))
            return k, lm[k]
        if w in lm:
            return w, lm[w]
    if "@none" in lm:
        return "@none", lm["@none"]
    if lm:
        k = next(iter(lm))
        return k, lm[k]
    return "@none", None


def _compact_vocab(v: Any, ctx: ActiveContext) -> Any:
    if isinstance(v, list):
        return [ctx.compact(x) for x in v]
    return ctx.compact(v) if isinstance(v, str) else v


def render_instance(
    inst: dict[str, Any],
    ctx: ActiveContext,
    opts: RenderOptions,
    links: dict[str, dict[str, Any]] | None = None,
    depth: int = 0,
    sub_opts: RenderOptions | None = None,
) -> Any:
    """Render one stored instance in the requested format.

    With ``links`` and ``depth > 0`` (``join=inline``), a Relationship carries the rendered
    entity it points to (``entity`` member; in keyValues the entity replaces the object).
    """
    t = inst["type"]
    linked = None
    if links is not None and depth > 0 and t == "Relationship" and isinstance(inst.get("object"), str):
        target = links.get(inst["object"])
        if target is not None:
            linked = render_entity(target, ctx, sub_opts or opts, links, depth - 1)
    if opts.fmt == "keyValues":
        if linked is not None:
            return linked
        if t == "LanguageProperty" and opts.lang:
            return _pick_lang(inst.get("languageMap") or {}, opts.lang)[1]
        return _simple_value(inst, ctx)
    out: dict[str, Any] = (
        {} if opts.fmt == "concise" else {"type": "VocabProperty" if t == "VocabularyProperty" else t}
    )
    if t == "LanguageProperty" and opts.lang:
        lang, val = _pick_lang(inst.get("languageMap") or {}, opts.lang)
        if opts.fmt != "concise":
            out["type"] = "Property"
        out["value"] = val
        out["lang"] = lang
    else:
        for key in ("value", "object", "languageMap", "json", "valueList", "objectList"):
            if key in inst:
                out[key] = inst[key]
        if "vocab" in inst:
            out["vocab"] = _compact_vocab(inst["vocab"], ctx)
        if "objectType" in inst:
            out["objectType"] = _compact_vocab(inst["objectType"], ctx)
    for key in ("datasetId", "observedAt", "unitCode"):
        if key in inst:
            out[key] = inst[key]
    if opts.sys_attrs:
        for key in ("createdAt", "modifiedAt"):
            if key in inst:
                out[key] = inst[key]
    for key, sub in inst.items():
        if key in INSTANCE_KEYS:
            continue
        out[ctx.compact(key)] = render_instance(sub, ctx, opts)
    if linked is not None:
        out["entity"] = linked
    if (
        opts.fmt == "concise"
        and t in ("Property",)
        and set(out) == {"value"}
        and not isinstance(out["value"], dict)
    ):
        return out["value"]
    return out


def _simple_value(inst: dict[str, Any], ctx: ActiveContext) -> Any:
    t = inst["type"]
    if t == "Relationship":
        return inst.get("object")
    if t == "LanguageProperty":
        return {"languageMap": inst.get("languageMap")}
    if t == "VocabularyProperty":
        return {"vocab": _compact_vocab(inst.get("vocab"), ctx)}
    if t == "JsonProperty":
        return {"json": inst.get("json")}
    if t == "ListProperty":
        return {"valueList": inst.get("valueList")}
    if t == "ListRelationship":
        return {"objectList": inst.get("objectList")}
    return inst.get("value")


def render_entity(
    doc: dict[str, Any],
    ctx: ActiveContext,
    opts: RenderOptions,
    links: dict[str, dict[str, Any]] | None = None,
    depth: int | None = None,
) -> dict[str, Any]:
    """Render a stored entity with the requester's @context and options.

    ``links`` maps entity ids to documents for ``join=inline`` up to ``depth`` levels.
    """
    if depth is None:
        depth = opts.join_level if opts.join == "inline" else 0
    out: dict[str, Any] = {"id": doc["id"]}
    types = [ctx.compact(t) for t in doc.get("type", [])]
    out["type"] = types[0] if len(types) == 1 else types
    if doc.get("scope"):
        sc = doc["scope"]
        out["scope"] = sc[0] if len(sc) == 1 else sc
    if opts.sys_attrs and opts.fmt != "keyValues":
        out["createdAt"] = doc.get("createdAt")
        out["modifiedAt"] = doc.get("modifiedAt")
    for iri, instances in doc.get("attrs", {}).items():
        if opts.attrs is not None and iri not in opts.attrs:
            continue
        chosen = instances
        if opts.dataset_ids is not None:
            chosen = [i for i in instances if i.get("datasetId", "@none") in opts.dataset_ids]
        if not chosen:
            continue
        name = ctx.compact(iri)
        if opts.pick is not None and name not in opts.pick:
            continue
        if opts.omit is not None and name in opts.omit and opts.omit[name] is None:
            continue
        sub = _sub_options(opts, name)
        rendered = [render_instance(i, ctx, opts, links, depth, sub) for i in chosen]
        out[name] = rendered[0] if len(rendered) == 1 else rendered
    for key in ("id", "type", "scope", "createdAt", "modifiedAt"):
        if key in out and (
            (opts.pick is not None and key not in opts.pick) or (opts.omit is not None and key in opts.omit)
        ):
            del out[key]
    return out


def _sub_options(opts: RenderOptions, name: str) -> RenderOptions | None:
    """Options for the entity linked by attribute ``name`` (nested pick/omit)."""
    if opts.pick is None and opts.omit is None:
        return None
    pick = opts.pick.get(name) if opts.pick is not None else None
    omit = opts.omit.get(name) if opts.omit is not None else None
    return replace(opts, pick=pick, omit=omit)


def linked_ids(docs: Iterable[dict[str, Any]]) -> list[str]:
    """Object ids of every single-object Relationship in ``docs`` (for joins), in order."""
    out: list[str] = []
    for d in docs:
        for instances in d.get("attrs", {}).values():
            for inst in instances:
                obj = inst.get("object") if inst.get("type") == "Relationship" else None
                if isinstance(obj, str) and obj not in out:
                    out.append(obj)
    return out


def merge_instances(old: list[dict], new: list[dict]) -> list[dict]:
    """Replace instances with the same datasetId, keep the others, keep the old ``createdAt``."""
    by_ds = {i.get("datasetId"): i for i in old}
    for inst in new:
        prev = by_ds.get(inst.get("datasetId"))
        if prev is not None and "createdAt" in prev:
            inst = {**inst, "createdAt": prev["createdAt"]}
        by_ds[inst.get("datasetId")] = inst
    return list(by_ds.values())


def attribute_names(docs: Iterable[dict[str, Any]]) -> set[str]:
    return {iri for d in docs for iri in d.get("attrs", {})}
