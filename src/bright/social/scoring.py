"""Scoring of the S-BRIGHT questionnaire: item scores, dimension scores, internal consistency.

Item score
    Every answered item is mapped to [0, 1] (proportion of the maximum possible, "POMP")::

        s = (x - min) / (max - min)          for a normally keyed item
        s = (max - x) / (max - min)          for a reverse-keyed item (same as scoring max + min - x)
        s = 1 if x == correct else 0         for a knowledge item ("don't know" is wrong)

Dimension score
    The mean of the item scores that are present (a prorated mean, also called person-mean
    imputation), provided that at least ``min_answered_share`` of the dimension's items were answered
    (default 0.5: 2 of 3 NEP items, 1 of 2 items of the 2-item scales, 4 of 8 BSCS items, 5 of 9 ATI
    items, the single item of a 1-item dimension); otherwise the score is NaN. Prorating over at least
    half the items is the usual rule for short Likert scales (Downey & King 1998, Journal of General
    Psychology 125(2), 175-191). Scores stay in [0, 1]; 0.5 is the middle of the scale.

Internal consistency
    Cronbach's alpha (Cronbach 1951, Psychometrika 16(3), 297-334) of the k item scores of a dimension::

        alpha = k / (k - 1) * (1 - sum_i var(s_i) / var(sum_i s_i))
              = k / (k - 1) * (1 - trace(C) / sum(C))

    with C the k x k item covariance matrix (ddof = 1). Missing answers are handled either
    listwise (only respondents who answered all k items; the default, an exact sample alpha) or
    pairwise (each covariance from the respondents who answered both items; uses more data, but C is
    then not guaranteed positive semi-definite). Alpha is undefined (NaN) for a 1-item dimension,
    fewer than 2 usable respondents, or a zero total variance.

All functions are pure: they take answers as a pandas DataFrame (one row per respondent, one column
per item identifier, NaN for a missing answer) or a mapping, and return new objects.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

import numpy as np
import pandas as pd

from bright.social.questionnaire import (
    QUESTIONNAIRE_V1,
    AnswerOutOfRangeError,
    Item,
    Questionnaire,
    QuestionnaireError,
)

#: Default minimum share of a dimension's items that must be answered for the dimension to be scored.
MIN_ANSWERED_SHARE = 0.5

MissingPolicy = Literal["listwise", "pairwise"]


@dataclass(frozen=True)
class RespondentScores:
    """Dimension scores of one respondent.

    Parameters
    ----------
    respondent : str
        Identifier of the respondent (member).
    scores : Mapping[str, float]
        Score in [0, 1] per dimension; NaN when too few items were answered.
    answered : Mapping[str, int]
        Number of items answered per dimension.
    missing_items : tuple[str, ...]
        Items left unanswered.
    """

    respondent: str
    scores: Mapping[str, float]
    answered: Mapping[str, int]
    missing_items: tuple[str, ...]

    @property
    def incomplete(self) -> bool:
        """True when at least one item was left unanswered (the scores use the items present)."""
        return bool(self.missing_items)

    @property
    def unscored_dimensions(self) -> tuple[str, ...]:
        """Dimensions without a score because too few of their items were answered."""
        return tuple(d for d, s in self.scores.items() if np.isnan(s))


@dataclass(frozen=True)
class Reliability:
    """Internal consistency of one dimension in a group of respondents.

    Parameters
    ----------
    dimension : str
        Dimension identifier.
    alpha : float
        Cronbach's alpha (dimensionless, at most 1; may be negative); NaN when undefined.
    n_items : int
        Number of items of the dimension.
    n_respondents : int
        Respondents used: complete cases (listwise) or the smallest pairwise count (pairwise).
    missing : str
        ``"listwise"`` or ``"pairwise"``.
    """

    dimension: str
    alpha: float
    n_items: int
    n_respondents: int
    missing: str


def item_score(item: Item, answer: float | None) -> float:
    """Score one answer of one item on [0, 1], reverse-keyed and knowledge items handled.

    Parameters
    ----------
    item : Item
        The questionnaire item.
    answer : float
        Answer code (dimensionless); NaN for a missing answer.

    Returns
    -------
    float
        Item score in [0, 1], NaN when the answer is missing.

    Raises
    ------
    AnswerOutOfRangeError
        If the answer is not an allowed code of the item.
    """
    if answer is None or np.isnan(answer):
        return float("nan")
    if answer not in item.scale.values:
        raise AnswerOutOfRangeError(
            f"answer {answer!r} to item {item.id!r} is out of range (allowed {item.scale.values})",
            item_id=item.id,
            respondent="",
            value=answer,
        )
    return float(_score_array(item, np.array([float(answer)]))[0])


def _score_array(item: Item, answers: np.ndarray) -> np.ndarray:
    if item.correct_value is not None:
        return np.where(np.isnan(answers), np.nan, (answers == item.correct_value).astype(float))
    lo, hi = item.scale.minimum, item.scale.maximum
    s = (answers - lo) / (hi - lo)
    return 1.0 - s if item.reverse_keyed else s


def answer_frame(answers: pd.DataFrame, *, questionnaire: Questionnaire = QUESTIONNAIRE_V1) -> pd.DataFrame:
    """Validate a frame of answers and return it with one float column per questionnaire item.

    Parameters
    ----------
    answers : pandas.DataFrame
        One row per respondent (index = respondent identifiers), one column per item identifier;
        answer codes, NaN when missing. Absent item columns are added as all-missing.
    questionnaire : Questionnaire, optional
        Questionnaire version the answers belong to.

    Returns
    -------
    pandas.DataFrame
        Same index, columns in questionnaire order, dtype float.

    Raises
    ------
    AnswerOutOfRangeError
        On an out-of-range answer (the message names the item and the respondent).
    QuestionnaireError
        On unknown items or non-numeric answers.
    """
    unknown = [c for c in answers.columns if c not in questionnaire.item_ids]
    if unknown:
        raise QuestionnaireError(
            f"answers refer to items not in questionnaire {questionnaire.version}: {', '.join(map(str, unknown))}"
        )
    frame = answers.reindex(columns=list(questionnaire.item_ids))
    try:
        frame = frame.astype(float)
    except (TypeError, ValueError) as exc:
        raise QuestionnaireError(f"answers must be numeric codes: {exc}") from exc
    for it in questionnaire.items:
        col = frame[it.id].to_numpy()
        bad = ~np.isnan(col) & ~np.isin(col, np.asarray(it.scale.values, dtype=float))
        if bad.any():
            first = frame.index[np.flatnonzero(bad)[0]]
            raise AnswerOutOfRangeError(
                f"answer {col[bad][0]!r} to item {it.id!r} of respondent {first!r} is out of range "
                f"(allowed {min(it.scale.values)}..{max(it.scale.values)})",
                item_id=it.id,
                respondent=str(first),
                value=col[bad][0],
            )
    return frame


def item_scores(answers: pd.DataFrame, *, questionnaire: Questionnaire = QUESTIONNAIRE_V1) -> pd.DataFrame:
    """Score every answer on [0, 1], reverse-keyed and knowledge items handled.

    Parameters
    ----------
    answers : pandas.DataFrame
        One row per respondent, one column per item identifier (answer codes, NaN if missing). Item
        columns absent from the frame are treated as unanswered.
    questionnaire : Questionnaire, optional
        Questionnaire version the answers belong to.

    Returns
    -------
    pandas.DataFrame
        Same index, one column per questionnaire item, scores in [0, 1] or NaN.

    Raises
    ------
    QuestionnaireError
        On unknown items, non-numeric or out-of-range answers (the message names item and respondent).
    """
    frame = answer_frame(answers, questionnaire=questionnaire)
    data = {it.id: _score_array(it, frame[it.id].to_numpy()) for it in questionnaire.items}
    return pd.DataFrame(data, index=frame.index)


def dimension_scores(
    answers: pd.DataFrame,
    *,
    questionnaire: Questionnaire = QUESTIONNAIRE_V1,
    min_answered_share: float = MIN_ANSWERED_SHARE,
) -> pd.DataFrame:
    """Score every dimension of every respondent from the items present.

    Parameters
    ----------
    answers : pandas.DataFrame
        One row per respondent, one column per item identifier (answer codes, NaN if missing).
    questionnaire : Questionnaire, optional
        Questionnaire version the answers belong to.
    min_answered_share : float, optional
        Minimum share (0-1] of a dimension's items that must be answered; below it the score is NaN.

    Returns
    -------
    pandas.DataFrame
        One row per respondent, one column per dimension (scores in [0, 1], NaN when not scorable),
        plus ``n_missing_items`` (int) and ``incomplete`` (bool: at least one item unanswered).
    """
    if not 0.0 < min_answered_share <= 1.0:
        raise ValueError(f"min_answered_share must be in (0, 1], got {min_answered_share}")
    scores = item_scores(answers, questionnaire=questionnaire)
    out: dict[str, object] = {}
    for dim in questionnaire.dimension_ids:
        cols = [it.id for it in questionnaire.items_of(dim)]
        block = scores[cols].to_numpy()
        n_ans = np.sum(~np.isnan(block), axis=1)
        enough = n_ans >= np.ceil(min_answered_share * len(cols) - 1e-9)
        with np.errstate(invalid="ignore"):
            mean = np.nansum(block, axis=1) / np.where(n_ans > 0, n_ans, 1)
        out[dim] = np.where(enough & (n_ans > 0), mean, np.nan)
    n_missing = scores.isna().sum(axis=1).to_numpy()
    out["n_missing_items"] = n_missing
    out["incomplete"] = n_missing > 0
    return pd.DataFrame(out, index=scores.index)


def score_respondent(
    answers: Mapping[str, object],
    *,
    respondent: str = "",
    questionnaire: Questionnaire = QUESTIONNAIRE_V1,
    min_answered_share: float = MIN_ANSWERED_SHARE,
) -> RespondentScores:
    """Validate and score one respondent's answers.

    Parameters
    ----------
    answers : Mapping[str, object]
        Answer code per item identifier; ``None``/NaN or absent for unanswered items.
    respondent : str, optional
        Identifier of the respondent, used in error messages and in the result.
    questionnaire : Questionnaire, optional
        Questionnaire version the answers belong to.
    min_answered_share : float, optional
        Minimum share of a dimension's items that must be answered to score it.

    Returns
    -------
    RespondentScores
        Scores per dimension, items answered per dimension, and the incompleteness flag.

    Raises
    ------
    AnswerOutOfRangeError
        If an answer is outside its item's scale (the item is named).
    UnknownItemError
        If an answer refers to an unknown item.

    Examples
    --------
    >>> r = score_respondent({"ati_1": 6, "ati_3": 1, "nep_1": 5}, respondent="M07")
    >>> r.scores["technology_affinity"], r.incomplete
    (nan, True)
    """
    checked = questionnaire.validate_answers(answers, respondent=respondent)
    row = pd.DataFrame(
        [{k: (np.nan if v is None else float(v)) for k, v in checked.answers.items()}],
        index=[respondent],
    )
    dims = dimension_scores(row, questionnaire=questionnaire, min_answered_share=min_answered_share)
    answered = {
        d: sum(checked.answers[it.id] is not None for it in questionnaire.items_of(d))
        for d in questionnaire.dimension_ids
    }
    return RespondentScores(
        respondent=respondent,
        scores=MappingProxyType({d: float(dims.iloc[0][d]) for d in questionnaire.dimension_ids}),
        answered=MappingProxyType(answered),
        missing_items=checked.missing_items,
    )


def cronbach_alpha(
    items: pd.DataFrame | np.ndarray, *, missing: MissingPolicy = "listwise"
) -> tuple[float, int]:
    """Cronbach's alpha of a set of item scores.

    Parameters
    ----------
    items : pandas.DataFrame or numpy.ndarray
        Shape (n_respondents, k_items); item scores with reverse-keyed items already reversed; NaN for
        a missing answer.
    missing : {"listwise", "pairwise"}, optional
        ``"listwise"``: use only respondents with all items answered. ``"pairwise"``: estimate each
        (co)variance from the respondents who answered both items.

    Returns
    -------
    alpha : float
        Cronbach's alpha (dimensionless); NaN if k < 2, fewer than 2 usable respondents, or the total
        variance is zero.
    n_used : int
        Respondents used (listwise) or the smallest number of respondents behind any covariance
        (pairwise).

    Examples
    --------
    Three respondents, two items: var(a) = 1, var(b) = 1, var(a + b) = 4, so
    alpha = 2 / 1 * (1 - 2 / 4) = 1.

    >>> cronbach_alpha(np.array([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]]))
    (1.0, 3)
    """
    x = np.asarray(items, dtype=float)
    if x.ndim != 2:
        raise ValueError(f"items must be 2-D (respondents x items), got shape {x.shape}")
    k = x.shape[1]
    if missing == "listwise":
        x = x[~np.isnan(x).any(axis=1)]
        n_used = x.shape[0]
        if k < 2 or n_used < 2:
            return float("nan"), n_used
        cov = np.cov(x, rowvar=False, ddof=1)
    elif missing == "pairwise":
        cov_df = pd.DataFrame(x).cov(min_periods=2, ddof=1)
        obs = (~np.isnan(x)).astype(int)
        pair_n = obs.T @ obs
        n_used = int(pair_n.min()) if k else 0
        if k < 2 or n_used < 2 or cov_df.isna().to_numpy().any():
            return float("nan"), n_used
        cov = cov_df.to_numpy()
    else:
        raise ValueError(f"missing must be 'listwise' or 'pairwise', got {missing!r}")
    total = float(cov.sum())
    if total <= 0.0:
        return float("nan"), n_used
    return float(k / (k - 1) * (1.0 - np.trace(cov) / total)), n_used


def dimension_reliability(
    answers: pd.DataFrame,
    *,
    questionnaire: Questionnaire = QUESTIONNAIRE_V1,
    missing: MissingPolicy = "listwise",
) -> dict[str, Reliability]:
    """Cronbach's alpha of every dimension for the respondents at hand.

    Parameters
    ----------
    answers : pandas.DataFrame
        One row per respondent, one column per item identifier (answer codes, NaN if missing).
    questionnaire : Questionnaire, optional
        Questionnaire version the answers belong to.
    missing : {"listwise", "pairwise"}, optional
        Missing-answer policy, see :func:`cronbach_alpha`.

    Returns
    -------
    dict[str, Reliability]
        Per dimension, in reporting order. Single-item dimensions (risk tolerance, the two trust
        items) have alpha NaN.
    """
    scores = item_scores(answers, questionnaire=questionnaire)
    out: dict[str, Reliability] = {}
    for dim in questionnaire.dimension_ids:
        cols = [it.id for it in questionnaire.items_of(dim)]
        alpha, n_used = cronbach_alpha(scores[cols], missing=missing)
        out[dim] = Reliability(dim, alpha, len(cols), n_used, missing)
    return out


def dimension_z_scores(scores: pd.DataFrame, *, dimensions: tuple[str, ...] | None = None) -> pd.DataFrame:
    """Standardise dimension scores against the group at hand (z = (s - mean) / sd, ddof = 1).

    Parameters
    ----------
    scores : pandas.DataFrame
        Dimension scores in [0, 1] as returned by :func:`dimension_scores` (other columns ignored).
    dimensions : tuple[str, ...], optional
        Dimensions to standardise; default those of the current questionnaire present in ``scores``.

    Returns
    -------
    pandas.DataFrame
        z-scores (dimensionless, in standard deviations of the group); NaN where the score is NaN or
        the dimension has no spread in the group.
    """
    dims = dimensions or tuple(d for d in QUESTIONNAIRE_V1.dimension_ids if d in scores.columns)
    block = scores[list(dims)].astype(float)
    sd = block.std(ddof=1)
    sd = sd.where(sd > 0)
    return (block - block.mean()) / sd
