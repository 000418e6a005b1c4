"""RAGAS test-set generation over news articles, one bad answer never costing the whole run.

The pieces are RAGAS's own: its knowledge graph, its default transforms (summaries, themes,
entities, embeddings, similarity), its personas (generated from the graph, or given), its query
synthesizers and their prompts. What this module adds is the driving loop that
``TestsetGenerator.generate`` would run, with two changes a pipeline needs:

- a step that fails (a malformed answer after the client's retries, a RAGAS parsing error, a
  synthesizer that finds nothing to work on) is recorded with its reason and the run goes on;
  ``TestsetGenerator`` turns one such failure into a crash, or into a NaN that crashes later;
- the order is fixed: synthesizers one after another, each seeded, document nodes with ids derived
  from the article ids, so the same config and seed (and the cached LLM answers) give the same rows;
- the requests are bounded, so preflight's plan is an upper bound (``preflight.ragas_requests``):
  the rows asked are split exactly over the synthesizers (RAGAS rounds each share up: 4 rows over
  3 synthesizers made 6), and a synthesizer matches personas to themes at most once per row it
  was asked for (RAGAS visits every node or linked pair of nodes until it has enough scenarios,
  so a graph whose matches come out empty could cost a request per pair of articles).

An endpoint that cannot serve the run (unreachable, bad key, budget spent) still stops it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import uuid
from collections import Counter
from dataclasses import dataclass, field

from tqdm import tqdm

from ...errors import DataError, TunejudgeError
from ...llm.client import JudgeError

log = logging.getLogger("tunejudge.qagen")

SYNTHESIZERS = ("single_hop_specific_query_synthesizer", "multi_hop_abstract_query_synthesizer",
                "multi_hop_specific_query_synthesizer")


class GenerationError(TunejudgeError):
    pass


@dataclass
class GenerationResult:
    rows: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)

    def skip(self, stage: str, step: str, error, **where) -> None:
        reason = error if isinstance(error, str) else _describe(error)
        self.skipped.append({"stage": stage, "step": step, "reason": reason, **where})
        log.warning("skipped (%s, %s): %s", stage, step, reason)


def _describe(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {text[:300]}" if text else type(e).__name__


def articles_from_rows(rows, where: str, text_field: str = "article", id_field: str = "id") -> list[dict]:
    """Corpus rows (CNN/DailyMail's schema) -> ``{"article_id", "text"}``; a bad row names itself."""
    out = []
    for i, row in enumerate(rows):
        for f in (text_field, id_field):
            if f not in row:
                raise DataError(where, i, f, "missing from the corpus row")
            if not isinstance(row[f], str) or not row[f].strip():
                raise DataError(where, i, f, "expected a non-empty string")
        out.append({"article_id": row[id_field], "text": row[text_field].strip()})
    if not out:
        raise DataError(where, problem="no articles to generate questions from")
    return out


def _reraise_fatal(results) -> None:
    for r in results:
        if isinstance(r, JudgeError) or (isinstance(r, BaseException) and not isinstance(r, Exception)):
            raise r


def _flatten(transforms) -> list:
    from ragas.testset.transforms.engine import Parallel

    if isinstance(transforms, Parallel):
        return _flatten(transforms.transformations)
    if isinstance(transforms, (list, tuple)):
        return [t for tr in transforms for t in _flatten(tr)]
    return [transforms]


async def _apply_transforms(kg, transforms, result: GenerationResult, progress) -> None:
    """RAGAS's transforms in RAGAS's order; a node whose step failed just lacks that property."""
    for transform in _flatten(transforms):
        name = type(transform).__name__
        try:
            coros = list(transform.generate_execution_plan(kg))
        except Exception as e:  # e.g. a similarity builder over nodes whose embedding failed
            result.skip("transform", name, e)
            continue
        bar = tqdm(total=len(coros), desc=f"ragas {name}", unit="node", file=progress, mininterval=1.0)
        results = await asyncio.gather(*(_counted(c, bar) for c in coros), return_exceptions=True)
        bar.close()
        _reraise_fatal(results)
        for r in results:
            if isinstance(r, Exception):
                result.skip("transform", name, r)
        _stable_ids(kg)


def _stable_ids(kg) -> None:
    """Ids derived from the graph, not drawn: RAGAS gives the chunks its splitter makes and every
    relationship a random uuid4, and orders nodes and pairs by those ids and their hashes. Run after
    each transform: what has a derived id keeps it (and is counted, so a twin gets the next one)."""
    seen: Counter = Counter()

    def derive(item, name: str) -> None:
        seen[name] += 1
        if item.id.version != 5:
            item.id = uuid.uuid5(uuid.NAMESPACE_URL, f"tunejudge:{name}:{seen[name]}")

    for node in kg.nodes:
        if getattr(node.type, "name", "") == "CHUNK":
            derive(node, "chunk:" + hashlib.sha256(str(node.get_property("page_content")).encode()).hexdigest())
    for rel in kg.relationships:
        derive(rel, f"{rel.type}:{rel.source.id}:{rel.target.id}")


def _stable_clusters(synth) -> None:
    """A synthesizer's clusters in an order fixed by node ids. RAGAS returns the multi-hop ones from
    sets, the linked pairs with a fresh random-id relationship each, so the same graph and seed
    visited the pairs in another order, and gave other rows, from one run to the next."""
    find = synth.get_node_clusters

    def ordered(knowledge_graph, *args, **kwargs):
        clusters = list(find(knowledge_graph, *args, **kwargs))
        if clusters and isinstance(clusters[0], tuple):  # (node, relationship, node)
            return sorted(clusters, key=lambda c: (str(c[0].id), str(c[-1].id), c[1].type))
        if clusters and isinstance(clusters[0], (set, frozenset)):
            clusters = [sorted(c, key=lambda node: str(node.id)) for c in clusters]
            return sorted(clusters, key=lambda c: [str(node.id) for node in c])
        return clusters  # single nodes, in the graph's own order

    synth.get_node_clusters = ordered


async def _counted(coro, bar):
    try:
        return await coro
    finally:
        bar.update(1)


def _article_ids(contexts: list[str], articles: list[dict]) -> list[str]:
    ids = []
    for ctx in contexts:
        probe = ctx.strip()[:200]
        hit = next((a["article_id"] for a in articles if probe and probe in a["text"]), "")
        if hit not in ids:
            ids.append(hit)
    return ids


def _row(sample, synthesizer: str, articles: list[dict]) -> dict:
    def value(x):
        return getattr(x, "value", x)

    question, reference = sample.user_input, sample.reference
    if not isinstance(question, str) or not question.strip():
        raise GenerationError("the generated question is empty")
    if not isinstance(reference, str) or not reference.strip():
        raise GenerationError("the generated reference answer is empty")
    contexts = [c for c in (sample.reference_contexts or []) if isinstance(c, str)]
    if not contexts:
        raise GenerationError("the sample has no reference context")
    ids = _article_ids(contexts, articles)
    return {
        "user_input": question.strip(),
        "reference": reference.strip(),
        "reference_contexts": contexts,
        "persona_name": sample.persona_name or "",
        "query_style": value(sample.query_style) or "",
        "query_length": value(sample.query_length) or "",
        "synthesizer_name": synthesizer,
        "article_id": ids[0],
        "article_ids": ids,
    }


def _slim_prompts(owner, examples: bool, schema: bool) -> None:
    """Leave the few-shot examples and/or the JSON-schema text out of every RAGAS prompt ``owner``
    holds. A small model copies them as its answer: SmolLM2-135M gave "Elon Musk, Tesla, SpaceX"
    (an example's entities) for an article on a Lagos science fair, and "additionalProperties" (a
    schema keyword) as a persona's name. With a grammar-constrained server the schema still binds
    the answer, sent as the request's response_format."""
    from ragas.prompt import PydanticPrompt

    for value in list(vars(owner).values()):
        if isinstance(value, PydanticPrompt):
            if not examples:
                value.examples = []
            if not schema:
                value._generate_output_signature = _no_signature


def _no_signature(indent: int = 4) -> str:
    return "Reply with a JSON object."


def _matching_prompt_class():
    from ragas.testset.synthesizers.prompts import (
        PersonaThemesMapping,
        ThemesPersonasMatchingPrompt,
    )

    class ConstrainedThemesPersonasMatching(ThemesPersonasMatchingPrompt):
        """RAGAS's persona-theme matching, with the answer's schema built from the input: one key per
        persona (all required, no others) and themes drawn from the node's own themes. RAGAS's own
        schema allows any key, and a key that names no persona crashes the synthesizer (KeyError).

        ``limit``: the calls allowed (one per row the synthesizer was asked for); past it the answer
        is an empty mapping, sent to no one, so the node or cluster gives no scenario."""

        limit: int | None = None
        calls: int = 0

        async def generate(self, llm, data, temperature=None, stop=None, callbacks=None, retries_left=3):
            from .llm import RagasEndpointLLM

            if self.limit is not None and self.calls >= self.limit:
                return PersonaThemesMapping(mapping={})
            self.calls += 1
            if not isinstance(llm, RagasEndpointLLM):
                return await super().generate(llm, data, temperature, stop, callbacks, retries_left)
            themes = sorted(set(data.themes))  # RAGAS builds the list from a set: fix its order
            data = data.model_copy(update={"themes": themes})
            names = list(dict.fromkeys(p.name for p in data.personas))
            items: dict = {"type": "array", "items": {"type": "string", "enum": themes}}
            if llm.max_chars:  # a grammar-bound small model: one to three themes per persona
                items.update(minItems=1, maxItems=min(len(themes), 3))
            schema = {"title": "PersonaThemesMapping", "type": "object", "additionalProperties": False,
                      "required": ["mapping"],
                      "properties": {"mapping": {"type": "object", "additionalProperties": False, "required": names,
                                                 "properties": {n: items for n in names}}}}
            return await llm.agenerate(self.to_string(data), PersonaThemesMapping, schema=schema)

    return ConstrainedThemesPersonasMatching


def _constrain_matching(synth) -> None:
    if hasattr(synth, "theme_persona_matching_prompt"):
        old = synth.theme_persona_matching_prompt
        new = _matching_prompt_class()()
        new.instruction, new.examples = old.instruction, old.examples
        new._generate_output_signature = old._generate_output_signature
        synth.theme_persona_matching_prompt = new


def query_distribution(llm, kg, names: list[str] | None):
    """RAGAS's default synthesizers that have material in this graph, optionally restricted by name."""
    from ragas.testset.synthesizers import default_query_distribution

    dist = default_query_distribution(llm, kg)  # ValueError when none fits the graph
    if names:
        unknown = set(names) - set(SYNTHESIZERS)
        if unknown:
            raise GenerationError(f"unknown synthesizer {sorted(unknown)[0]!r}; one of {list(SYNTHESIZERS)}")
        dist = [(s, p) for s, p in dist if s.name in names]
        if not dist:
            raise ValueError(f"none of the synthesizers {names} has material in this knowledge graph")
    return [(s, 1 / len(dist)) for s, _ in dist]


def row_splits(size: int, k: int) -> list[int]:
    """``size`` rows over ``k`` synthesizers of equal weight, summing to ``size`` (the first ones
    take the remainder). RAGAS's ``calculate_split_values`` rounds every share up."""
    return [size // k + (1 if i < size % k else 0) for i in range(k)]


async def _synthesize(kg, personas, distribution, size: int, seed: int, articles, result, progress) -> None:
    for (synth, _), n in zip(distribution, row_splits(size, len(distribution))):
        if not n:
            continue
        matching = getattr(synth, "theme_persona_matching_prompt", None)
        if hasattr(matching, "limit"):
            matching.limit, matching.calls = n, 0
        random.seed(f"{seed}:{synth.name}")  # RAGAS samples its scenarios with the global RNG
        try:
            # RAGAS rounds up per node (3 articles, n=8: 9 scenarios); keep the n asked for
            scenarios = (await synth.generate_scenarios(n=n, knowledge_graph=kg, persona_list=personas))[:n]
        except JudgeError:
            raise
        except Exception as e:
            result.skip("scenarios", synth.name, e, wanted=n)
            continue
        if len(scenarios) < n and hasattr(matching, "limit") and matching.calls >= n:
            result.skip("scenarios", synth.name, f"{len(scenarios)} scenarios of the {n} asked after {n} persona-theme "
                        "matchings (one per row asked: the most it may send)", wanted=n)
        bar = tqdm(total=len(scenarios), desc=f"ragas {synth.name}", unit="item", file=progress, mininterval=1.0)
        samples = await asyncio.gather(*(_counted(synth.generate_sample(scenario=s), bar) for s in scenarios),
                                       return_exceptions=True)
        bar.close()
        _reraise_fatal(samples)
        for scenario, sample in zip(scenarios, samples):
            persona = getattr(getattr(scenario, "persona", None), "name", "")
            if isinstance(sample, Exception):
                result.skip("sample", synth.name, sample, persona_name=persona)
                continue
            try:
                result.rows.append(_row(sample, synth.name, articles))
            except GenerationError as e:
                result.skip("sample", synth.name, str(e), persona_name=persona)


def generate_testset(articles: list[dict], *, llm, embeddings, size: int, seed: int,
                     personas: list[dict] | None = None, num_personas: int = 3,
                     synthesizers: list[str] | None = None, node_filter: bool = True,
                     prompt_examples: bool = True, prompt_schema: bool = True,
                     progress=None) -> GenerationResult:
    """Up to ``size`` RAGAS rows from ``articles``; every step that failed is in ``skipped``.

    ``node_filter: False`` leaves out RAGAS's ``CustomNodeFilter``, which removes the nodes an LLM
    scores 2 of 5 or less for question potential (SmolLM2-135M scored every sample article 1)."""
    from langchain_core.documents import Document
    from ragas.testset.graph import KnowledgeGraph, Node, NodeType
    from ragas.testset.persona import Persona, generate_personas_from_kg
    from ragas.testset.transforms import default_transforms

    result = GenerationResult()
    docs = [Document(page_content=a["text"], metadata={"article_id": a["article_id"]}) for a in articles]
    try:
        transforms = default_transforms(documents=docs, llm=llm, embedding_model=embeddings)
    except ValueError as e:  # "Documents appears to be too short": RAGAS wants > 100 tokens
        raise GenerationError(f"RAGAS refuses these articles: {e}") from None
    if not node_filter:  # RAGAS's LLM-scored node filter; a weak model scores every article 1 of 5
        transforms = [t for t in _flatten(transforms) if type(t).__name__ != "CustomNodeFilter"]
    for t in _flatten(transforms):
        _slim_prompts(t, prompt_examples, prompt_schema)
    kg = KnowledgeGraph(nodes=[
        Node(id=uuid.uuid5(uuid.NAMESPACE_URL, f"tunejudge:article:{a['article_id']}"), type=NodeType.DOCUMENT,
             properties={"page_content": a["text"], "document_metadata": {"article_id": a["article_id"]}})
        for a in articles
    ])
    random.seed(seed)
    asyncio.run(_run(_apply_transforms(kg, transforms, result, progress), llm))

    if personas:
        persona_list = [Persona(name=p["name"], role_description=p["role_description"]) for p in personas]
    else:
        try:
            persona_list = generate_personas_from_kg(kg=kg, llm=llm, num_personas=num_personas)
        except JudgeError:
            raise
        except Exception as e:
            result.skip("personas", "generate_personas_from_kg", e)
            return result
        log.info("personas from the knowledge graph: %s", [p.name for p in persona_list])

    try:
        distribution = query_distribution(llm, kg, synthesizers)
    except ValueError as e:
        result.skip("scenarios", "query_distribution", e)
        return result
    for synth, _ in distribution:
        _slim_prompts(synth, prompt_examples, prompt_schema)
        _constrain_matching(synth)
        _stable_clusters(synth)
    log.info("synthesizers: %s", [f"{s.name} ({p:.2f})" for s, p in distribution])
    asyncio.run(_run(_synthesize(kg, persona_list, distribution, size, seed, articles, result, progress), llm))
    result.rows.sort(key=lambda r: (r["article_id"], r["synthesizer_name"], r["user_input"], r["reference"]))
    return result


async def _run(coro, llm):
    try:
        return await coro
    finally:
        await llm.aclose()
