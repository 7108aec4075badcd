"""The cheap baseline a student has to beat: TF-IDF (word 1-2-grams and character 2-5-grams)
and a logistic regression, trained on the same rows. `chatdistill eval intents --baseline-train`
and `bench/intents.py` score it beside the student, on the same rows, in the same run."""

from __future__ import annotations

from collections.abc import Sequence

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline, make_union

from distill_worker.data.loaders import Utterance


def fit_tfidf(train: Sequence[Utterance]) -> Pipeline:
    """TF-IDF + logistic regression on the labelled rows of `train` (their text only)."""
    labelled = [r for r in train if r.intent]
    if len({r.intent for r in labelled}) < 2:
        raise ValueError("the TF-IDF baseline needs labelled rows of at least two intents")
    model = make_pipeline(
        make_union(
            TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1),
            TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2),
        ),
        LogisticRegression(C=10.0, max_iter=2000),
    )
    model.fit([r.text for r in labelled], [r.intent for r in labelled])
    return model


def tfidf_predictions(model: Pipeline, rows: Sequence[Utterance]) -> list[str]:
    """The baseline's intent per row (argmax; it has no handoff)."""
    return [str(p) for p in model.predict([r.text for r in rows])]
