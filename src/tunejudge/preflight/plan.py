"""Preflight's plan: what a run will ask and what it will cost, before money is spent.

The plan counts the requests the run will send -- judge (test items x models x metrics), RAGAS generation (from
RAGAS's own transforms, personas and synthesizers for the configured articles), the QA audit
(one per generated item) -- estimates their tokens and prices them at ``judge.prices``.
Verdicts already in the cache are not sent again; the plan counts a run from an empty cache.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from ..errors import DataError
from ..io import read_json
from ..run import hub
from .checks import Check

log = logging.getLogger(__name__)

# Rough token sizes of the prompts around the data (measured on the rendered prompts with the
# GPT-2 encoding): GEval's template with its steps, RAGAS's prompts with examples and schema text,
# the audit's prompt; and typical answers.
GEVAL_PROMPT_TOKENS = 420
GEVAL_ANSWER_TOKENS = 70
RAGAS_PROMPT_TOKENS = 600
RAGAS_ANSWER_TOKENS = 180
AUDIT_PROMPT_TOKENS = 230
AUDIT_ANSWER_TOKENS = 60
ITEM_TOKENS = 220  # instruction + input + reference of a test item, before the split exists
CNN_ARTICLE_TOKENS = 780  # a CNN/DailyMail article's mean length (GPT-2 tokens), before it is downloaded


@dataclass
class Plan:
    requests: dict = field(default_factory=dict)  # kind -> chat requests
    embeddings: int = 0
    input_tokens: dict = field(default_factory=dict)
    output_tokens: dict = field(default_factory=dict)
    embedding_tokens: int = 0
    notes: list = field(default_factory=list)
    jobs: dict = field(default_factory=dict)  # GPU jobs of the run: {"train": n, "respond": n, ...}
    at_most: set = field(default_factory=set)  # kinds whose count is an upper bound (RAGAS, the audit)
    kind_prices: dict = field(default_factory=dict)  # kind -> its own prices (an endpoint model's), else the judge's

    def add(self, kind: str, n: int, tokens_in: int, tokens_out: int) -> None:
        self.requests[kind] = self.requests.get(kind, 0) + n
        self.input_tokens[kind] = self.input_tokens.get(kind, 0) + n * tokens_in
        self.output_tokens[kind] = self.output_tokens.get(kind, 0) + n * tokens_out

    def cost(self, prices: dict | None) -> float | None:
        if not prices:
            return None
        return (sum(self.cost_of(k, prices) for k in self.requests)
                + self.embedding_tokens * prices.get("embeddings_per_mtok", 0) / 1e6)

    def cost_of(self, kind: str, prices: dict | None) -> float | None:
        """One kind's chat requests at ``prices``, or at the kind's own (USD; embeddings are counted in the
        total only)."""
        if not prices:
            return None
        own = self.kind_prices.get(kind)
        p = prices if own is None else own
        return (self.input_tokens.get(kind, 0) * p.get("input_per_mtok", 0)
                + self.output_tokens.get(kind, 0) * p.get("output_per_mtok", 0)) / 1e6

    def as_dict(self, prices: dict | None) -> dict:
        return {"requests": dict(self.requests), "total_requests": sum(self.requests.values()),
                "cost_usd_by_kind": {k: round(self.cost_of(k, prices), 2) for k in self.requests} if prices else None,
                "embedding_requests": self.embeddings, "input_tokens": dict(self.input_tokens),
                "output_tokens": dict(self.output_tokens), "embedding_tokens": self.embedding_tokens,
                "cost_usd": None if self.cost(prices) is None else round(self.cost(prices), 2),
                "prices": prices, "notes": list(self.notes), "jobs": dict(self.jobs),
                "upper_bounds": sorted(self.at_most)}


class RagasPlan(NamedTuple):
    chat: int  # at most: the worst mix of synthesizers the knowledge graph may allow
    unlinked: int  # when only the single-hop synthesizer has material (articles that share nothing)
    embeddings: int
    notes: list


# Requests a synthesizer asked for n rows sends at most besides the rows themselves (``qagen.generate``
# caps its persona-theme matchings at one per row): the single-hop one a matching per node it visits;
# the abstract multi-hop one a concept combination and a matching per cluster of linked nodes (RAGAS
# takes at most n clusters); the specific multi-hop one a matching per pair of linked nodes.
def _search_requests(synth: str, n: int, nodes: int) -> int:
    if synth == "multi_hop_abstract_query_synthesizer":
        return 2 * n
    if synth == "multi_hop_specific_query_synthesizer":
        return n
    return min(n, nodes)


def ragas_requests(article_tokens: list[int], gen: dict) -> RagasPlan:
    """The chat requests (at most, and when the articles do not link) and embedding requests
    RAGAS's generation sends for these articles.

    Transforms follow ``ragas.testset.transforms.default_transforms`` (token counts as RAGAS
    counts them, ``cl100k_base``). Short articles (101-500 tokens): a summary per article over 100
    tokens (and its embedding), the node filter on those, themes and entities on every article.
    Long articles (over 500 tokens in a quarter of them): headlines and summary per long article,
    then per chunk the filter, themes and entities; RAGAS's HeadlineSplitter makes chunks of at
    least 500 tokens but the last, so a long article of t tokens has at most t // 500 + 1 of them
    (counted with 50 tokens of slack for the cuts). Then one request per persona RAGAS derives (at
    most one per summarised article).

    Then the synthesizers, and this is why the count is a bound. Which of RAGAS's three have
    material depends on the knowledge graph the LLM's answers build: the single-hop one needs
    entities, the multi-hop ones need articles that link (similar summaries, shared entities). The
    rows are split exactly over those that have material (``qagen.generate.row_splits``), so the
    bound is the costliest mix of them (:func:`_search_requests` plus one request per row).
    ``unlinked`` is the count with the single-hop synthesizer alone (RAGAS visits
    ceil(n / (n / nodes rounded up)) nodes), exact for short articles when no step fails. Identical
    prompts are sent once (the answer cache), which neither count uses; a malformed answer asked
    again adds one request per retry.
    """
    from itertools import combinations

    from ..data.qagen.generate import SYNTHESIZERS, row_splits

    notes = []
    n_docs = len(article_tokens)
    filt = 1 if gen.get("node_filter", True) else 0
    long_docs = [t for t in article_tokens if t > 500]
    if n_docs and len(long_docs) / n_docs >= 0.25:
        nodes = sum((t + 50) // 500 + 1 for t in long_docs)
        summarised = len(long_docs)
        chat = 2 * summarised + (filt + 2) * nodes
        notes.append(f"{summarised} articles over 500 tokens: at most {nodes} chunks (RAGAS splits them at headlines)")
    else:
        summarised = sum(1 for t in article_tokens if t > 100)
        nodes = n_docs
        chat = (1 + filt) * summarised + 2 * nodes
    embeddings = summarised
    if not gen.get("personas"):
        chat += min(int(gen.get("num_personas", 3)), summarised)
    size = int(gen["size"])
    allowed = list(gen.get("synthesizers") or SYNTHESIZERS)
    if not nodes or not size:
        return RagasPlan(chat, chat, embeddings, notes)
    per_node = math.ceil(size / nodes)
    unlinked = chat + min(nodes, math.ceil(size / per_node)) + size
    visited = nodes + (n_docs if long_docs else 0)  # the single-hop synthesizer visits chunks or articles
    worst = max(sum(_search_requests(s, n, visited) + n for s, n in zip(mix, row_splits(size, len(mix))))
                for k in range(1, len(allowed) + 1) for mix in combinations(allowed, k))
    notes.append(f"at most {chat + worst} requests: RAGAS's multi-hop synthesizers run where the articles' knowledge "
                 f"graph links them, which only its answers decide; {unlinked} if the articles share nothing "
                 "(the single-hop synthesizer alone)")
    return RagasPlan(chat + worst, unlinked, embeddings, notes)


def judge_requests(responses: list[dict], models: list[str], metrics_cfg: list[dict], judge_cfg: dict,
                   cached) -> int:
    """Verdicts a judge run asks for these answers: non-empty answers (an empty one scores 0 without a
    request), one per distinct (answer, metric) prompt, less those ``cached(keys)`` already holds."""
    items = []
    for m in models:
        for r in responses:
            answer = r.get(f"model {m}") or ""
            items.append({**r, "response": answer})
    return verdicts_to_ask(items, metrics_cfg, judge_cfg, cached)


def controls_requests(test: list[dict], judge_cfg: dict, seed: int, cached) -> int:
    """Verdicts the judge_controls rule asks: both control arms of the covered items, less cached ones."""
    from ..judge.controls import control_items

    ctl = judge_cfg.get("controls") or {}
    if not ctl.get("enabled"):
        return 0
    arms = control_items(test, ctl.get("items_per_source"), seed)
    return verdicts_to_ask([it for items in arms.values() for it in items], judge_cfg["metrics"], judge_cfg, cached)


def adversarial_requests(test: list[dict], judge_cfg: dict, seed: int, cached) -> int:
    """Verdicts the adversarial controls add (judge.controls.adversarial): every kind's answer per covered
    item and metric under the judge's own defences, and, under each other defence setting measured, the
    kinds and the negative control again; less cached ones."""
    from ..judge.adversarial import adversarial_items
    from ..judge.controls import NEGATIVE, adversarial_settings, control_items

    ctl = judge_cfg.get("controls") or {}
    adv = ctl.get("adversarial") or {}
    if not ctl.get("enabled") or not adv.get("enabled"):
        return 0
    negatives = control_items(test, ctl.get("items_per_source"), seed)[NEGATIVE]
    own, *others = adversarial_settings(judge_cfg.get("defences") or (), adv.get("defences"))
    items = [it for arm in adversarial_items(negatives, adv.get("kinds") or []).values() for it in arm]
    n = verdicts_to_ask(items, judge_cfg["metrics"], judge_cfg, cached, own)
    for setting in others:
        n += verdicts_to_ask(items + negatives, judge_cfg["metrics"], judge_cfg, cached, setting)
    return n


def adversarial_estimate(cfg: dict, n_controlled: int) -> int:
    """The adversarial controls' verdicts before the test split exists."""
    from ..judge.controls import adversarial_settings

    adv = (cfg["judge"].get("controls") or {}).get("adversarial") or {}
    if not adv.get("enabled"):
        return 0
    kinds, metrics = len(adv.get("kinds") or []), len(cfg["judge"]["metrics"])
    extra = len(adversarial_settings(cfg["judge"].get("defences") or (), adv.get("defences"))) - 1
    return n_controlled * metrics * (kinds + extra * (kinds + 1))


def verdicts_to_ask(items: list[dict], metrics_cfg: list[dict], judge_cfg: dict, cached,
                    defences: tuple[str, ...] | None = None) -> int:
    """Distinct verdict keys of the non-empty answers among ``items``, less those already stored
    (``defences``: the prompt defences they are judged under; default the judge's own)."""
    from ..judge.defences import check
    from ..judge.metrics import load_metrics, render_prompts
    from ..judge.runner import judge_key, prompt_flags
    from ..llm.backends import identity

    judge, metrics = identity(judge_cfg), load_metrics(metrics_cfg)
    defences = check(judge_cfg.get("defences")) if defences is None else tuple(defences)
    items = [it for it in items if it["response"].strip()]
    keys = set()
    for metric in metrics:
        prompts = render_prompts(metric, items, **prompt_flags(judge, defences))
        keys.update(judge_key(judge, metric, it, p, defences=defences) for it, p in zip(items, prompts))
    return len(keys - set(cached(keys)))


SUMMEVAL_SIZE = (100, 16)  # SummEval: articles x system summaries
MT_BENCH_FIRST_TURN_PAIRS = 80 * 15  # at most: 80 questions x 15 pairs of 6 models (exact once downloaded)
SUMMEVAL_ITEM_TOKENS = 850  # a CNN/DailyMail article and a system summary
MT_BENCH_ITEM_TOKENS = 600  # an MT-Bench question and two first-turn answers
PAIRWISE_ANSWER_TOKENS = 60


def meta_eval_requests(cfg: dict, sets: tuple | None, judges: list[str], cached_by_judge=None) -> dict:
    """The requests ``snakemake meta_eval`` sends, per kind: {"meta_summeval": (n, tokens in per request),
    "meta_mt_bench": (n, tokens in)}. ``sets``: (SummEval items, MT-Bench pairs) once readable (exact,
    less ``cached_by_judge[judge](keys)``), else None (the configured sample sizes, the real sets' sizes)."""
    from ..judge.meta_eval import MT_BENCH_METRIC, summeval_metrics
    from ..judge.metrics import load_metrics
    from ..judge.pairwise import plan as pair_plan
    from ..llm.backends import identity
    from ..run.config import panel_judge

    meta = cfg.get("meta_eval") or {}
    if not meta:
        return {}
    se, mt = meta["summeval"], meta["mt_bench"]
    out = {"meta_summeval": [0, SUMMEVAL_ITEM_TOKENS], "meta_mt_bench": [0, MT_BENCH_ITEM_TOKENS]}
    for name in judges:
        jc = panel_judge(cfg["judge"], name)
        metrics = summeval_metrics(se, jc["metrics"])
        cached = (cached_by_judge or {}).get(name, lambda keys: {})
        if sets is None:
            arts = se.get("articles") or SUMMEVAL_SIZE[0]
            out["meta_summeval"][0] += arts * (se.get("summaries_per_article") or SUMMEVAL_SIZE[1]) * len(metrics)
            out["meta_mt_bench"][0] += 2 * (mt.get("pairs") or MT_BENCH_FIRST_TURN_PAIRS)
            continue
        items, pairs = sets
        out["meta_summeval"][0] += verdicts_to_ask(items, metrics, jc, cached)

        todo = pair_plan("A", "B", pairs, load_metrics([MT_BENCH_METRIC]), identity(jc).key_parts(), _Cached(cached))[3]
        out["meta_mt_bench"][0] += len(todo)
    return {k: tuple(v) for k, v in out.items()}


class _Cached:
    """A ``cached(keys)`` function as the answer store's get_many (what pairwise.plan reads)."""

    def __init__(self, cached):
        self.cached = cached

    def get_many(self, keys):
        return self.cached(list(keys))


def run_jobs(runs: dict) -> dict:
    """The GPU jobs of a run from its runs table (``tunejudge.run.runs.runs_table``): trainings (of them
    replicates, i.e. a model's extra seeds, and sweep points x seeds) and answer sets."""
    trained = [r for r in runs.values() if r["seed"] is not None]
    return {"train": len(trained), "respond": len(runs),
            "replicates": sum(1 for n, r in runs.items() if r["sweep"] is None and n != r["model"]),
            "sweep_runs": sum(1 for r in runs.values() if r["sweep"] is not None)}


@dataclass(frozen=True)
class _Items:
    """What every judge request of a run shares: the test items' count and mean tokens, the metrics'
    mean evaluation steps, and the judge's answer cap."""

    n: int
    tokens: float
    steps: float
    metrics: int
    answer: int  # a GEval answer's tokens, capped by judge.max_tokens
    max_tokens: int  # judge.max_tokens


def plan_run(cfg: dict, *, test_items: list[dict] | None = None, judge_todo: int | None = None,
             articles: dict | None = None, done: set = frozenset(), token_count=None,
             controls_todo: int | None = None, judged_runs: int | None = None, jobs: dict | None = None,
             meta: dict | None = None, adversarial_todo: int | None = None,
             endpoint_todo: dict | None = None) -> Plan:
    """The requests a run of ``cfg`` still sends. ``judge_todo``: the exact judge count once answers
    exist (:func:`judge_requests`), else every test item x judged run x metric (``judged_runs``: the
    models, their replicates and judged sweep runs; default one per model); ``articles``: source ->
    article texts once downloaded (else an assumed CNN length); ``done``: sources whose RAGAS
    test set or audit exists already (``generate:<source>``, ``audit:<source>``); ``jobs``: :func:`run_jobs`."""
    count = token_count or (lambda text: max(1, len(text) // 4))
    plan = Plan(jobs=dict(jobs or {}))
    metrics = cfg["judge"]["metrics"]
    n_items = len(test_items) if test_items is not None else int(cfg["split"]["test"]["size"])
    items = _Items(
        n=n_items,
        tokens=(sum(count(t["instruction"] + t["input"] + t["output"]) for t in test_items) / max(n_items, 1)
                if test_items else ITEM_TOKENS),
        steps=sum(count(" ".join(m["evaluation_steps"])) for m in metrics) / len(metrics), metrics=len(metrics),
        answer=min(GEVAL_ANSWER_TOKENS, int(cfg["judge"]["max_tokens"])), max_tokens=int(cfg["judge"]["max_tokens"]))
    _plan_judge(plan, cfg, items, judge_todo, len(cfg["models"]) if judged_runs is None else judged_runs)
    controls_todo = _plan_controls(plan, cfg, items, controls_todo, adversarial_todo)
    _plan_endpoints(plan, cfg, items, endpoint_todo)
    _plan_preference_samples(plan, cfg, items)
    _plan_pairwise_and_panel(plan, cfg, items, controls_todo)
    _plan_meta_eval(plan, items, meta)
    _plan_generation(plan, cfg, articles, done, count)
    return plan


def _plan_judge(plan: Plan, cfg: dict, items: _Items, todo: int | None, judged_runs: int) -> None:
    if todo is None:
        todo = items.n * judged_runs * items.metrics
        plan.notes.append(f"judge: every test item x judged run ({judged_runs}: models, their replicates, judged "
                          "sweep points) x metric (not every run has answered yet); an empty answer or a cached "
                          "verdict sends none")
    plan.add("judge", todo, int(GEVAL_PROMPT_TOKENS + items.steps + items.tokens + cfg["generation"]["max_new_tokens"]),
             items.answer)


def _plan_controls(plan: Plan, cfg: dict, items: _Items, todo: int | None, adversarial_todo: int | None) -> int | None:
    """The controls and adversarial controls; returns the controls' request count (the panel asks them too)."""
    controls = cfg["judge"].get("controls") or {}
    if not controls.get("enabled"):
        return todo
    per = controls.get("items_per_source")
    n_ctl = items.n if per is None else min(items.n, per * len(cfg["sources"]))
    if todo is None:
        todo = 2 * n_ctl * items.metrics
        plan.notes.append("judge_controls: a positive and a negative control answer per covered test item and "
                          "metric (judge.controls); exact once the test split exists")
    plan.add("judge_controls", todo, int(GEVAL_PROMPT_TOKENS + items.steps + 2 * items.tokens), items.answer)
    if (controls.get("adversarial") or {}).get("enabled"):
        if adversarial_todo is None:
            adversarial_todo = adversarial_estimate(cfg, n_ctl)
            plan.notes.append("adversarial: every kind of judge.controls.adversarial per covered test item and "
                              "metric, again under each defence setting measured (with the negative control); "
                              "exact once the test split exists")
        plan.add("adversarial", adversarial_todo, int(GEVAL_PROMPT_TOKENS + items.steps + 2 * items.tokens + 120),
                 items.answer)
    return todo


def _plan_endpoints(plan: Plan, cfg: dict, items: _Items, todo: dict | None) -> None:
    """Models behind an endpoint answering the test set."""
    for name, spec in cfg["models"].items():
        ep = spec.get("endpoint")
        if not ep:
            continue
        kind = f"answers:{name}"
        n = items.n if todo is None else todo.get(name, items.n)
        plan.add(kind, n, int(items.tokens), int(cfg["generation"]["max_new_tokens"]))
        plan.kind_prices[kind] = ep.get("prices") or {}  # unpriced: free here (a local server), said in the notes
        plan.notes.append(f"{kind}: model {name} ({ep['model']} at {ep.get('base_url') or 'OpenAI'}) answers each test "
                          "item once, at most generation.max_new_tokens; priced at its endpoint.prices"
                          + ("" if ep.get("prices") else " (none set: counted as free)"))


def _plan_preference_samples(plan: Plan, cfg: dict, items: _Items) -> None:
    """The judge ranking each judge-made preference set's samples."""
    for name, spec in (cfg.get("preferences") or {}).items():
        if spec.get("from") != "judge":
            continue
        exp = spec.get("experiment") or cfg["models"][spec["model"]].get("experiment")
        size = cfg["experiments"].get(exp, {}).get("size")
        n = spec.get("prompts") or (size if isinstance(size, int) else items.n)
        k = int(spec.get("samples", 4))
        per = 2 * items.metrics if spec.get("judge_mode") == "pairwise" else k * items.metrics
        plan.add("judge_samples", n * per,
                 int(GEVAL_PROMPT_TOKENS + items.steps + items.tokens + spec.get("max_new_tokens", 48)), items.answer)
        plan.notes.append(f"judge_samples: preference set {name}: at most {n} prompts x "
                          + ("2 orders" if spec.get("judge_mode") == "pairwise" else f"{k} samples") + " x metric")


def _plan_pairwise_and_panel(plan: Plan, cfg: dict, items: _Items, controls_todo: int | None) -> None:
    pairwise = cfg["judge"].get("pairwise") or {}
    if pairwise.get("enabled"):
        pairs = len(cfg["analysis"]["pairs"]) + len(cfg["models"])  # analysis.pairs, and the null model vs each
        plan.add("judge_pairwise", 2 * pairs * items.n * items.metrics,
                 int(250 + items.steps + items.tokens + 2 * cfg["generation"]["max_new_tokens"]),
                 min(PAIRWISE_ANSWER_TOKENS, items.max_tokens))
        plan.notes.append(f"judge_pairwise: {pairs} pairs (analysis.pairs and the null model against each model) x "
                          "test item x metric, both orders; an empty answer or a cached verdict sends none")
    panel = list((cfg["judge"].get("panel") or {}).get("judges") or {})
    if panel:
        controls = (cfg["judge"].get("controls") or {}).get("enabled")
        # each panel judge asks what the judge and its controls ask, as if none of its verdicts were cached
        plan.add("judge_panel", len(panel) * (items.n * len(cfg["models"]) * items.metrics + (
            controls_todo if controls else 0)),
            int(GEVAL_PROMPT_TOKENS + items.steps + items.tokens + cfg["generation"]["max_new_tokens"]), items.answer)
        plan.notes.append(f"judge_panel: {len(panel)} more judges ({', '.join(panel)}), each on every test item x "
                          "model x metric and the controls, none counted as cached; costed at judge.prices")


def _plan_meta_eval(plan: Plan, items: _Items, meta: dict | None) -> None:
    """meta_eval_requests: sent by `snakemake meta_eval` only."""
    for kind, (n, tokens) in (meta or {}).items():
        pair = kind == "meta_mt_bench"
        plan.add(kind, n, int((GEVAL_PROMPT_TOKENS if not pair else 250) + items.steps + tokens),
                 min(PAIRWISE_ANSWER_TOKENS, items.max_tokens) if pair else items.answer)
    if meta:
        plan.notes.append("meta_summeval, meta_mt_bench: sent only by `snakemake meta_eval` (the judge against human "
                          "experts), not by the run; exact once the sets are readable (local files, or downloaded)")


def _plan_generation(plan: Plan, cfg: dict, articles: dict | None, done: set, count) -> None:
    """RAGAS's test-set generation and the audit of its rows, for sources not yet generated or audited."""
    audited = set((cfg["curation"].get("audit") or {}).get("sources") or [])
    for source, spec in cfg["sources"].items():
        gen = spec.get("generate")
        if not gen:
            continue
        if f"generate:{source}" not in done:
            texts = (articles or {}).get(source)
            if texts is None:
                limit = int(gen.get("limit") or 1)
                tokens = [CNN_ARTICLE_TOKENS] * limit
                plan.notes.append(f"{source}: articles not downloaded yet (snakemake download); assumed {limit} x "
                                  f"{CNN_ARTICLE_TOKENS} tokens")
            else:
                tokens = [count(t) for t in texts]
            ragas = ragas_requests(tokens, gen)
            plan.notes.extend(f"{source}: {n}" for n in ragas.notes)
            mean_article = sum(tokens) / max(len(tokens), 1)
            plan.add("ragas", ragas.chat, int(RAGAS_PROMPT_TOKENS + min(mean_article, 500)),
                     min(RAGAS_ANSWER_TOKENS, int(gen.get("max_tokens", 1024))))
            plan.at_most.add("ragas")
            if cfg["judge"]["backend"] != "local":  # the local backend embeds with the packaged MiniLM
                plan.embeddings += ragas.embeddings
                plan.embedding_tokens += ragas.embeddings * 120
        if source in audited and f"audit:{source}" not in done:
            plan.add("audit", int(gen["size"]), AUDIT_PROMPT_TOKENS + 150, AUDIT_ANSWER_TOKENS)
            plan.at_most.add("audit")  # one per generated row: at most size


def render(checks: list[Check], plan: Plan, prices: dict | None) -> str:
    lines = ["preflight: checks"]
    lines += [f"  [{'ok' if c.ok else 'FAIL'}] {c.name}: {c.detail}" for c in checks]
    d = plan.as_dict(prices)
    if d["jobs"]:
        j = d["jobs"]
        lines.append(f"preflight: GPU jobs: {j['train']} trainings ({j['replicates']} replicates, {j['sweep_runs']} sweep "
                     f"runs), {j['respond']} answer sets")
    bounds = d["upper_bounds"]
    lines.append("preflight: planned requests (from an empty cache" + ("; <= marks an upper bound)" if bounds else ")"))
    for kind, n in d["requests"].items():
        cost = f"  ~${d['cost_usd_by_kind'][kind]:,.2f}" if d.get("cost_usd_by_kind") else ""
        lines.append(f"  {kind:<14} {'<=' if kind in bounds else '  '}{n:>7} requests  ~{d['input_tokens'][kind]:>10,} "
                     f"input tokens  ~{d['output_tokens'][kind]:>9,} output tokens{cost}")
    total = f"{'<=' if bounds else '  '}{d['total_requests']:>7}"
    lines.append(f"  total          {total} chat requests, {d['embedding_requests']} embedding requests")
    cost = d["cost_usd"]
    cost_text = f"${cost:.2f}" if cost is not None else "n/a (set judge.prices)"
    if cost is not None and bounds:
        cost_text += f" ({', '.join(bounds)} counted at their upper bound)"
    lines.append(f"  estimated cost: {cost_text}")
    lines += [f"  note: {n}" for n in d["notes"]]
    return "\n".join(lines)


# ---------------------------------------------------------------- the plan from what is on disk now
def _articles(cfg):
    """The articles of each generating source, where they can be read without the network."""
    from ..data.load import load_corpus

    out = {}
    for source, spec in cfg["sources"].items():
        gen = spec.get("generate")
        if not gen:
            continue
        loader = gen["articles"]
        if hub.is_hub(loader) and not Path(f"data/hub/{hub.dataset_key(loader)}.json").exists():
            continue
        # from the cache the download filled (the Hub may be gone by now). The Hub checks ran first,
        # online: huggingface_hub reads the offline switch once, when first imported.
        hub.go_offline()
        try:
            rows = load_corpus(loader, limit=gen.get("limit"), select="first",
                               key=f"sources.{source}.generate.articles")
            out[source] = [r["article"] for r in rows]
        finally:
            hub.go_online()
    return out


def _judge_todo(cfg, test, judged):
    """The exact judge count once every judged run has answered (results/responses/<run>.json), else None."""
    files = [Path(f"results/responses/{run}.json") for run in judged]
    if test is None or not all(f.exists() for f in files):
        return None
    from ..analysis.responses import merge_responses, test_records
    from ..llm.store import AnswerStore

    try:
        rows = merge_responses(test_records(test, "data/splits/test.json"), [(f, read_json(f)) for f in files])
    except DataError as e:  # an answer file of an older test set: its run answers again before it is judged
        log.info("judge count estimated: %s", e)
        return None
    with AnswerStore(cfg["judge"]["cache"]) as cache:
        return judge_requests(rows, list(judged), cfg["judge"]["metrics"], cfg["judge"],
                              lambda keys: cache.get_many(keys))


def _controls_todo(cfg, test):
    """The exact count of control verdicts once the test split exists, else None."""
    if test is None:
        return None
    from ..analysis.responses import test_records
    from ..llm.store import AnswerStore

    with AnswerStore(cfg["judge"]["cache"]) as cache:
        return controls_requests(test_records(test, "data/splits/test.json"), cfg["judge"], cfg["seed"],
                                 lambda keys: cache.get_many(keys))


def _adversarial_todo(cfg, test):
    """The exact count of adversarial control verdicts once the test split exists, else None."""
    if test is None:
        return None
    from ..analysis.responses import test_records
    from ..llm.store import AnswerStore

    with AnswerStore(cfg["judge"]["cache"]) as cache:
        return adversarial_requests(test_records(test, "data/splits/test.json"), cfg["judge"], cfg["seed"],
                                    lambda keys: cache.get_many(keys))


def _meta(cfg, judges):
    """The meta-evaluation's requests: exact where its sets are readable (local files, downloaded Hub sets)."""
    meta = cfg.get("meta_eval") or {}
    if not meta:
        return {}
    loaders = [meta["summeval"]["loader"], meta["mt_bench"]["loader"]]
    if any(hub.is_hub(x) and not Path(f"data/hub/{hub.dataset_key(x)}.json").exists() for x in loaders):
        return meta_eval_requests(cfg, None, judges)
    from ..data.load import load_corpus
    from ..judge.meta_eval import mt_bench_pairs, summeval_items
    from ..llm.store import AnswerStore

    hub.go_offline()
    try:
        se = [dict(r) for r in load_corpus(loaders[0], key="meta_eval.summeval.loader")]
        mt = [dict(r) for r in load_corpus(loaders[1], key="meta_eval.mt_bench.loader")]
    finally:
        hub.go_online()
    items = summeval_items(se, meta["summeval"].get("articles"), meta["summeval"].get("summaries_per_article"),
                           cfg["seed"], "meta_eval.summeval")
    pairs, _ = mt_bench_pairs(mt, meta["mt_bench"].get("pairs"), cfg["seed"], "meta_eval.mt_bench")
    with AnswerStore(cfg["judge"]["cache"]) as cache:
        return meta_eval_requests(cfg, (items, pairs), judges,
                                  {j: (lambda keys: cache.get_many(keys)) for j in judges})


def _counter(cfg):
    import tiktoken

    from ..data.qagen.offline import seed_tiktoken_cache

    seed_tiktoken_cache(Path(cfg["judge"]["cache"]).parent / "tiktoken")
    enc = tiktoken.get_encoding("cl100k_base")  # what RAGAS counts documents with
    return lambda text: len(enc.encode(text, disallowed_special=()))


def plan_from_files(cfg: dict, *, judged: list[str], runs: dict, meta_judges: list[str]) -> Plan:
    """The run's plan, as exact as what is on disk allows: the test split, the runs' answers, the answer
    store's verdicts, the downloaded articles and meta-evaluation sets (from an empty start: estimates).
    ``judged``: the runs the judge scores; ``runs``: :func:`tunejudge.run.runs.runs_table`."""
    test = read_json("data/splits/test.json") if Path("data/splits/test.json").exists() else None
    done = {f"generate:{s}" for s in cfg["sources"] if Path(f"data/generated/{s}/ragas_testset.jsonl").exists()}
    done |= {f"audit:{s}" for s in cfg["sources"] if Path(f"data/audit/{s}.json").exists()}
    return plan_run(cfg, test_items=test, judge_todo=_judge_todo(cfg, test, judged), articles=_articles(cfg),
                    done=done, token_count=_counter(cfg), controls_todo=_controls_todo(cfg, test),
                    judged_runs=len(judged), jobs=run_jobs(runs), meta=_meta(cfg, meta_judges),
                    adversarial_todo=_adversarial_todo(cfg, test), endpoint_todo=_endpoint_todo(cfg, test))


def _endpoint_todo(cfg, test):
    """Each endpoint model's requests: every test item, unless its answers exist (then none)."""
    if test is None:
        return None
    return {m: 0 if Path(f"results/responses/{m}.json").exists() else len(test)
            for m, spec in cfg["models"].items() if spec.get("endpoint")}
