"""JSON-LD @context handling for NGSI-LD, offline first.

The NGSI-LD API only needs the part of JSON-LD that maps short terms to IRIs and back (attribute
names, entity types, vocabulary values). :class:`ActiveContext` implements that part: term
definitions, prefixes / compact IRIs, ``@vocab``, ``@type: @vocab`` coercion, nested and remote
contexts, with the core context applied last so that its protected terms always win.

Remote contexts are resolved by :class:`ContextResolver` without any network access: the bundled
core contexts answer every known core URL, user contexts come from the node's ``/jsonldContexts``
store or from a cache directory (``BRIGHT_CONTEXT_DIR``, one file per URL), and only when
``BRIGHT_FETCH_CONTEXTS=1`` is an unknown URL fetched over HTTP.
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from bright.twin.errors import BadRequestData, LdContextNotAvailable

NGSI_LD = "https://uri.etsi.org/ngsi-ld/"
DEFAULT_VOCAB = "https://uri.etsi.org/ngsi-ld/default-context/"
CORE_CONTEXT_URL = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.9.jsonld"
_CORE_URL_RE = re.compile(r"^https?://uri\.etsi\.org/ngsi-ld/v1/ngsi-ld-core-context(-v1\.(\d+))?\.jsonld$")
# Mirrors of the core context elsewhere (same document, another host): answered the same way.
_CORE_MIRROR_RE = re.compile(r"^https?://.+/ngsi-ld-core-context(-v1\.(\d+))?\.jsonld$")
_ABSOLUTE_IRI_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")

BRIGHT_CONTEXT_URL = "https://w3id.org/bright/context.jsonld"
#: Namespace of BRIGHT's own terms (the ``bright:`` prefix of its @context).
BRIGHT_NS = "https://w3id.org/bright/ns#"
# BRIGHT's energy vocabulary and the two user contexts of the ETSI conformance suite, bundled so
# that they resolve offline.
_BUNDLED_USER_CONTEXTS = {
    BRIGHT_CONTEXT_URL: "bright-context.jsonld",
    "https://forge.etsi.org/rep/cim/ngsi-ld-test-suite/-/raw/develop/resources/jsonld-contexts/"
    "ngsi-ld-test-suite.jsonld": "ngsi-ld-test-suite.jsonld",
    "https://forge.etsi.org/rep/cim/ngsi-ld-test-suite/-/raw/develop/resources/jsonld-contexts/"
    "ngsi-ld-test-suite-compound.jsonld": "ngsi-ld-test-suite-compound.jsonld",
}


def _bundled(name: str) -> Any:
    return json.loads(resources.files("bright.twin.contexts").joinpath(name).read_text("utf-8"))


_core_cache: dict[str, Any] = {}


def core_context_document(version: int = 9) -> Any:
    """The bundled core context document (v1.7 for versions up to 1.7, else v1.9)."""
    name = "ngsi-ld-core-context-v1.7.jsonld" if version <= 7 else "ngsi-ld-core-context-v1.9.jsonld"
    if name not in _core_cache:
        _core_cache[name] = _bundled(name)
    return _core_cache[name]


def is_core_context_url(url: str) -> bool:
    """True for any URL naming an NGSI-LD core context (all versions are answered offline)."""
    return bool(_CORE_URL_RE.match(url))


@dataclass(frozen=True)
class TermDefinition:
    """One term: its IRI, the ``@type`` coercion (``@id``, ``@vocab``, ``@json``...) and container."""

    iri: str
    type: str | None = None
    container: str | None = None
    prefix: bool = False


@dataclass
class ActiveContext:
    """Result of processing one @context value: terms, ``@vocab``, and the inverse map for compaction."""

    terms: dict[str, TermDefinition] = field(default_factory=dict)
    vocab: str | None = None
    urls: tuple[str, ...] = ()
    _inverse: dict[str, str] | None = None
    _prefixes: list[tuple[str, str]] | None = None

    def copy(self) -> ActiveContext:
        return ActiveContext(dict(self.terms), self.vocab, self.urls)

    # --- expansion -------------------------------------------------------------------------------
    def expand(self, term: str, *, vocab: bool = True) -> str:
        """Expand a term, compact IRI or absolute IRI to an absolute IRI.

        Parameters
        ----------
        term
            A short name (``speed``), a compact IRI (``ngsi-ld:Property``) or an absolute IRI.
        vocab
            Use ``@vocab`` for terms without a definition (true for attribute names and types).
        """
        if term.startswith("@"):
            return term
        d = self.terms.get(term)
        if d is not None:
            return d.iri
        if ":" in term:
            prefix, _, suffix = term.partition(":")
            if not suffix.startswith("//"):
                pd = self.terms.get(prefix)
                if pd is not None:
                    return pd.iri + suffix
            if _ABSOLUTE_IRI_RE.match(term):
                return term
        if vocab and self.vocab is not None:
            return self.vocab + term
        return term

    def term_type(self, term_or_iri: str) -> str | None:
        """The ``@type`` coercion of a term (by short name or by IRI), if any."""
        d = self.terms.get(term_or_iri)
        if d is not None:
            return d.type
        short = self.compact(term_or_iri)
        d = self.terms.get(short)
        return d.type if d is not None else None

    # --- compaction ------------------------------------------------------------------------------
    def _build_inverse(self) -> None:
        inverse: dict[str, str] = {}
        # Shortest term wins, then alphabetical, as JSON-LD's term selection does for plain terms.
        for term in sorted(self.terms, key=lambda t: (len(t), t)):
            d = self.terms[term]
            if term.startswith("@") or ":" in term:
                continue
            inverse.setdefault(d.iri, term)
        prefixes = [
            (d.iri, term)
            for term, d in self.terms.items()
            if d.prefix and ":" not in term and not term.startswith("@")
        ]
        prefixes.sort(key=lambda p: -len(p[0]))
        self._inverse, self._prefixes = inverse, prefixes

    def compact(self, iri: str, *, vocab: bool = True) -> str:
        """Compact an absolute IRI to the shortest term, compact IRI, or ``@vocab``-relative name."""
        if self._inverse is None:
            self._build_inverse()
        assert self._inverse is not None and self._prefixes is not None
        term = self._inverse.get(iri)
        if term is not None:
            return term
        if vocab and self.vocab and iri.startswith(self.vocab):
            rest = iri[len(self.vocab) :]
            if rest and ":" not in rest and rest not in self.terms:
                return rest
        for piri, pterm in self._prefixes:
            if iri.startswith(piri) and len(iri) > len(piri):
                suffix = iri[len(piri) :]
                candidate = f"{pterm}:{suffix}"
                if candidate not in self.terms:
                    return candidate
        return iri


class ContextResolver:
    """Turns @context values (URLs, objects, arrays) into :class:`ActiveContext` objects, offline.

    Parameters
    ----------
    lookup
        Returns the stored body of a context URL (the node's ``/jsonldContexts`` store), or None.
    context_dir
        Directory with cached contexts, one file per URL (file name = URL with ``/`` and ``:``
        replaced by ``_``, or the URL's last path segment).
    fetch
        Allow HTTP fetches of unknown remote contexts.
    """

    def __init__(
        self,
        lookup: Callable[[str], Any | None] | None = None,
        context_dir: Path | None = None,
        fetch: bool = False,
        cache_size: int = 256,
    ) -> None:
        self.lookup = lookup
        self.context_dir = context_dir
        self.fetch = fetch
        self._cache: OrderedDict[str, ActiveContext] = OrderedDict()
        self._lock = threading.Lock()
        self._cache_size = cache_size
        self._core = self._process_core()

    @property
    def core(self) -> ActiveContext:
        """The active context of the core context alone."""
        return self._core

    def _process_core(self) -> ActiveContext:
        active = ActiveContext()
        _apply(active, core_context_document()["@context"], self._load, depth=0)
        active.urls = (CORE_CONTEXT_URL,)
        return active

    def clear(self) -> None:
        """Forget processed contexts (after a context was added or deleted)."""
        with self._lock:
            self._cache.clear()

    def load_document(self, url: str) -> Any:
        """The JSON document of a remote context, from the offline sources (or HTTP if allowed).

        Raises
        ------
        LdContextNotAvailable
            The URL is unknown offline and fetching is disabled or failed.
        """
        m = _CORE_URL_RE.match(url) or _CORE_MIRROR_RE.match(url)
        if m:
            return core_context_document(int(m.group(2)) if m.group(2) else 9)
        if self.lookup is not None:
            body = self.lookup(url)
            if body is not None:
                return body
        if url in _BUNDLED_USER_CONTEXTS:
            return _bundled(_BUNDLED_USER_CONTEXTS[url])
        if self.context_dir is not None:
            for name in (re.sub(r"[/:?#]", "_", url), url.rstrip("/").rsplit("/", 1)[-1]):
                path = self.context_dir / name
                if name and path.is_file():
                    try:
                        return json.loads(path.read_text("utf-8"))
                    except ValueError as exc:
                        raise LdContextNotAvailable(f"cached @context {path} is not JSON: {exc}") from exc
        if self.fetch and url.startswith(("http://", "https://")):
            import httpx

            try:
                resp = httpx.get(url, timeout=5.0, follow_redirects=True)
                resp.raise_for_status()
                return resp.json()
            except Exception as exc:
                raise LdContextNotAvailable(f"@context {url} could not be fetched: {exc}") from exc
        raise LdContextNotAvailable(
            f"@context {url} is not available offline (add it with POST /jsonldContexts, put it in "
            "BRIGHT_CONTEXT_DIR, or set BRIGHT_FETCH_CONTEXTS=1)"
        )

    def _load(self, url: str) -> Any:
        doc = self.load_document(url)
        if not isinstance(doc, dict) or "@context" not in doc:
            raise LdContextNotAvailable(f"@context {url} is not a JSON-LD context document")
        return doc["@context"]

    def resolve(self, context: Any) -> ActiveContext:
        """Process a @context value (None = core only) into an active context, core applied last."""
        if context is None or context == [] or context == CORE_CONTEXT_URL:
            return self._core
        key = json.dumps(context, sort_keys=True, separators=(",", ":"))
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
        active = ActiveContext()
        _apply(active, context, self._load, depth=0)
        # The core context is protected: apply it last so user contexts cannot redefine core terms.
        for term, d in self._core.terms.items():
            active.terms[term] = d
        if active.vocab is None:
            active.vocab = self._core.vocab
        urls = [c for c in (context if isinstance(context, list) else [context]) if isinstance(c, str)]
        active.urls = tuple(urls)
        with self._lock:
            self._cache[key] = active
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return active


def _apply(active: ActiveContext, context: Any, load: Callable[[str], Any], depth: int) -> None:
    if depth > 16:
        raise BadRequestData("@context nesting is deeper than 16 levels (a loop?)")
    if context is None:
        active.terms.clear()
        active.vocab = None
        return
    if isinstance(context, list):
        for item in context:
            _apply(active, item, load, depth + 1)
        return
    if isinstance(context, str):
        _apply(active, load(context), load, depth + 1)
        return
    if not isinstance(context, dict):
        raise BadRequestData(f"invalid @context entry of type {type(context).__name__}")
    if "@import" in context and isinstance(context["@import"], str):
        _apply(active, load(context["@import"]), load, depth + 1)
    if "@vocab" in context:
        v = context["@vocab"]
        active.vocab = None if v is None else active.expand(str(v), vocab=False) if ":" in str(v) else str(v)
    pending = {k: v for k, v in context.items() if not k.startswith("@")}
    # Definitions may refer to each other through prefixes: resolve until stable.
    for _ in range(4):
        for term, value in pending.items():
            d = _define(active, term, value)
            if d is None:
                active.terms.pop(term, None)
            else:
                active.terms[term] = d
    active._inverse = None


def _define(active: ActiveContext, term: str, value: Any) -> TermDefinition | None:
    if value is None:
        return None
    if isinstance(value, str):
        iri = active.expand(value, vocab=False) if not value.startswith("@") else value
        return TermDefinition(iri=iri, prefix=iri.endswith(("/", "#", ":", "?", "@", "[", "]")))
    if isinstance(value, dict):
        raw_id = value.get("@id")
        if raw_id is None:
            iri = active.expand(term)
        elif raw_id.startswith("@"):
            iri = raw_id
        else:
            iri = active.expand(str(raw_id), vocab=False)
        typ = value.get("@type")
        if typ is not None and not str(typ).startswith("@"):
            typ = active.expand(str(typ))
        container = value.get("@container")
        if isinstance(container, list):
            container = container[0] if container else None
        return TermDefinition(iri=iri, type=typ, container=container, prefix=bool(value.get("@prefix")))
    raise BadRequestData(f"invalid definition of term {term!r} in @context")
