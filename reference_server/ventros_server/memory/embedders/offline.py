"""The default embedder: feature hashing, no model, no download.

What it captures, honestly:

* **shared words** (accent- and case-folded), weighted highest, and **word bigrams** (word order
  for two-word phrases such as "product y" or "atraso entrega");
* **character 3-5-grams**, which give partial credit to morphological variants and typos
  ("deliver" / "delivery" / "delivered", "atrasado" / "atrasada", "reclamação" / "reclamou");
* a small **bilingual CRM concept lexicon** (about 40 concepts, e.g. delay = {delay, late,
  atraso, demora...}): a word of the lexicon also adds its concept's feature, so "atraso na
  entrega" and "late delivery" get close although they share no word. Outside that vocabulary
  there are no synonyms and no cross-language matches.

What it does not capture: meaning beyond those words. "The client wants to leave" and "churn
risk" are unrelated to it. For real semantics use the ``openai`` or ``minilm`` embedders.

Each feature's hash picks a dimension and a sign (signed feature hashing, so collisions cancel
out on average rather than pile up); the sum is L2-normalised. Vectors are deterministic and
stable across processes, so they can be stored and compared later.
"""

from __future__ import annotations

import numpy as np

from ..text import Grams, HashedBatch, terms_of

#: Weight of one occurrence of each kind of feature. Words dominate; the many character
#: n-grams of a word together weigh about as much as the word itself.
_CHUNK = 4096

WEIGHTS = {"word": 1.0, "bigram": 0.6, "char": 0.12, "concept": 1.2}

CONCEPTS: dict[str, str] = {
    "delivery": "delivery deliver delivered deliveries shipping shipment shipped ship courier"
    " entrega entregas entregar entregue entregou envio frete transportadora correios",
    "delay": "delay delayed delays late lateness overdue slow atraso atrasos atrasado atrasada"
    " atrasou demora demorou demorado lento",
    "complaint": "complaint complaints complain complained complaining unhappy dissatisfied angry"
    " frustrated upset reclamacao reclamacoes reclamou reclamar queixa queixou insatisfeito"
    " insatisfeita chateado chateada irritado irritada",
    "purchase": "purchase purchased purchases bought buy buying order ordered orders comprou compra"
    " compras comprar pedido pedidos adquiriu",
    "refund": "refund refunded refunds reimburse reimbursement reembolso reembolsar estorno estornar",
    "return": "return returned returns exchange devolucao devolver devolveu troca trocar",
    "price": "price prices pricing cost expensive cheap preco precos caro cara barato valor",
    "discount": "discount discounts coupon coupons voucher promo promotion desconto descontos cupom promocao",
    "cancel": "cancel cancelled canceled cancellation unsubscribe cancelar cancelou cancelamento",
    "payment": "payment payments pay paid invoice billing bill pagamento pagar pagou boleto fatura pix",
    "defect": "broken defective damaged faulty defect quebrado quebrada defeito danificado estragado",
    "support": "support help helpdesk ticket tickets suporte ajuda atendimento chamado",
    "satisfied": "happy satisfied great excellent love loved pleased satisfeito satisfeita feliz"
    " otimo excelente adorou gostou",
    "subscription": "subscription plan upgrade renewal renew assinatura plano renovacao renovar",
    "afternoon": "afternoon tarde 2pm 3pm 4pm",
    "morning": "morning manha 9am 10am",
    "evening": "evening night noite",
    "call": "call calls phone ligacao ligar ligou telefone telefonema",
    "email": "email emails mail newsletter",
    "chat": "whatsapp chat mensagem mensagens sms",
    "smartphone": "smartphone smartphones celular celulares cellphone",
    "laptop": "laptop laptops notebook notebooks computer computador",
    "headphones": "headphones headphone earbuds fone fones",
    "campaign": "campaign campaigns campanha campanhas",
    "birthday": "birthday aniversario",
    "children": "kids children child filhos filho criancas crianca",
    "size": "size sizes tamanho tamanhos",
    "quality": "quality qualidade",
    "warranty": "warranty guarantee garantia",
    "address": "address endereco",
    "competitor": "competitor competitors concorrente concorrentes",
    "leave": "leave leaving churn quit abandon sair deixar desistir",
    "vip": "vip premium loyal loyalty fiel fidelidade",
    "gift": "gift gifts presente presentes",
    "recommend": "recommend recommended referral indicou indicar recomendou recomendar",
    "preference": "prefers prefer preference preferences prefere preferencia",
    "wait": "wait waiting waited esperar esperando esperou espera",
    "missing": "missing lost extraviado extraviada perdido sumiu",
    "wrong": "wrong incorrect errado errada incorreto",
}


def _concept_table() -> tuple[np.ndarray, np.ndarray]:
    """Sorted word hashes of the lexicon and, aligned, the hash of each word's concept."""
    vocabulary = [(word, concept) for concept, text in CONCEPTS.items() for word in text.split()]
    word_hashes = HashedBatch([w for w, _ in vocabulary]).words().hash
    concept_hashes = HashedBatch([f"concept {c}" for _, c in vocabulary]).word_bigrams().hash
    order = np.argsort(word_hashes)
    return word_hashes[order], concept_hashes[order]


class OfflineEmbedder:
    """Feature-hashing embedder (see module docstring). ``dim`` is part of its name."""

    #: Pure and cheap (~7 us per text): the store recomputes these vectors when it opens
    #: instead of storing them. tests/memory/test_import_bulk.py pins their bytes; a change to
    #: what this computes must come with a new name (offline-hash-v2-...).
    recomputable = True

    def __init__(self, dim: int = 384) -> None:
        if dim < 16:
            raise ValueError("the offline embedder needs dim >= 16")
        self.dim = dim
        self.name = f"offline-hash-v1-{dim}"
        self._concept_words, self._concept_ids = _concept_table()

    def embed(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        # Chunks keep the per-chunk arrays in cache; one bincount per chunk does the summing.
        for start in range(0, len(texts), _CHUNK):
            batch = HashedBatch(list(texts[start : start + _CHUNK]))
            out[start : start + _CHUNK] = self._embed_chunk(batch, batch.words())
        return out

    def embed_with_terms(self, texts: list[str]) -> tuple[np.ndarray, Grams]:
        """``embed(texts)`` and ``text.term_hashes(texts)`` from one hashing pass: the keyword
        terms are these very words (the bulk importer needs both; hashing twice cost ~15% of it)."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        docs, hashes = [], []
        for start in range(0, len(texts), _CHUNK):
            batch = HashedBatch(list(texts[start : start + _CHUNK]))
            words = batch.words()
            out[start : start + _CHUNK] = self._embed_chunk(batch, words)
            terms = terms_of(words)
            docs.append(terms.doc + start)
            hashes.append(terms.hash)
        if not docs:
            return out, Grams(np.empty(0, np.int64), np.empty(0, np.int64))
        return out, Grams(np.concatenate(docs), np.concatenate(hashes))

    def _embed_chunk(self, batch: HashedBatch, words: Grams) -> np.ndarray:
        features = [
            (words, WEIGHTS["word"]),
            (batch.word_bigrams(), WEIGHTS["bigram"]),
            (self._concepts(words), WEIGHTS["concept"]),
            *((batch.char_ngrams(n), WEIGHTS["char"]) for n in (3, 4, 5)),
        ]
        dim, top_bit = np.uint64(self.dim), np.uint64(63)
        # The same values as `.astype(np.int64)` and `np.where(top bit, -w, w)`, with fewer
        # passes: a view (every remainder fits) and a lookup by the top bit. For 3.5M features
        # (~20k texts): signs 16.0 -> 4.7 ms, cells 21.2 -> 18.6 ms (`/tmp` timing); the whole
        # embedder's gain is within run-to-run noise. The bytes are pinned by a test.
        cells = np.concatenate([g.doc * self.dim + (g.hash % dim).view(np.int64) for g, _ in features])
        signs = np.concatenate([np.array([w, -w])[(g.hash >> top_bit).view(np.int64)] for g, w in features])
        flat = np.bincount(cells, weights=signs, minlength=batch.size * self.dim)
        matrix = flat.reshape(batch.size, self.dim).astype(np.float32)
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        return matrix / np.where(norms == 0, 1, norms)

    def _concepts(self, words: Grams) -> Grams:
        pos = np.searchsorted(self._concept_words, words.hash)
        pos = np.minimum(pos, len(self._concept_words) - 1)
        hit = self._concept_words[pos] == words.hash
        return Grams(words.doc[hit], self._concept_ids[pos[hit]])
