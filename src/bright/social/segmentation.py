"""Segmentation of members into latent classes from their answers and load profiles.

Method (latent class analysis, LCA, estimated with ``stepmix``)
---------------------------------------------------------------
Measurement model
    Each of the J questionnaire items is a categorical indicator; given the class c, items are
    independent (local independence) and item j takes category l with probability pi[c, j, l]::

        P(x_i | c) = prod_j prod_l pi[c, j, l] ** [x_ij = l]

    Missing answers are left out of the product (full-information maximum likelihood, valid when
    answers are missing at random). Categories: the Likert points of each item; 0-10 items banded
    into 5 ordered categories (0-2, 3-4, 5, 6-7, 8-10) so that no cell is sparse and every item
    costs about as many parameters; knowledge items coded right/wrong.
Class enumeration
    For k = 2..7 the measurement model alone is fitted by EM (``n_init`` random starts, best
    log-likelihood kept) and k is chosen by the smallest BIC = -2 logL + p ln n (Schwarz 1978;
    Nylund, Asparouhov & Muthen 2007). Classes are enumerated without covariates, as recommended by
    Nylund-Gibson & Masyn (2016, Structural Equation Modeling 23(6), 782-797).
Structural model (covariates)
    For the chosen k the load-profile features Z (peak share, evening-peak ratio, day-to-day
    variability, base-load share, number of flexible assets, PV) enter a multinomial logistic model of
    class membership, P(c | z) = softmax(beta_c . [1, z]), estimated in two steps with the
    measurement parameters held fixed (Bakk & Kuha 2018, Psychometrika 83(4), 871-892). Covariates are
    standardised (z-scores, clipped to +-5); a missing covariate value is replaced by the sample mean
    (i.e. 0 after standardisation), and the count of such replacements is reported. The posterior
    class probabilities are then P(c | x, z) proportional to P(c | z) P(x | c).
Quality
    Relative entropy 1 - sum_i sum_c -p_ic ln p_ic / (n ln k) (Ramaswamy et al. 1993), smallest
    class share (modal assignment), and bootstrap stability: the model is refitted on B bootstrap
    samples and the adjusted Rand index (Hubert & Arabie 1985) between the original assignment and
    the refit's assignment of the original respondents is reported (label switching is irrelevant to
    the ARI).
Naming
    Each class is described by its posterior-weighted mean dimension scores (0-1) and by their
    z-scores against the whole sample, and is named after the archetype it is closest to
    (:data:`ARCHETYPES`): the affinity of a class to an archetype is the projection of the class
    z-profile on the archetype's unit weight vector; names are assigned one-to-one by maximising the
    total affinity (Hungarian algorithm). A class whose best affinity is below
    ``MAINSTREAM_THRESHOLD`` standard deviations is called "Mainstream"; a second class may take an
    archetype already used (suffix " II") at a cost of ``SECOND_CLASS_PENALTY`` SD in the assignment.

A documented generator of respondents from known classes, :func:`simulate_respondents`, serves the
tests, the demo and the benchmark.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score
from stepmix.emission.build_emission import EMISSION_DICT
from stepmix.emission.categorical import MultinoulliNan
from stepmix.stepmix import StepMix
from threadpoolctl import threadpool_limits

from bright.social.profile_features import COVARIATE_COLUMNS
from bright.social.questionnaire import QUESTIONNAIRE_V1, Item, Questionnaire
from bright.social.scoring import answer_frame, dimension_scores

#: Candidate numbers of classes.
K_RANGE: tuple[int, ...] = (2, 3, 4, 5, 6, 7)

#: A class whose best archetype affinity (in SD) is below this is named "Mainstream".
MAINSTREAM_THRESHOLD = 0.35

#: Affinity (SD) given up when a second class takes an archetype name already used (suffix " II").
SECOND_CLASS_PENALTY = 0.25

#: Bands of the 0-10 items for the measurement model: upper bound (inclusive) of each category.
ELEVEN_POINT_BANDS: tuple[int, ...] = (2, 4, 5, 7, 10)

_EMISSION_KEY = "sbright_items_nan"


class SegmentationError(ValueError):
    """The data cannot be segmented (too few respondents, misaligned covariates, ...)."""


# ---------------------------------------------------------------------------------------------
# Archetypes used to name classes


@dataclass(frozen=True)
class Archetype:
    """A named class profile used to label latent classes.

    Parameters
    ----------
    id : str
        Identifier, e.g. ``"eco_committed"``.
    names : Mapping[str, str]
        Display name per language (en, fr, nl).
    weights : Mapping[str, float]
        Signed weight per dimension (on dimension z-scores) that characterises the archetype.
    """

    id: str
    names: Mapping[str, str]
    weights: Mapping[str, float]

    def affinity(self, z: Mapping[str, float]) -> float:
        """Projection (in SD) of a z-profile on the archetype's unit weight vector; NaN z count as 0."""
        w = np.array(list(self.weights.values()))
        v = np.array([_nan0(z.get(d, 0.0)) for d in self.weights])
        return float(w @ v / np.linalg.norm(w))


def _nan0(x: float) -> float:
    return 0.0 if x is None or np.isnan(x) else float(x)


def _names(en: str, fr: str, nl: str) -> Mapping[str, str]:
    return MappingProxyType({"en": en, "fr": fr, "nl": nl})


ARCHETYPES: tuple[Archetype, ...] = (
    Archetype(
        "eco_committed",
        _names("Eco-committed", "Engagés pour l'environnement", "Milieubewust"),
        MappingProxyType({"environmental_concern": 1.0, "social_norms": 0.4, "financial_motive": -0.2}),
    ),
    Archetype(
        "tech_enthusiast",
        _names("Tech enthusiasts", "Passionnés de technologie", "Technologieliefhebbers"),
        MappingProxyType({"technology_affinity": 1.0, "energy_literacy": 0.5, "risk_tolerance": 0.4}),
    ),
    Archetype(
        "cost_focused",
        _names("Cost-focused", "Attentifs aux coûts", "Kostenbewust"),
        MappingProxyType(
            {"financial_motive": 1.0, "environmental_concern": -0.4, "sense_of_community": -0.3}
        ),
    ),
    Archetype(
        "community_minded",
        _names("Community-minded", "Tournés vers la communauté", "Gemeenschapsgericht"),
        MappingProxyType(
            {"sense_of_community": 1.0, "operator_trust": 0.5, "social_norms": 0.4, "generalised_trust": 0.3}
        ),
    ),
    Archetype(
        "sceptical",
        _names("Sceptical / low engagement", "Sceptiques / peu engagés", "Sceptisch / weinig betrokken"),
        MappingProxyType(
            {
                "operator_trust": -1.0,
                "generalised_trust": -0.6,
                "sense_of_community": -0.5,
                "technology_affinity": -0.3,
            }
        ),
    ),
    Archetype(
        "comfort_first",
        _names("Comfort first", "Le confort d'abord", "Comfort eerst"),
        MappingProxyType({"comfort_autonomy": 1.0, "risk_tolerance": -0.3, "energy_literacy": -0.2}),
    ),
)
"""Archetypes, in the order used to break ties."""

MAINSTREAM = Archetype("mainstream", _names("Mainstream", "Profil moyen", "Doorsnee"), MappingProxyType({}))


# ---------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class ClassProfile:
    """One latent class.

    Parameters
    ----------
    label : int
        Class label (0 = largest class).
    archetype : str
        Identifier of the archetype the class is named after (``"mainstream"`` if none fits).
    name : str
        English display name (a suffix " II" marks a second class of the same archetype).
    names : Mapping[str, str]
        Display name per language.
    description : str
        One sentence on what sets the class apart (English).
    share : float
        Share of respondents assigned to the class (modal assignment, 0-1).
    expected_share : float
        Mean posterior probability of the class (0-1).
    dimension_means : Mapping[str, float]
        Posterior-weighted mean dimension score (0-1).
    dimension_z : Mapping[str, float]
        The same, as z-scores against the whole sample (in SD).
    covariate_means : Mapping[str, float]
        Posterior-weighted mean of each raw covariate (its own unit; NaN values skipped).
    affinity : float
        Affinity to the archetype (SD).
    """

    label: int
    archetype: str
    name: str
    names: Mapping[str, str]
    description: str
    share: float
    expected_share: float
    dimension_means: Mapping[str, float]
    dimension_z: Mapping[str, float]
    covariate_means: Mapping[str, float]
    affinity: float


@dataclass(frozen=True)
class ModelFit:
    """One candidate number of classes in the enumeration.

    Parameters
    ----------
    n_classes : int
        Number of classes k.
    bic : float
        Bayesian information criterion of the measurement model (lower is better).
    log_likelihood : float
        Maximised log-likelihood (sum over respondents).
    n_parameters : int
        Free parameters.
    converged : bool
        Whether at least one EM start met its tolerance within ``max_iter`` (stepmix's ``converged_``).
    """

    n_classes: int
    bic: float
    log_likelihood: float
    n_parameters: int
    converged: bool


@dataclass(frozen=True)
class SegmentationQuality:
    """Quality of the retained classification.

    Parameters
    ----------
    relative_entropy : float
        Relative entropy (0-1; 1 = perfectly separated classes).
    smallest_class_share : float
        Share of respondents in the smallest class (modal assignment, 0-1).
    bootstrap_ari : tuple[float, ...]
        ARI between the original assignment and each bootstrap refit (empty if no bootstrap).
    """

    relative_entropy: float
    smallest_class_share: float
    bootstrap_ari: tuple[float, ...]

    @property
    def bootstrap_ari_median(self) -> float:
        """Median bootstrap ARI (NaN without bootstrap)."""
        return float(np.median(self.bootstrap_ari)) if self.bootstrap_ari else float("nan")


@dataclass(frozen=True, eq=False)
class Segmentation:
    """Result of :func:`segment_members`.

    Parameters
    ----------
    questionnaire_version : str
        Version of the questionnaire the answers belong to.
    member_ids : tuple[str, ...]
        Respondents classified, in row order of ``labels`` and ``posterior``.
    labels : numpy.ndarray
        Modal class label per respondent (int).
    posterior : numpy.ndarray
        Shape (n, k): P(class | answers, covariates).
    classes : tuple[ClassProfile, ...]
        Class profiles, by label.
    selection : tuple[ModelFit, ...]
        The enumeration over k.
    quality : SegmentationQuality
        Classification quality.
    excluded : tuple[str, ...]
        Respondents left out because they answered too few items.
    incomplete : tuple[str, ...]
        Classified respondents who left at least one item unanswered (classified from the items
        present).
    covariates_used : tuple[str, ...]
        Covariates in the structural model (constant or absent columns are dropped).
    imputed_covariate_values : int
        Missing covariate values replaced by the sample mean.
    """

    questionnaire_version: str
    member_ids: tuple[str, ...]
    labels: np.ndarray
    posterior: np.ndarray
    classes: tuple[ClassProfile, ...]
    selection: tuple[ModelFit, ...]
    quality: SegmentationQuality
    excluded: tuple[str, ...]
    incomplete: tuple[str, ...]
    covariates_used: tuple[str, ...]
    imputed_covariate_values: int
    _model: Any = field(repr=False)
    _order: np.ndarray = field(repr=False)
    _cov_center: np.ndarray = field(repr=False)
    _cov_scale: np.ndarray = field(repr=False)
    _questionnaire: Questionnaire = field(repr=False)

    @property
    def n_classes(self) -> int:
        """Number of classes retained."""
        return len(self.classes)

    def class_of(self, member: str) -> ClassProfile:
        """Return the class profile of a respondent.

        Raises
        ------
        KeyError
            If the member was not classified (absent or excluded).
        """
        try:
            i = self.member_ids.index(member)
        except ValueError:
            raise KeyError(f"member {member!r} was not classified") from None
        return self.classes[int(self.labels[i])]

    def assign(self, answers: pd.DataFrame, covariates: pd.DataFrame | None = None) -> pd.DataFrame:
        """Classify new respondents with the fitted model (parameters unchanged).

        Parameters
        ----------
        answers : pandas.DataFrame
            One row per respondent, one column per item identifier (codes, NaN if missing).
        covariates : pandas.DataFrame, optional
            Raw covariates (columns as in ``covariates_used``); required when the model has any.

        Returns
        -------
        pandas.DataFrame
            Index = respondents; ``label`` (int), ``name`` (str) and one posterior column per class
            (``p_0`` ... ``p_{k-1}``).
        """
        frame = answer_frame(answers, questionnaire=self._questionnaire)
        x = _one_hot(*_lca_codes(frame, self._questionnaire))
        z = None
        if self.covariates_used:
            if covariates is None:
                raise SegmentationError("the model uses covariates: pass them to assign()")
            z, _ = _standardise_covariates(
                _align_covariates(covariates, frame.index, self.covariates_used),
                self._cov_center,
                self._cov_scale,
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            post = self._model.predict_proba(x, z)[:, self._order]
        labels = post.argmax(axis=1)
        out = pd.DataFrame(post, index=frame.index, columns=[f"p_{c}" for c in range(post.shape[1])])
        out.insert(0, "name", [self.classes[c].name for c in labels])
        out.insert(0, "label", labels)
        return out


# ---------------------------------------------------------------------------------------------
# Coding of the items for the measurement model


def _item_levels(item: Item) -> int:
    if item.is_knowledge_item:
        return 2
    if len(item.scale.values) == 11:
        return len(ELEVEN_POINT_BANDS)
    return len(item.scale.values)


def _item_codes(item: Item, answers: np.ndarray) -> np.ndarray:
    missing = np.isnan(answers)
    if item.is_knowledge_item:
        codes = (answers == item.correct_value).astype(float)
    elif len(item.scale.values) == 11:
        codes = np.searchsorted(np.asarray(ELEVEN_POINT_BANDS), np.nan_to_num(answers), side="left").astype(
            float
        )
    else:
        codes = answers - item.scale.minimum
    codes[missing] = np.nan
    return codes


def _lca_codes(frame: pd.DataFrame, questionnaire: Questionnaire) -> tuple[np.ndarray, np.ndarray]:
    """Integer category codes (NaN if missing) and number of categories of every item."""
    codes = np.column_stack([_item_codes(it, frame[it.id].to_numpy()) for it in questionnaire.items])
    levels = np.array([_item_levels(it) for it in questionnaire.items])
    return codes, levels


def _one_hot(codes: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """One-hot encoding, ``max(levels)`` columns per item; a missing item is a block of NaN."""
    n, j = codes.shape
    width = int(levels.max())
    out = np.zeros((n, j * width))
    for col in range(j):
        c = codes[:, col]
        seen = ~np.isnan(c)
        out[np.flatnonzero(seen), col * width + c[seen].astype(int)] = 1.0
        out[~seen, col * width : (col + 1) * width] = np.nan
    return out


# ---------------------------------------------------------------------------------------------
# stepmix plumbing


class _ItemResponsesNan(MultinoulliNan):
    """``categorical_nan`` emission of stepmix, vectorised.

    Same model and same estimates as stepmix's ``MultinoulliNan`` on one-hot input
    (``integer_codes=False``), but the M-step normalises all categories with one matrix product
    instead of a Python loop over columns (about 10x faster on 31 items). Registered in stepmix's
    emission table under ``"sbright_items_nan"`` (the ``_nan`` suffix tells stepmix to accept NaN).
    """

    _source: np.ndarray | None = None
    _filled: np.ndarray
    _observed: np.ndarray

    def _prepared(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # EM passes the same array at every iteration: derive the zero-filled data and the
        # observation mask once (the reference held in _source makes the identity test safe)
        if self._source is not X:
            observed = ~np.isnan(X)
            self._filled = np.where(observed, X, 0.0)
            self._observed = observed.astype(float)
            self._source = X
        return self._filled, self._observed

    def m_step(self, X: np.ndarray, resp: np.ndarray) -> None:
        filled, observed = self._prepared(X)
        counts = filled.T @ resp
        totals = observed.T @ resp
        self.parameters["pis"] = (counts / np.maximum(totals, 1e-300)).T

    def log_likelihood(self, X: np.ndarray) -> np.ndarray:
        filled, _ = self._prepared(X)
        pis = np.clip(self.parameters["pis"].T, 1e-15, 1 - 1e-15)
        return filled @ np.log(pis)


def _register_emission() -> None:
    EMISSION_DICT.setdefault(_EMISSION_KEY, _ItemResponsesNan)


def _new_model(k: int, levels: np.ndarray, *, n_init: int, seed: int, max_iter: int, tol: float) -> StepMix:
    _register_emission()
    return StepMix(
        n_components=k,
        measurement=_EMISSION_KEY,
        structural="covariate",
        n_steps=1,
        n_init=n_init,
        init_params="random",
        abs_tol=tol,
        max_iter=max_iter,
        random_state=seed,
        progress_bar=0,
        verbose=0,
        measurement_params={
            "integer_codes": False,
            "max_n_outcomes": int(levels.max()),
            "total_outcomes": int(levels.sum()),
        },
        structural_params={"method": "newton-raphson", "max_iter": 1},
    )


def _fit(
    x: np.ndarray,
    z: np.ndarray | None,
    k: int,
    levels: np.ndarray,
    *,
    n_init: int,
    seed: int,
    max_iter: int,
    tol: float,
) -> tuple[StepMix, ModelFit]:
    """Measurement model by EM, then (if z) the covariate model with the measurement held fixed."""
    model = _new_model(k, levels, n_init=n_init, seed=seed, max_iter=max_iter, tol=tol)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(x)
        converged = bool(model.converged_)
        n = x.shape[0]
        ll = float(model.score(x)) * n
        # free parameters: k (sum_j L_j - J) item probabilities + (k - 1) class weights (counted here
        # explicitly: stepmix leaves the weights out once a covariate structural model is declared)
        p = k * int(levels.sum() - len(levels)) + (k - 1)
        fit = ModelFit(k, float(-2.0 * ll + p * np.log(n)), ll, p, converged)
        if z is not None:
            model.em(x, z, freeze_measurement=True)
    return model, fit


def _posterior(model: StepMix, x: np.ndarray, z: np.ndarray | None) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(model.predict_proba(x, z))


# ---------------------------------------------------------------------------------------------
# Covariates


def _align_covariates(covariates: pd.DataFrame, index: pd.Index, columns: Sequence[str]) -> pd.DataFrame:
    absent_rows = index.difference(covariates.index)
    if len(absent_rows):
        raise SegmentationError(f"no covariates for member {absent_rows[0]!r} ({len(absent_rows)} in all)")
    absent_cols = [c for c in columns if c not in covariates.columns]
    if absent_cols:
        raise SegmentationError(f"covariate column(s) missing: {', '.join(absent_cols)}")
    try:
        return covariates.loc[index, list(columns)].astype(float)
    except (TypeError, ValueError) as exc:
        raise SegmentationError(f"covariates must be numeric: {exc}") from exc


def _standardise_covariates(
    cov: pd.DataFrame, center: np.ndarray, scale: np.ndarray
) -> tuple[np.ndarray, int]:
    z = (cov.to_numpy() - center) / scale
    n_missing = int(np.isnan(z).sum())
    return np.clip(np.nan_to_num(z, nan=0.0), -5.0, 5.0), n_missing


# ---------------------------------------------------------------------------------------------
# Naming and description


def _weighted_means(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Posterior-weighted column means of ``values`` (n x d) per class (weights n x k), NaN-aware."""
    ok = ~np.isnan(values)
    num = weights.T @ np.where(ok, values, 0.0)
    den = weights.T @ ok.astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def _describe(z: Mapping[str, float], questionnaire: Questionnaire) -> str:
    names = {d.id: d.name["en"].lower() for d in questionnaire.dimensions}
    items = [(d, v) for d, v in z.items() if not np.isnan(v)]
    high = sorted((p for p in items if p[1] >= 0.5), key=lambda p: -p[1])[:3]
    low = sorted((p for p in items if p[1] <= -0.5), key=lambda p: p[1])[:3]

    def fmt(pairs: list[tuple[str, float]]) -> str:
        parts = [f"{names[d]} ({v:+.1f} SD)" for d, v in pairs]
        return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]

    if not high and not low:
        return "Close to the community average on every dimension."
    sentence = []
    if high:
        sentence.append(f"above the community average on {fmt(high)}")
    if low:
        sentence.append(f"below it on {fmt(low)}" if high else f"below the community average on {fmt(low)}")
    text = "; ".join(sentence)
    return text[0].upper() + text[1:] + "."


def name_classes(
    class_z: Sequence[Mapping[str, float]], *, threshold: float = MAINSTREAM_THRESHOLD
) -> list[tuple[Archetype, str, float]]:
    """Name classes after archetypes, one-to-one, maximising the total affinity.

    Parameters
    ----------
    class_z : Sequence[Mapping[str, float]]
        Dimension z-profile (SD) of each class.
    threshold : float, optional
        Minimum affinity (SD) for an archetype name; below it the class is "Mainstream".

    Returns
    -------
    list[tuple[Archetype, str, float]]
        Per class: the archetype, the English display name (a second class of the same archetype is
        suffixed " II") and the affinity (NaN for Mainstream).
    """
    k = len(class_z)
    aff = np.array([[a.affinity(z) for a in ARCHETYPES] for z in class_z]).reshape(k, len(ARCHETYPES))
    # columns: archetypes, their second copies (penalised by SECOND_CLASS_PENALTY so that distinct
    # archetypes are preferred when they fit about as well), and k "mainstream" slots at the threshold
    second = aff - SECOND_CLASS_PENALTY
    cols = np.hstack([aff, second, np.full((k, k), threshold)])
    rows, chosen = linear_sum_assignment(cols, maximize=True)
    out: list[tuple[Archetype, str, float]] = [(MAINSTREAM, MAINSTREAM.names["en"], float("nan"))] * k
    n_a = len(ARCHETYPES)
    for r, c in zip(rows, chosen, strict=True):
        if c < n_a and aff[r, c] >= threshold:
            out[r] = (ARCHETYPES[c], ARCHETYPES[c].names["en"], float(aff[r, c]))
        elif n_a <= c < 2 * n_a and aff[r, c - n_a] >= threshold:
            a = ARCHETYPES[c - n_a]
            out[r] = (a, a.names["en"] + " II", float(aff[r, c - n_a]))
    return out


# ---------------------------------------------------------------------------------------------
# Main entry point


def segment_members(
    answers: pd.DataFrame,
    covariates: pd.DataFrame | None = None,
    *,
    questionnaire: Questionnaire = QUESTIONNAIRE_V1,
    k_range: Sequence[int] = K_RANGE,
    n_init: int = 8,
    bootstrap_reps: int = 10,
    bootstrap_n_init: int = 4,
    min_answered_share: float = 0.5,
    max_iter: int = 500,
    tol: float = 1e-6,
    random_state: int = 0,
) -> Segmentation:
    """Segment respondents into latent classes, choose k by BIC, name and assess the classes.

    Parameters
    ----------
    answers : pandas.DataFrame
        One row per respondent (index = member identifiers), one column per item identifier; answer
        codes, NaN when missing.
    covariates : pandas.DataFrame, optional
        Load-profile covariates per member (see
        :func:`bright.social.profile_features.covariate_frame`); columns among
        :data:`~bright.social.profile_features.COVARIATE_COLUMNS` are used, each in its own unit.
        Every classified respondent must have a row (NaN values are mean-imputed).
    questionnaire : Questionnaire, optional
        Questionnaire version of the answers.
    k_range : Sequence[int], optional
        Candidate numbers of classes (default 2..7).
    n_init : int, optional
        Random EM starts per k.
    bootstrap_reps : int, optional
        Bootstrap refits for the stability ARI (0 to skip).
    bootstrap_n_init : int, optional
        Random EM starts per bootstrap refit.
    min_answered_share : float, optional
        Respondents who answered less than this share (0-1] of all items are excluded (and listed).
    max_iter : int, optional
        Maximum EM iterations per start.
    tol : float, optional
        EM stops when the mean log-likelihood per respondent improves by less than this (nats).
    random_state : int, optional
        Seed; results are reproducible for a given seed.

    Returns
    -------
    Segmentation

    Raises
    ------
    AnswerOutOfRangeError
        If an answer is outside its item's scale (the item and respondent are named).
    SegmentationError
        If fewer respondents remain than 5 x max(k_range), or covariates are misaligned.
    """
    ks = sorted(set(int(k) for k in k_range))
    if not ks or ks[0] < 1:
        raise SegmentationError(f"k_range must hold positive integers, got {list(k_range)}")
    frame = answer_frame(answers, questionnaire=questionnaire)
    if frame.index.has_duplicates:
        raise SegmentationError(f"respondent {frame.index[frame.index.duplicated()][0]!r} appears twice")
    share = frame.notna().mean(axis=1)
    excluded = tuple(str(m) for m in frame.index[share < min_answered_share])
    frame = frame.loc[share >= min_answered_share]
    n = len(frame)
    if n < 5 * ks[-1]:
        raise SegmentationError(
            f"{n} usable respondents is too few for up to {ks[-1]} classes (need {5 * ks[-1]})"
        )

    codes, levels = _lca_codes(frame, questionnaire)
    x = _one_hot(codes, levels)

    z: np.ndarray | None = None
    used: tuple[str, ...] = ()
    center = np.zeros(0)
    scale = np.ones(0)
    n_imputed = 0
    if covariates is not None:
        cols = [c for c in covariates.columns if c in COVARIATE_COLUMNS]
        raw = _align_covariates(covariates, frame.index, cols)
        sd = raw.std(ddof=0)
        keep = [c for c in cols if np.isfinite(sd[c]) and sd[c] > 0]
        if keep:
            used = tuple(keep)
            center = raw[keep].mean().to_numpy()
            scale = sd[keep].to_numpy()
            z, n_imputed = _standardise_covariates(raw[keep], center, scale)

    # The matrices are small (n x 186 by k): BLAS threads only contend with each other (3x slower
    # on a loaded 2-core machine), so EM runs single-threaded.
    with threadpool_limits(limits=1, user_api="blas"):
        fits = [
            _fit(x, None, k, levels, n_init=n_init, seed=random_state, max_iter=max_iter, tol=tol)[1]
            for k in ks
        ]
        k_best = min(fits, key=lambda f: (f.bic, f.n_classes)).n_classes
        model, _ = _fit(x, z, k_best, levels, n_init=n_init, seed=random_state, max_iter=max_iter, tol=tol)
        post = _posterior(model, x, z)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rel_entropy = float(model.relative_entropy(x, z)) if k_best > 1 else float("nan")

        # order classes by size (label 0 = largest)
        counts = np.bincount(post.argmax(axis=1), minlength=k_best)
        order = np.lexsort((np.arange(k_best), -counts))
        post = post[:, order]
        labels = post.argmax(axis=1)
        shares = np.bincount(labels, minlength=k_best) / n

        rng = np.random.default_rng(random_state)
        ari: list[float] = []
        for b in range(bootstrap_reps):
            idx = rng.integers(0, n, n)
            zb = None if z is None else z[idx]
            mb, _ = _fit(
                x[idx], zb, k_best, levels, n_init=bootstrap_n_init, seed=random_state + 1 + b,
                max_iter=max_iter, tol=tol,
            )  # fmt: skip
            ari.append(float(adjusted_rand_score(labels, _posterior(mb, x, z).argmax(axis=1))))

    # profiles
    dims = questionnaire.dimension_ids
    scores = dimension_scores(frame, questionnaire=questionnaire)[list(dims)].to_numpy(dtype=float)
    grand = np.nanmean(scores, axis=0)
    sd_dims = np.nanstd(scores, axis=0, ddof=1)
    means = _weighted_means(scores, post)
    with np.errstate(invalid="ignore", divide="ignore"):
        zs = np.where(sd_dims > 0, (means - grand) / np.where(sd_dims > 0, sd_dims, 1.0), np.nan)
    cov_means = (
        _weighted_means(covariates.loc[frame.index, list(used)].to_numpy(dtype=float), post)
        if used and covariates is not None
        else np.zeros((k_best, 0))
    )
    z_maps = [dict(zip(dims, map(float, zs[c]), strict=True)) for c in range(k_best)]
    named = name_classes(z_maps)
    classes = tuple(
        ClassProfile(
            label=c,
            archetype=named[c][0].id,
            name=named[c][1],
            names=MappingProxyType(
                {
                    lang: named[c][0].names[lang] + (" II" if named[c][1].endswith(" II") else "")
                    for lang in ("en", "fr", "nl")
                }
            ),
            description=_describe(z_maps[c], questionnaire),
            share=float(shares[c]),
            expected_share=float(post[:, c].mean()),
            dimension_means=MappingProxyType(dict(zip(dims, map(float, means[c]), strict=True))),
            dimension_z=MappingProxyType(z_maps[c]),
            covariate_means=MappingProxyType(dict(zip(used, map(float, cov_means[c]), strict=True))),
            affinity=named[c][2],
        )
        for c in range(k_best)
    )
    quality = SegmentationQuality(
        relative_entropy=rel_entropy,
        smallest_class_share=float(shares.min()),
        bootstrap_ari=tuple(ari),
    )
    return Segmentation(
        questionnaire_version=questionnaire.version,
        member_ids=tuple(str(m) for m in frame.index),
        labels=labels,
        posterior=post,
        classes=classes,
        selection=tuple(fits),
        quality=quality,
        excluded=excluded,
        incomplete=tuple(str(m) for m in frame.index[frame.isna().any(axis=1)]),
        covariates_used=used,
        imputed_covariate_values=n_imputed,
        _model=model,
        _order=order,
        _cov_center=center,
        _cov_scale=scale,
        _questionnaire=questionnaire,
    )


# ---------------------------------------------------------------------------------------------
# Simulated respondents


@dataclass(frozen=True)
class SimulatedClass:
    """A known class of the simulator.

    Parameters
    ----------
    name : str
        Name of the class (an archetype's English name, so that naming can be checked).
    levels : Mapping[str, float]
        Level of every dimension on the score scale (0-1).
    covariate_means : Mapping[str, float]
        Mean of the continuous covariates (``peak_share``, ``evening_peak_ratio``,
        ``day_to_day_variability``, ``base_load_share``; dimensionless).
    p_flexible_asset : float
        Probability of owning each of the 4 controllable assets (0-1).
    p_pv : float
        Probability of owning PV (0-1).
    """

    name: str
    levels: Mapping[str, float]
    covariate_means: Mapping[str, float]
    p_flexible_asset: float
    p_pv: float


def _levels(
    env: float, fin: float, risk: float, gtrust: float, otrust: float, comm: float, tech: float, comf: float,
    norms: float, lit: float,
) -> Mapping[str, float]:  # fmt: skip
    return MappingProxyType(
        dict(
            zip(
                QUESTIONNAIRE_V1.dimension_ids,
                (env, fin, risk, gtrust, otrust, comm, tech, comf, norms, lit),
                strict=True,
            )
        )
    )


def _cov(peak: float, ratio: float, var: float, base: float) -> Mapping[str, float]:
    return MappingProxyType(
        {
            "peak_share": peak,
            "evening_peak_ratio": ratio,
            "day_to_day_variability": var,
            "base_load_share": base,
        }
    )


SIMULATED_CLASSES: tuple[SimulatedClass, ...] = (
    SimulatedClass("Eco-committed", _levels(0.90, 0.35, 0.50, 0.60, 0.60, 0.55, 0.45, 0.35, 0.75, 0.65),
                   _cov(0.22, 1.3, 0.18, 0.30), 0.30, 0.60),
    SimulatedClass("Tech enthusiasts", _levels(0.50, 0.55, 0.80, 0.55, 0.60, 0.40, 0.90, 0.40, 0.40, 0.85),
                   _cov(0.20, 1.1, 0.25, 0.25), 0.55, 0.55),
    SimulatedClass("Cost-focused", _levels(0.30, 0.90, 0.45, 0.50, 0.55, 0.35, 0.55, 0.55, 0.35, 0.55),
                   _cov(0.26, 1.7, 0.20, 0.28), 0.25, 0.35),
    SimulatedClass("Community-minded", _levels(0.65, 0.40, 0.45, 0.75, 0.85, 0.90, 0.40, 0.40, 0.80, 0.50),
                   _cov(0.24, 1.5, 0.18, 0.32), 0.25, 0.45),
    SimulatedClass("Sceptical / low engagement", _levels(0.35, 0.50, 0.25, 0.20, 0.15, 0.15, 0.20, 0.85, 0.20, 0.30),
                   _cov(0.30, 2.0, 0.22, 0.35), 0.10, 0.15),
)  # fmt: skip
"""Default known classes: five archetypes with plausible (invented, not estimated) profiles."""

#: Default class shares of the simulator (sum to 1).
SIMULATED_SHARES: tuple[float, ...] = (0.25, 0.20, 0.20, 0.20, 0.15)

_COVARIATE_SD = MappingProxyType(
    {"peak_share": 0.04, "evening_peak_ratio": 0.3, "day_to_day_variability": 0.05, "base_load_share": 0.06}
)


@dataclass(frozen=True)
class SimulatedRespondents:
    """Respondents drawn from known classes.

    Parameters
    ----------
    answers : pandas.DataFrame
        One row per respondent (``S0001`` ...), one column per item; NaN for a missing answer.
    covariates : pandas.DataFrame
        Columns :data:`~bright.social.profile_features.COVARIATE_COLUMNS`.
    true_labels : numpy.ndarray
        Index of the generating class of each respondent.
    class_names : tuple[str, ...]
        Name of each generating class.
    """

    answers: pd.DataFrame
    covariates: pd.DataFrame
    true_labels: np.ndarray
    class_names: tuple[str, ...]


def simulate_respondents(
    n_respondents: int,
    *,
    classes: Sequence[SimulatedClass] = SIMULATED_CLASSES,
    shares: Sequence[float] | None = None,
    spread: float = 0.2,
    missing_rate: float = 0.0,
    questionnaire: Questionnaire = QUESTIONNAIRE_V1,
    seed: int = 0,
) -> SimulatedRespondents:
    """Draw respondents from known classes (for tests, the demo and the benchmark).

    Generative model, independently for every respondent i:

    1. class c_i ~ Categorical(shares) (exact counts: round(n x share), remainder to the first class);
    2. for every item j of dimension d with level L = level[c_i, d] (1 - L if reverse-keyed), scale
       values v_1..v_m and positions u = (v - min) / (max - min):
       P(x_ij = v) proportional to exp(-(u - L)^2 / (2 spread^2)); for a knowledge item,
       P(correct) = L and the wrong options (including "don't know") share 1 - L equally;
    3. each answer is then deleted with probability ``missing_rate`` (missing completely at random);
    4. covariates given the class: the 4 continuous ones Normal(mean[c], sd) (shares clipped to
       [0, 1], ratio and variability to >= 0), ``n_flexible_assets`` ~ Binomial(4, p_flex[c]),
       ``has_pv`` ~ Bernoulli(p_pv[c]).

    Items are independent given the class, as the latent class model assumes, so the simulator is
    a well-specified test of recovery.

    Parameters
    ----------
    n_respondents : int
        Number of respondents.
    classes : Sequence[SimulatedClass], optional
        Generating classes (default :data:`SIMULATED_CLASSES`).
    shares : Sequence[float], optional
        Class shares (default :data:`SIMULATED_SHARES` for the default classes, else equal).
    spread : float, optional
        Response noise, as a standard deviation on the 0-1 scale position.
    missing_rate : float, optional
        Probability (0-1) that an answer is missing.
    questionnaire : Questionnaire, optional
        Questionnaire whose items are answered.
    seed : int, optional
        Seed of the random generator.

    Returns
    -------
    SimulatedRespondents
    """
    if n_respondents < 1:
        raise ValueError(f"n_respondents must be positive, got {n_respondents}")
    if not 0.0 <= missing_rate < 1.0:
        raise ValueError(f"missing_rate must be in [0, 1), got {missing_rate}")
    if spread <= 0:
        raise ValueError(f"spread must be positive, got {spread}")
    k = len(classes)
    if shares is None:
        shares = SIMULATED_SHARES if tuple(classes) == SIMULATED_CLASSES else (1.0 / k,) * k
    w = np.asarray(shares, dtype=float)
    if len(w) != k or np.any(w < 0) or not np.isclose(w.sum(), 1.0):
        raise ValueError("shares must be non-negative, one per class, and sum to 1")
    rng = np.random.default_rng(seed)
    counts = np.round(w * n_respondents).astype(int)
    counts[0] += n_respondents - counts.sum()
    labels = rng.permutation(np.repeat(np.arange(k), counts))

    data: dict[str, np.ndarray] = {}
    for it in questionnaire.items:
        vals = np.asarray(it.scale.values, dtype=float)
        probs = np.empty((k, len(vals)))
        for c, cls in enumerate(classes):
            level = float(cls.levels[it.dimension])
            if it.is_knowledge_item:
                p = np.full(len(vals), (1.0 - level) / (len(vals) - 1))
                p[list(it.scale.values).index(int(it.correct_value))] = level  # type: ignore[arg-type]
            else:
                target = 1.0 - level if it.reverse_keyed else level
                u = (vals - vals.min()) / (vals.max() - vals.min())
                p = np.exp(-((u - target) ** 2) / (2.0 * spread**2))
            probs[c] = p / p.sum()
        cdf = probs.cumsum(axis=1)[labels]
        draw = (rng.random(n_respondents)[:, None] > cdf).sum(axis=1)
        data[it.id] = vals[np.minimum(draw, len(vals) - 1)]
    answers = pd.DataFrame(data, index=[f"S{i + 1:04d}" for i in range(n_respondents)])
    if missing_rate > 0:
        answers = answers.mask(rng.random(answers.shape) < missing_rate)

    cov: dict[str, np.ndarray] = {}
    for name in ("peak_share", "evening_peak_ratio", "day_to_day_variability", "base_load_share"):
        mu = np.array([cls.covariate_means[name] for cls in classes])[labels]
        v = mu + _COVARIATE_SD[name] * rng.standard_normal(n_respondents)
        cov[name] = np.clip(v, 0.0, 1.0) if name.endswith("share") else np.maximum(v, 0.0)
    p_flex = np.array([cls.p_flexible_asset for cls in classes])[labels]
    p_pv = np.array([cls.p_pv for cls in classes])[labels]
    cov["n_flexible_assets"] = rng.binomial(4, p_flex).astype(float)
    cov["has_pv"] = (rng.random(n_respondents) < p_pv).astype(float)
    covariates = pd.DataFrame(cov, index=answers.index)[list(COVARIATE_COLUMNS)]
    return SimulatedRespondents(
        answers=answers,
        covariates=covariates,
        true_labels=labels,
        class_names=tuple(c.name for c in classes),
    )
