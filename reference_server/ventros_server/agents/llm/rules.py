"""Deterministic, rule-based text analysis: language, intent, sentiment, topics.

This is what the offline backend "thinks" with, and the fallback of real backends when a
model's classification cannot be parsed. It is keyword rules over accent-folded text, in
Portuguese and English: cheap, explainable and the same answer every time; not a model.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

#: The intent vocabulary shared by the built-in agents (label -> meaning).
INTENTS: dict[str, str] = {
    "purchase_intent": "wants to buy, order or subscribe to something",
    "pricing_inquiry": "asks about price, cost, plans or a quote",
    "product_inquiry": "asks for information about a product, its features or availability",
    "complaint": "is unhappy about the service, a delay or a defect",
    "support_request": "needs help: something is not working or they do not know how to do it",
    "cancellation_intent": "wants to cancel, close the account or stop the contract",
    "refund_request": "wants their money back, a return or a chargeback",
    "scheduling": "wants to book a meeting, visit, call or demo",
    "unsubscribe": "wants to stop receiving messages",
    "positive_feedback": "thanks or praises the company",
    "greeting": "only greets, no request yet",
    "general_inquiry": "anything else",
}


def fold(text: str) -> str:
    """Lower-case and strip accents ("Não é" -> "nao e"), so rules need one spelling."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _rx(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


#: intent -> [(pattern over folded text, weight)]. Each pattern counts once.
_INTENT_RULES: dict[str, list[tuple[re.Pattern[str], float]]] = {
    "purchase_intent": [
        (
            _rx(r"\b(quero|gostaria de|vou|preciso) (comprar|adquirir|fechar|contratar|assinar|encomendar)"),
            2.5,
        ),
        (
            _rx(r"\b(i want to|i'd like to|i would like to|want to|ready to|going to) (buy|purchase|order)"),
            2.5,
        ),
        (_rx(r"\b(comprar|compra-lo|adquirir|encomendar|fechar (o )?pedido|fazer (um )?pedido)\b"), 1.5),
        (_rx(r"\b(buy|purchase|place an order|checkout)\b"), 1.5),
    ],
    "pricing_inquiry": [
        (_rx(r"\b(quanto custa|quanto e|qual (o|e o) (preco|valor)|how much|what does it cost)\b"), 2.0),
        (_rx(r"\b(preco|precos|valor|orcamento|parcel|price|prices|pricing|cost|quote)\b"), 1.5),
    ],
    "product_inquiry": [
        (_rx(r"\b(saber (mais )?sobre|informac(ao|oes) sobre|como funciona|detalhes (do|da|sobre))"), 1.5),
        (
            _rx(
                r"\b(tell me about|know (more )?about|information (about|on)|how does .{1,40} work|details (of|on))"
            ),
            1.5,
        ),
        (
            _rx(r"\b(estoque|disponivel|caracteristicas|especificac|in stock|available|features|specs?)\b"),
            1.0,
        ),
        (_rx(r"\b(produto|product|modelo|model)\b"), 0.5),
    ],
    "complaint": [
        (_rx(r"\b(pessimo|horrivel|absurdo|ridiculo|insatisfeit|decepcionad|ninguem (me )?respond)"), 2.0),
        (_rx(r"\b(terrible|awful|unacceptable|disappointed|worst|angry)\b"), 2.0),
        (
            _rx(
                r"\b(nobody|no one|never) (answers|replies|responds|called back)|\b(again|de novo|outra vez)\b"
            ),
            1.0,
        ),
        (_rx(r"\b(reclama|reclamacao|atras(o|ad[oa])|demora|complain|complaint|late|delay(ed)?)\b"), 1.5),
    ],
    "support_request": [
        (_rx(r"\b(nao (esta |ta )?funcion|nao consigo|nao liga|deu erro|parou de)"), 2.0),
        (_rx(r"\b(not working|doesn'?t work|can'?t|cannot|stopped working|won'?t)\b"), 2.0),
        (
            _rx(
                r"\b(ajuda|ajudar|problema|erro|defeito|quebrou|suporte|help|problem|issue|broken|error|bug|support)\b"
            ),
            1.5,
        ),
    ],
    "cancellation_intent": [
        (_rx(r"\b(quero|vou|preciso) (cancelar|encerrar|sair)"), 2.5),
        (_rx(r"\b(want to|going to|need to) (cancel|close my account|terminate|quit)"), 2.5),
        (_rx(r"\b(cancelar|cancelamento|encerrar (a )?(conta|assinatura|contrato)|nao quero mais)"), 2.0),
        (_rx(r"\b(cancel|cancellation|terminate|close my account)\b"), 2.0),
    ],
    "refund_request": [
        (_rx(r"\b(reembolso|devoluc|estorno|dinheiro de volta|devolver)"), 2.0),
        (_rx(r"\b(refund|money back|return (it|the|my)|chargeback)\b"), 2.0),
    ],
    "scheduling": [
        (_rx(r"\b(agendar|marcar|reuniao|horario|visita|demonstracao)"), 1.5),
        (_rx(r"\b(schedule|book|appointment|meeting|demo|call me)\b"), 1.5),
    ],
    "unsubscribe": [
        (_rx(r"\b(parar de receber|descadastr|sair da lista|nao me (mande|envie))"), 2.5),
        (_rx(r"\b(unsubscribe|stop (sending|messaging)|opt[- ]out)\b"), 2.5),
    ],
    "positive_feedback": [
        (_rx(r"\b(obrigad|valeu|adorei|amei|excelente|otimo atendimento|parabens)"), 1.5),
        (_rx(r"\b(thank|thanks|love it|great service|awesome|excellent)\b"), 1.5),
    ],
}
_GREETING = _rx(
    r"^\W*(oi|ola|opa|bom dia|boa tarde|boa noite|hello|hi|hey|good (morning|afternoon|evening))\b"
)

_PT_WORDS = frozenset(
    [
        "oi",
        "ola",
        "quero",
        "voce",
        "nao",
        "obrigado",
        "obrigada",
        "produto",
        "comprar",
        "por",
        "favor",
        "preciso",
        "meu",
        "minha",
        "sobre",
        "como",
        "para",
        "com",
        "uma",
        "um",
        "do",
        "da",
        "tem",
        "esta",
        "estou",
        "bom",
        "dia",
        "boa",
        "tarde",
        "noite",
        "saber",
        "ajuda",
        "pedido",
        "entrega",
        "cancelar",
        "que",
        "e",
        "o",
        "os",
        "as",
        "no",
        "na",
        "eu",
        "sim",
        "muito",
        "mais",
        "quando",
        "onde",
        "qual",
        "quanto",
        "custa",
        "gostaria",
        "minhas",
        "meus",
    ]
)
_EN_WORDS = frozenset(
    [
        "hi",
        "hello",
        "i",
        "want",
        "you",
        "not",
        "thanks",
        "thank",
        "product",
        "buy",
        "please",
        "need",
        "my",
        "about",
        "how",
        "for",
        "with",
        "the",
        "a",
        "is",
        "have",
        "am",
        "good",
        "morning",
        "know",
        "help",
        "order",
        "delivery",
        "cancel",
        "to",
        "it",
        "this",
        "what",
        "when",
        "where",
        "which",
        "much",
        "cost",
        "would",
        "like",
        "yes",
        "can",
        "does",
    ]
)
_WORD = re.compile(r"[a-z0-9']+")

_NEGATIVE = _rx(
    r"\b(pessimo|horrivel|ruim|absurdo|insatisfeit|decepcionad|raiva|atras|problema|erro|defeito|"
    r"cancel|reclama|terrible|awful|bad|angry|disappointed|late|delay|problem|broken|worst|hate)"
)
_POSITIVE = _rx(
    r"\b(obrigad|valeu|adorei|amei|excelente|otimo|perfeito|maravilh|gostei|"
    r"thank|love|great|awesome|excellent|perfect|happy|amazing)"
)

_CONTENT_WORDS = frozenset(
    [
        "produto",
        "comprar",
        "pedido",
        "entrega",
        "cancelar",
        "ajuda",
        "custa",
        "product",
        "buy",
        "help",
        "order",
        "delivery",
        "cancel",
        "cost",
    ]
)
#: Function words (the language markers minus the content words among them), for topics().
_STOPWORDS = (
    _PT_WORDS
    | _EN_WORDS
    | frozenset(
        [
            "are",
            "was",
            "were",
            "been",
            "there",
            "their",
            "they",
            "them",
            "from",
            "your",
            "yours",
            "isso",
            "essa",
            "esse",
            "este",
            "pelo",
            "pela",
            "mas",
            "porque",
            "then",
            "than",
            "also",
            "just",
            "only",
            "has",
            "had",
            "will",
            "again",
            "never",
            "nobody",
            "always",
            "still",
            "really",
            "very",
            "some",
        ]
    )
) - _CONTENT_WORDS


def detect_language(text: str, default: str = "pt") -> str:
    """'pt' or 'en' by marker words (and Portuguese diacritics); ``default`` on a tie."""
    words = _WORD.findall(fold(text))
    pt = sum(w in _PT_WORDS for w in words) + 2 * len(re.findall(r"[ãõçâêôáéíóú]", text.lower()))
    en = sum(w in _EN_WORDS for w in words)
    if pt == en:
        return default
    return "pt" if pt > en else "en"


def detect_sentiment(text: str) -> str:
    folded = fold(text)
    neg = len(_NEGATIVE.findall(folded))
    pos = len(_POSITIVE.findall(folded))
    if neg > pos:
        return "negative"
    if pos > neg:
        return "positive"
    return "neutral"


@dataclass(frozen=True)
class IntentScores:
    scores: dict[str, float]
    matched: dict[str, list[str]]


def score_intents(text: str) -> IntentScores:
    folded = fold(text)
    scores: dict[str, float] = {}
    matched: dict[str, list[str]] = {}
    for intent, rules in _INTENT_RULES.items():
        for pattern, weight in rules:
            m = pattern.search(folded)
            if m:
                scores[intent] = scores.get(intent, 0.0) + weight
                matched.setdefault(intent, []).append(m.group(0).strip())
    return IntentScores(scores, matched)


def classify_intent(text: str, labels: Mapping[str, str] | None = None) -> tuple[str, float, str]:
    """(intent, confidence, rationale). Deterministic; intent is always one of ``labels``.

    confidence = 0.5 + 0.45 * (1 - exp(-(best - runner_up / 2) / 1.5)), so one weak cue gives
    about 0.78, a strong phrase plus a cue about 0.9; no cue gives general_inquiry at 0.5
    (greeting at 0.6 when the message is only a greeting).
    """
    allowed = dict(labels) if labels else INTENTS
    result = score_intents(text)
    ranked = sorted(
        ((score, intent) for intent, score in result.scores.items() if intent in allowed),
        key=lambda pair: (-pair[0], list(INTENTS).index(pair[1]) if pair[1] in INTENTS else 99),
    )
    if not ranked:
        if _GREETING.search(fold(text)) and "greeting" in allowed and len(_WORD.findall(fold(text))) <= 4:
            return "greeting", 0.6, "the message is only a greeting"
        fallback = "general_inquiry" if "general_inquiry" in allowed else next(iter(allowed))
        return fallback, 0.5, "no intent cue matched"
    best, intent = ranked[0]
    runner_up = ranked[1][0] if len(ranked) > 1 else 0.0
    margin = max(best - runner_up / 2, 0.0)
    confidence = round(0.5 + 0.45 * (1 - math.exp(-margin / 1.5)), 3)
    cues = ", ".join(repr(c) for c in result.matched[intent])
    return intent, confidence, f"matched {cues}"


def topics(text: str, limit: int = 5) -> list[str]:
    """The most frequent content words (accent-folded), for summaries and tags."""
    words = [w for w in _WORD.findall(fold(text)) if len(w) >= 4 and w not in _STOPWORDS]
    return [w for w, _ in Counter(words).most_common(limit)]


_PRODUCT = re.compile(r"\b(?i:produto|product|plano|plan|modelo|model)\s+([A-Z0-9][\w.-]{0,40})")


def product_mention(text: str) -> str:
    """'produto X' -> 'X' (the first product-like name the message mentions), else ''."""
    m = _PRODUCT.search(text)
    return m.group(1).rstrip(".,!?") if m else ""


__all__ = [
    "INTENTS",
    "classify_intent",
    "detect_language",
    "detect_sentiment",
    "fold",
    "product_mention",
    "score_intents",
    "topics",
]
