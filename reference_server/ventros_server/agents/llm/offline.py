"""The built-in offline backend (the default): rule-based, deterministic, no network, no model.

It is honest about what it is: intent comes from keyword rules (``rules.py``), and the answer is
composed from templates filled with what the agent learned (the contact's name and tier, the
request context, the most relevant memories, the next steps the agent decided), in the language
of the message (Portuguese or English). The same input always gives the same output.

It still streams: ``stream()`` yields the composed answer word by word (one "token" is one word
plus its trailing space), pausing ``token_delay`` seconds between words (0 by default: it only
yields to the event loop), and stops at ``max_tokens`` words.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

from ..actions import ACTIONS
from .base import Classification, ClassificationRequest, GenerationRequest, ResponseFacts
from .rules import classify_intent, detect_language, detect_sentiment, product_mention

_ACK: dict[str, tuple[str, str]] = {
    "purchase_intent": ("Que ótimo que você quer comprar{p_pt}!", "Great to hear you'd like to buy{p_en}!"),
    "pricing_inquiry": (
        "Claro, posso te passar os valores{p_pt}.",
        "Sure, I can walk you through the pricing{p_en}.",
    ),
    "product_inquiry": (
        "Claro! Posso te contar mais sobre{p_pt_or}.",
        "Of course! I can tell you more about{p_en_or}.",
    ),
    "support_request": (
        "Sinto muito pelo transtorno, vou te ajudar a resolver isso.",
        "Sorry about the trouble, I'll help you sort this out.",
    ),
    "complaint": (
        "Peço desculpas pela experiência, entendo a sua frustração.",
        "I'm sorry about this experience, I understand your frustration.",
    ),
    "cancellation_intent": (
        "Entendi que você quer cancelar. Antes, posso entender o que aconteceu?",
        "I understand you want to cancel. May I ask what happened first?",
    ),
    "refund_request": ("Entendi, você gostaria de um reembolso.", "Understood, you'd like a refund."),
    "scheduling": (
        "Claro, vamos encontrar um horário para você.",
        "Of course, let's find a time that works for you.",
    ),
    "unsubscribe": (
        "Tudo bem, não vamos mais te enviar mensagens promocionais.",
        "All right, we'll stop sending you promotional messages.",
    ),
    "positive_feedback": (
        "Muito obrigado pelo retorno, ficamos felizes!",
        "Thank you so much, we're glad to hear it!",
    ),
    "greeting": ("Como posso te ajudar hoje?", "How can I help you today?"),
    "general_inquiry": ("Recebi sua mensagem e vou te ajudar.", "I got your message and I'm here to help."),
}

_TOKEN = re.compile(r"\S+\s*")


def _first_name(name: str) -> str:
    return name.split()[0] if name.strip() else ""


def _customer_reply(f: ResponseFacts) -> str:
    pt = f.language == "pt"
    product = product_mention(f.message)
    fill = {
        "p_pt": f" o produto {product}" if product else "",
        "p_en": f" product {product}" if product else "",
        "p_pt_or": f" o produto {product}" if product else " os nossos produtos",
        "p_en_or": f" product {product}" if product else " our products",
    }
    name = _first_name(f.contact_name)
    parts = [(f"Olá, {name}!" if name else "Olá!") if pt else (f"Hi {name}!" if name else "Hi!")]
    ack = _ACK.get(f.intent, _ACK["general_inquiry"])[0 if pt else 1].format(**fill)
    parts.append(ack)

    known: list[str] = []
    tier = f.tier or f.request_context.get("tier", "") or f.request_context.get("customer_tier", "")
    if tier == "premium":
        known.append("você é cliente premium" if pt else "you're a premium customer")
    last = f.request_context.get("last_purchase") or f.request_context.get("last_purchase_date")
    if last:
        known.append(f"sua última compra foi {last}" if pt else f"your last purchase was {last}")
    if known:
        parts.append(
            ("Vi que " + " e que ".join(known) + ".") if pt else ("I see " + " and ".join(known) + ".")
        )
    if f.memory_highlights:
        highlight = f.memory_highlights[0].rstrip(".")
        parts.append(f"Pelo seu histórico: “{highlight}”." if pt else f"From your history: “{highlight}”.")

    offers = [ACTIONS[a].offer_pt if pt else ACTIONS[a].offer_en for a in f.suggested_actions if a in ACTIONS]
    parts.extend([o for o in offers if o][:2])
    if f.closing:
        parts.append(f.closing)
    return " ".join(parts)


def _internal_note(f: ResponseFacts) -> str:
    pt = f.language == "pt"
    who = f.contact_name or ("contato sem perfil" if pt else "contact without a profile")
    if f.tier:
        who += f" ({f.tier})"
    parts = [
        (f"Resumo: intenção {f.intent} (confiança {f.confidence:.0%}), sentimento {f.sentiment}.")
        if pt
        else (f"Summary: intent {f.intent} (confidence {f.confidence:.0%}), sentiment {f.sentiment}."),
        (f"Contato: {who}." if pt else f"Contact: {who}."),
    ]
    numbers = []
    if f.lifetime_value is not None:
        numbers.append(f"LTV {f.lifetime_value:.2f}")
    if f.churn_risk is not None:
        numbers.append(("risco de churn " if pt else "churn risk ") + f"{f.churn_risk:.0%}")
    if numbers:
        parts.append(", ".join(numbers) + ".")
    if f.memory_highlights:
        parts.append(
            ("Histórico: " if pt else "History: ")
            + "; ".join(h.rstrip(".") for h in f.memory_highlights[:3])
            + "."
        )
    elif not f.memory_available:
        parts.append(
            "Memória indisponível: análise só da mensagem."
            if pt
            else "Memory unavailable: message-only analysis."
        )
    if f.suggested_actions:
        parts.append(("Próximos passos: " if pt else "Next steps: ") + ", ".join(f.suggested_actions) + ".")
    if f.closing:
        parts.append(f.closing)
    return " ".join(parts)


def compose(facts: ResponseFacts) -> str:
    """The full answer the offline backend gives for these facts."""
    return _internal_note(facts) if facts.audience == "internal" else _customer_reply(facts)


class OfflineLLM:
    """Rule-based backend. ``default_language`` answers messages with no language cue."""

    name = "offline"
    model = "rules-v1"

    def __init__(self, *, token_delay: float = 0.0, default_language: str = "pt") -> None:
        if token_delay < 0:
            raise ValueError("token_delay must be >= 0")
        if default_language not in ("pt", "en"):
            raise ValueError("default_language must be 'pt' or 'en'")
        self.token_delay = token_delay
        self.default_language = default_language

    async def classify(self, request: ClassificationRequest) -> Classification:
        intent, confidence, rationale = classify_intent(request.message, request.labels)
        return Classification(
            intent=intent,
            confidence=confidence,
            sentiment=detect_sentiment(request.message),
            language=detect_language(request.message, self.default_language),
            rationale=rationale,
            source="rules",
        )

    async def stream(self, request: GenerationRequest) -> AsyncIterator[str]:
        tokens = _TOKEN.findall(compose(request.facts))[: request.max_tokens]
        for i, token in enumerate(tokens):
            yield token.rstrip() if i == len(tokens) - 1 else token
            await asyncio.sleep(self.token_delay)

    async def aclose(self) -> None:
        return None


__all__ = ["OfflineLLM", "compose"]
