#!/usr/bin/env python3
"""Checks the service's paired comparisons against independent implementations, on two
real Inspect logs (scripts/check-statistics runs it; see there).

Over the API alone, as the bootstrapped admins of US and UK (passwords from
JOINTEVAL_ADMIN_PASSWORD_US and JOINTEVAL_ADMIN_PASSWORD_UK), it builds the world two
institutes share: people with one role each, a protocol describing the task of
scripts/check_statistics_task.py approved by both, and another whose task names `topic`
as its cluster field (the only field of a log's sample metadata the service keeps), an
exercise on both agreed by both. For each protocol it imports log A into a
run of US and log B (under another eval id for version 2) into a run of UK, finishes
both, releases the US run to UK; then it asks `GET /v1/comparisons?a=US&b=UK` as UK's
evaluator for every scorer and pairing in PAIRINGS, of the second protocol's runs when
the pairing clusters and of the first's otherwise.

Every figure of each answer is computed again from the log files themselves
(`inspect_ai.log.read_eval_log`, paired by sample id and epoch here): scipy's
`ttest_rel` and `sem`, Inspect's `stderr`, `stderr(cluster=…)`, `ci` and
`krippendorff_alpha` metrics, statsmodels' `cohens_kappa` and exact `mcnemar`, the
`krippendorff` package. Each is compared to within TOLERANCE (absolute, relative above
1), counts exactly; a statistic the service leaves null must be one the independent
side cannot compute, and the other way round. Any mismatch exits 1 naming the request,
the figure and both values. It prints a table of what was checked and, with --show
QUERY, checks that query too and prints its answer as JSON.

    python check_statistics.py --base-url URL --log-a A.eval --log-b B.eval [--show QUERY]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import math
import os
import secrets
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import krippendorff
import numpy as np
import scipy.stats
from inspect_ai.log import read_eval_log, write_eval_log
from inspect_ai.scorer import SampleScore, Score, ci, stderr, value_to_float
from inspect_ai.scorer import krippendorff_alpha as inspect_alpha
from schemathesis_setup import TIMEOUT, Api, ApiError, new_person
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.inter_rater import cohens_kappa

TOLERANCE = 1e-9
SCORERS = ("quality", "verdict", "grade")
# Each pairing the service offers: every (sample, epoch), one epoch, each reducer, and
# clustered with and without reduction.
PAIRINGS: list[dict[str, Any]] = [
    {},
    {"epoch": 1},
    {"epoch": 2},
    {"reducer": "mean"},
    {"reducer": "median"},
    {"reducer": "max"},
    {"reducer": "min"},
    {"cluster": "topic"},
    {"reducer": "mean", "cluster": "topic"},
]
# The service reads as categories at most this many distinct values.
MAX_CATEGORIES = 100
TO_FLOAT = value_to_float()
TASK = "stats_pair"
PROTOCOL_CONTENT: dict[str, Any] = {
    "objective": "Paired statistics: scripts/check-statistics's fixture",
    "tasks": [
        {
            "name": "Paired statistics",
            "dataset": {"name": "stats_pair-data", "version": "1", "sha256": None, "sample_count": 200},
            "harness": {"name": "inspect", "task_ref": TASK},
            "scorers": list(SCORERS),
            "metrics": ["mean"],
            "epochs": 2,
        }
    ],
    "metrics": [{"name": "mean", "higher_is_better": True, "threshold": None}],
}
CLUSTER = "topic"
# The second protocol names `topic` as its task's cluster field: of an Inspect log's sample
# metadata, the service keeps that field alone, and clusters by it.
CLUSTERED_CONTENT: dict[str, Any] = {
    **PROTOCOL_CONTENT,
    "tasks": [{**PROTOCOL_CONTENT["tasks"][0], "cluster": CLUSTER}],
}
# The exercise's model under test is the one the logs ran: a run must be of it.
MODEL = {"provider": "mockllm", "name": "model", "version": "model", "access": "other"}
MODEL_VERSION = "mockllm/model"


# --- The world, over the API --------------------------------------------------------


def upload_log(api: Api, token: str, run_id: str, path: Path) -> Any:
    request = urllib.request.Request(
        f"{api.base_url}/v1/runs/{run_id}/inspect-log",
        data=path.read_bytes(),
        method="POST",
        headers={"authorization": f"Bearer {token}", "content-type": "application/zip", "accept": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as e:
        raise ApiError(f"POST /v1/runs/{run_id}/inspect-log answered {e.code}: {e.read().decode(errors='replace')}")


def relabelled(path: Path) -> Path:
    """A copy of a log under another eval id, written by Inspect itself: an institute
    imports an eval once, and each protocol's runs need their own import of the same
    scores."""
    log = read_eval_log(str(path))
    log.eval.eval_id = secrets.token_hex(11)
    copy = path.with_name(f"relabelled-{path.name}")
    write_eval_log(log, str(copy))
    return copy


@dataclass
class World:
    """Two finished runs of each protocol (US's released to UK), and the token of UK's
    evaluator: `plain` of the first, `clustered` of the one naming a cluster field."""

    plain: tuple[str, str]
    clustered: tuple[str, str]
    partner: str

    def pair(self, query: dict[str, Any]) -> tuple[str, str]:
        return self.clustered if "cluster" in query else self.plain


def build_world(api: Api, log_a: Path, log_b: Path) -> World:
    suffix = secrets.token_hex(3)
    tokens: dict[str, str] = {}
    for code in ("US", "UK"):
        password = os.environ.get(f"JOINTEVAL_ADMIN_PASSWORD_{code}")
        if not password:
            raise SystemExit(f"set JOINTEVAL_ADMIN_PASSWORD_{code} to the {code} admin's password")
        admin = api.login(grant_type="password", username=f"admin@{code.lower()}.jointeval.invalid", password=password)
        tokens[f"admin-{code}"] = admin
        for role in ("reviewer", "evaluator") + (("author",) if code == "US" else ()):
            _, tokens[f"{role}-{code}"] = new_person(api, admin, code, role, suffix)

    # (protocol id, version) of each content: an exercise names a protocol once.
    versions = []
    for n, content in enumerate((PROTOCOL_CONTENT, CLUSTERED_CONTENT)):
        protocol_id = api.call(
            "POST",
            "/v1/protocols",
            tokens["author-US"],
            {
                "slug": f"stats-{suffix}-{n}",
                "title": "Statistics check",
                "risk_area": "other",
                "participants": ["US", "UK"],
            },
            expect=201,
        )["id"]
        version = api.call(
            "POST", f"/v1/protocols/{protocol_id}/versions", tokens["author-US"], {"content": content}, expect=201
        )["number"]
        submitted = api.call("POST", f"/v1/protocols/{protocol_id}/versions/{version}/submit", tokens["author-US"])
        for code in ("US", "UK"):
            api.call(
                "POST",
                f"/v1/protocols/{protocol_id}/versions/{version}/reviews",
                tokens[f"reviewer-{code}"],
                {"verdict": "approve"},
                expect=201,
                headers={"if-match": f'"{submitted["content_sha256"]}"'},
            )
        versions.append((protocol_id, version))

    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    exercise_id = api.call(
        "POST",
        "/v1/exercises",
        tokens["admin-US"],
        {
            "title": f"Statistics check {suffix}",
            "model": MODEL,
            "protocol_versions": [{"protocol_id": p, "number": v} for p, v in versions],
            "participants": ["US", "UK"],
            "starts_at": now.isoformat(),
            "ends_at": (now + dt.timedelta(days=1)).isoformat(),
        },
        expect=201,
    )["id"]
    for code in ("US", "UK"):
        admin = tokens[f"admin-{code}"]
        read = api.etag(f"/v1/exercises/{exercise_id}", admin)
        api.call("POST", f"/v1/exercises/{exercise_id}/agree", admin, {}, headers={"if-match": read})

    def finished_run(code: str, version: tuple[str, int], log: Path) -> tuple[str, str]:
        token = tokens[f"evaluator-{code}"]
        run_id = api.call(
            "POST",
            f"/v1/exercises/{exercise_id}/runs",
            token,
            {
                "protocol_id": version[0],
                "protocol_version": version[1],
                "harness": {"name": "inspect", "version": "0.3.285"},
                "config": {"task": TASK, "model": MODEL_VERSION},
                "model_version": MODEL_VERSION,
            },
            expect=201,
        )["id"]
        api.call("POST", f"/v1/runs/{run_id}/start", token)
        upload_log(api, token, run_id, log)
        finished = api.call("POST", f"/v1/runs/{run_id}/finish", token, {"outcome": "succeeded"})
        return run_id, finished["digest"]

    partner = tokens["evaluator-UK"]
    pairs = []
    for version, logs in zip(versions, [(log_a, log_b), (relabelled(log_a), relabelled(log_b))], strict=True):
        run_a, digest_a = finished_run("US", version, logs[0])
        run_b, _ = finished_run("UK", version, logs[1])
        # Not released yet: the partner may not compare with it, and is not told which run hides.
        api.call("GET", comparison_path(run_a, run_b, {"scorer": SCORERS[0]}), partner, expect=404)
        api.call(
            "POST",
            f"/v1/runs/{run_a}/release",
            tokens["reviewer-US"],
            {"institutes": ["UK"]},
            headers={"if-match": f'"{digest_a}"'},
        )
        pairs.append((run_a, run_b))
    return World(plain=pairs[0], clustered=pairs[1], partner=partner)


def comparison_path(a: str, b: str, query: dict[str, Any]) -> str:
    return "/v1/comparisons?" + urllib.parse.urlencode({"a": a, "b": b, **query})


# --- The independent side, from the logs --------------------------------------------


@dataclass
class Value:
    number: float
    # What the value is as a category: its label, or its number.
    category: object
    topic: object


Side = dict[str, dict[Any, tuple[Any, object]]]


def read_scores(path: Path) -> Side:
    """As Inspect reads the log: each scorer's (value, topic) by (sample id, epoch), and
    each reduction's by sample id, keyed `scorer/reducer`."""
    log = read_eval_log(str(path))
    if log.status != "success":
        raise SystemExit(f"check_statistics: {path} is a {log.status} log")
    out: Side = {s: {} for s in SCORERS}
    for sample in log.samples or []:
        for name, score in (sample.scores or {}).items():
            out[name][(str(sample.id), sample.epoch)] = (score.value, (score.metadata or {}).get(CLUSTER))
    for reduction in log.reductions or []:
        out[f"{reduction.scorer}/{reduction.reducer}"] = {
            str(s.sample_id): (s.value, (s.metadata or {}).get(CLUSTER)) for s in reduction.samples
        }
    return out


def select(side: Side, scorer: str, query: dict[str, Any]) -> dict[Any, Value]:
    """One side's values as the query pairs them: by (sample, epoch), or by sample once
    reduced (a reduced value is a number, and is its own category). A reduction is
    Inspect's own, as the log holds it, for the reducers Inspect has; `min`, which it
    lacks, is numpy's."""
    reducer = query.get("reducer")
    if reducer is None:
        return {
            key: Value(TO_FLOAT(value), value if isinstance(value, str) else float(value), topic)
            for key, (value, topic) in side[scorer].items()
            if query.get("epoch") in (None, key[1])
        }
    reduced = side.get(f"{scorer}/{reducer}")
    if reduced is not None:
        return {(s, None): Value(TO_FLOAT(v), TO_FLOAT(v), topic) for s, (v, topic) in reduced.items()}
    if reducer != "min":
        raise SystemExit(f"check_statistics: the logs hold no `{reducer}` reduction of {scorer}")
    by_sample: dict[str, list[tuple[float, object]]] = {}
    for (sample_id, _), (value, topic) in side[scorer].items():
        by_sample.setdefault(sample_id, []).append((TO_FLOAT(value), topic))
    out = {}
    for sample_id, values in by_sample.items():
        number = float(np.min([v for v, _ in values]))
        topics = [t for _, t in values if t is not None]
        out[(sample_id, None)] = Value(number, number, min(topics) if topics else None)
    return out


def listed(keys: list[tuple[str, int | None]]) -> list[dict[str, Any]]:
    """The unmatched samples as the answer lists them: the first 100."""
    return [{"sample_id": s, "epoch": e} for s, e in keys[:100]]


def expected(a: dict[Any, Value], b: dict[Any, Value], query: dict[str, Any]) -> dict[str, Any]:
    """Every figure of the answer, computed here; None where it is undefined."""
    matched = sorted(set(a) & set(b))
    a_only = sorted(set(a) - set(b))
    b_only = sorted(set(b) - set(a))
    figures: dict[str, Any] = {
        "matched": len(matched),
        "unmatched.a_only": len(a_only),
        "unmatched.b_only": len(b_only),
        "unmatched.a_only_samples": listed(a_only),
        "unmatched.b_only_samples": listed(b_only),
        "a.scored": len(a),
        "b.scored": len(b),
        "pairing.by": "sample" if "reducer" in query else "sample_epoch",
    }
    xa = np.array([a[k].number for k in matched])
    xb = np.array([b[k].number for k in matched])
    d = xa - xb
    n = len(matched)
    topics = [a[k].topic if a[k].topic is not None else b[k].topic for k in matched]

    def sample_scores(values: list[Any]) -> list[SampleScore]:
        return [
            SampleScore(score=Score(value=v), sample_id=f"{k[0]}/{k[1]}", sample_metadata={CLUSTER: t})
            for k, v, t in zip(matched, values, topics)
        ]

    paired = scipy.stats.ttest_rel(xa, xb)
    paired_ci = paired.confidence_interval(0.95)
    differences = sample_scores(list(d))
    figures |= {
        "numeric.pairs": n,
        "numeric.mean_a": [("numpy mean", float(np.mean(xa)))],
        "numeric.mean_b": [("numpy mean", float(np.mean(xb)))],
        "numeric.mean_difference": [("numpy mean", float(np.mean(d)))],
        "numeric.paired_stderr": [
            ("scipy sem", float(scipy.stats.sem(d))),
            ("Inspect stderr()", float(stderr()(differences))),
        ],
        # The service's definition, √(s²_a/n + s²_b/n): each side's standard error, combined.
        "numeric.unpaired_stderr": [("scipy sem", math.hypot(float(scipy.stats.sem(xa)), float(scipy.stats.sem(xb))))],
    }
    if "cluster" in query:
        clusters = len(set(topics))
        se = float(stderr(cluster=CLUSTER)(differences))
        df = clusters - 1
        interval = ci(level=0.95, method="t", cluster=CLUSTER)(differences)
        t = float(np.mean(d)) / se
        quantile = float(scipy.stats.t.ppf(0.975, df))
        figures |= {
            "numeric.stderr": "clustered",
            "numeric.clusters": clusters,
            "numeric.degrees_of_freedom": df,
            "numeric.clustered_stderr": [("Inspect stderr(cluster)", se)],
            "numeric.confidence_interval.level": 0.95,
            "numeric.confidence_interval.lower": [
                ("Inspect ci(cluster)", float(interval["lower"])),
                ("scipy t.ppf", float(np.mean(d)) - quantile * se),
            ],
            "numeric.confidence_interval.upper": [
                ("Inspect ci(cluster)", float(interval["upper"])),
                ("scipy t.ppf", float(np.mean(d)) + quantile * se),
            ],
            "numeric.t_statistic": [("mean / Inspect stderr(cluster)", t)],
            "numeric.p_value": [("scipy t.sf", float(2 * scipy.stats.t.sf(abs(t), df)))],
        }
    else:
        interval = ci(level=0.95, method="t")(differences)
        figures |= {
            "numeric.stderr": "paired",
            "numeric.clusters": None,
            "numeric.clustered_stderr": None,
            "numeric.degrees_of_freedom": int(paired.df),
            "numeric.confidence_interval.level": 0.95,
            "numeric.confidence_interval.lower": [
                ("scipy ttest_rel", float(paired_ci.low)),
                ("Inspect ci()", float(interval["lower"])),
            ],
            "numeric.confidence_interval.upper": [
                ("scipy ttest_rel", float(paired_ci.high)),
                ("Inspect ci()", float(interval["upper"])),
            ],
            "numeric.t_statistic": [("scipy ttest_rel", float(paired.statistic))],
            "numeric.p_value": [("scipy ttest_rel", float(paired.pvalue))],
        }

    categories = sorted({a[k].category for k in matched} | {b[k].category for k in matched}, key=order)
    if len(categories) > MAX_CATEGORIES:
        figures["agreement"] = None
        return figures
    index = {c: i for i, c in enumerate(categories)}
    table = np.zeros((len(categories), len(categories)), dtype=int)
    for k in matched:
        table[index[a[k].category], index[b[k].category]] += 1
    cells = Counter({(a_c, b_c): int(table[i, j]) for a_c, i in index.items() for b_c, j in index.items()})
    figures |= {
        "agreement.pairs": n,
        "agreement.categories": categories,
        "agreement.table": +cells,
        "agreement.agreement_rate": [("numpy trace / n", float(np.trace(table)) / n)],
        "agreement.cohen_kappa": [("statsmodels cohens_kappa", float(cohens_kappa(table).kappa))],
    }
    if len(categories) == 2:
        test = mcnemar(table, exact=True)
        figures |= {
            "agreement.mcnemar.first_in_a_second_in_b": int(table[0, 1]),
            "agreement.mcnemar.second_in_a_first_in_b": int(table[1, 0]),
            "agreement.mcnemar.statistic": int(test.statistic),
            "agreement.mcnemar.p_value": [("statsmodels mcnemar(exact)", float(test.pvalue))],
        }
    else:
        figures["agreement.mcnemar"] = None
    # The two runs are two coders; the package takes categories as numbers (a label by its
    # rank, for nominal), Inspect's metric each pair as one sample's list of ratings.
    ranks = np.array([[index[a[k].category] for k in matched], [index[b[k].category] for k in matched]], dtype=float)
    numbers = np.array([xa, xb])
    raw = sample_scores([[a[k].category, b[k].category] for k in matched])
    as_numbers = sample_scores([[a[k].number, b[k].number] for k in matched])
    for level, data in (("nominal", ranks), ("ordinal", ranks), ("interval", numbers)):
        figures[f"agreement.krippendorff_alpha.{level}"] = [
            ("krippendorff", float(krippendorff.alpha(reliability_data=data, level_of_measurement=level))),
            (
                "Inspect krippendorff_alpha",
                float(inspect_alpha(level=level)(raw if level == "nominal" else as_numbers)),
            ),
        ]
    return figures


def order(category: object) -> tuple[float, str]:
    """Categories by number, as the service orders them (labels by their number)."""
    return (TO_FLOAT(category) if isinstance(category, str) else float(category), str(category))  # type: ignore[arg-type]


# --- The comparison of the two ------------------------------------------------------


def service_category(category: dict[str, Any]) -> object:
    """A category of the answer as the independent side names it: a number's text is the
    number, a label is itself."""
    label, number = category["label"], category["number"]
    try:
        if number is not None and float(label) == number:
            return float(number)
    except ValueError:
        pass
    return label


def lookup(answer: dict[str, Any], path: str) -> Any:
    value: Any = answer
    for part in path.split("."):
        if value is None:
            return None
        value = value[part]
    return value


@dataclass
class Check:
    request: str
    figure: str
    source: str
    service: Any
    independent: Any
    # None for a figure compared exactly.
    difference: float | None
    tolerant: bool
    ok: bool


def close(service: Any, independent: float) -> tuple[bool, float | None]:
    if not isinstance(service, (int, float)) or isinstance(service, bool) or not math.isfinite(independent):
        return False, None
    difference = abs(service - independent)
    return difference <= TOLERANCE * max(1.0, abs(independent)), difference


def compare(request: str, answer: dict[str, Any], figures: dict[str, Any]) -> list[Check]:
    checks = []
    for figure, want in figures.items():
        got = lookup(answer, figure) if figure not in ("agreement.table", "agreement.categories") else None
        if figure == "agreement.categories" and answer.get("agreement"):
            got = [service_category(c) for c in answer["agreement"]["categories"]]
        if figure == "agreement.table" and answer.get("agreement"):
            got = Counter(
                {
                    (
                        service_category({"label": c["a"], "number": number(answer, c["a"])}),
                        service_category({"label": c["b"], "number": number(answer, c["b"])}),
                    ): c["count"]
                    for c in answer["agreement"]["table"]
                }
            )
        if isinstance(want, list) and want and isinstance(want[0], tuple):
            for source, value in want:
                ok, difference = close(got, value)
                checks.append(Check(request, figure, source, got, value, difference, True, ok))
        else:
            checks.append(Check(request, figure, "exact", got, want, None, False, got == want))
    return checks


def number(answer: dict[str, Any], label: str) -> float | None:
    return next(c["number"] for c in answer["agreement"]["categories"] if c["label"] == label)


def shown_query(text: str) -> dict[str, Any]:
    """--show's query, checked like the others: a scorer of the task, and known parameters."""
    query: dict[str, Any] = dict(urllib.parse.parse_qsl(text))
    if query.get("scorer") not in SCORERS or not set(query) <= {"scorer", "epoch", "reducer", "cluster"}:
        raise SystemExit(f"check_statistics: --show takes scorer={'|'.join(SCORERS)} and epoch, reducer or cluster")
    if "epoch" in query:
        query["epoch"] = int(query["epoch"])
    return query


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--log-a", required=True, type=Path, help="imported into the US run (run a)")
    parser.add_argument("--log-b", required=True, type=Path, help="imported into the UK run (run b)")
    parser.add_argument(
        "--show", metavar="QUERY", help="check this query too, and print its answer (e.g. 'scorer=verdict&epoch=1')"
    )
    args = parser.parse_args()
    # Inspect's alpha warns that nominal is a poor level for numbers: it is one of three here.
    logging.getLogger("inspect_ai").setLevel(logging.ERROR)
    api = Api(args.base_url)
    world = build_world(api, args.log_a, args.log_b)
    logs = read_scores(args.log_a), read_scores(args.log_b)

    checks: list[Check] = []
    rows = []
    queries = [{"scorer": scorer, **pairing} for scorer in SCORERS for pairing in PAIRINGS]
    shown = shown_query(args.show) if args.show else None
    if shown is not None and shown not in queries:
        queries.append(shown)
    shown_answer = None
    for query in queries:
        request = urllib.parse.urlencode(query)
        answer = api.call("GET", comparison_path(*world.pair(query), query), world.partner)
        if query == shown:
            shown_answer = answer
        scorer = query["scorer"]
        these = compare(
            request, answer, expected(select(logs[0], scorer, query), select(logs[1], scorer, query), query)
        )
        checks += these
        worst = max((c.difference or 0.0 for c in these if c.tolerant), default=0.0)
        rows.append(
            (
                request,
                answer["matched"],
                answer["unmatched"]["a_only"],
                answer["unmatched"]["b_only"],
                sum(c.tolerant for c in these),
                sum(not c.tolerant for c in these),
                worst,
            )
        )

    print(f"{'request':<42} {'pairs':>5} {'a/b only':>8} {'figures':>7} {'exact':>5} {'worst |Δ|':>10}")
    for request, pairs, a_only, b_only, figures, exact, worst in rows:
        print(f"{request:<42} {pairs:>5} {f'{a_only}/{b_only}':>8} {figures:>7} {exact:>5} {worst:>10.1e}")
    compared = [c for c in checks if c.tolerant]
    worst = max(compared, key=lambda c: c.difference or 0.0)
    sources = Counter(c.source for c in compared)
    print(
        f"{len(compared)} figures to within {TOLERANCE:g} and {len(checks) - len(compared)} counts, "
        f"labels and lists exactly, over {len(rows)} requests; worst |Δ| {worst.difference:.2e} "
        f"({worst.figure}, {worst.request})"
    )
    print("against: " + ", ".join(f"{source} ({count})" for source, count in sorted(sources.items())))
    if shown_answer is not None:
        print(json.dumps(shown_answer, indent=2))
    failed = [c for c in checks if not c.ok]
    for c in failed:
        print(
            f"MISMATCH {c.figure} ({c.source}) for GET /v1/comparisons?{c.request}: service {c.service!r}, "
            f"independent {c.independent!r}",
            file=sys.stderr,
        )
    if failed:
        sys.exit(f"check_statistics: {len(failed)} of {len(checks)} figures disagree")


if __name__ == "__main__":
    try:
        main()
    except ApiError as e:
        sys.exit(f"check_statistics: {e}")
