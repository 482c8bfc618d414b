"""The suggested-action vocabulary: every string an agent may put in ``suggested_actions``.

The Go CRM switches on these names (spec section 6.1), so they are a closed, documented set:
an agent that suggests anything else is a bug (``check_actions`` enforces it at run time and
tests enforce it for every built-in agent). Each action also carries the sentence the offline
backend uses to announce it to the customer, in Portuguese and English.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Action:
    name: str
    description: str
    #: How the offline backend offers this next step to the customer.
    offer_pt: str
    offer_en: str


ACTIONS: dict[str, Action] = {
    a.name: a
    for a in (
        Action(
            "create_lead",
            "Create (or update) a sales lead for the contact in the CRM pipeline.",
            "Já registrei seu interesse para que nosso time comercial te acompanhe.",
            "I've noted your interest so our sales team can follow up with you.",
        ),
        Action(
            "update_pipeline_status",
            "Move the contact's deal to the next pipeline stage (e.g. qualified).",
            "Vou dar andamento ao seu pedido por aqui.",
            "I'll move your request forward on our side.",
        ),
        Action(
            "send_product_catalog",
            "Send the product catalogue (or the product sheet the message mentions).",
            "Posso te enviar o nosso catálogo com as opções e preços?",
            "Shall I send you our catalogue with the options and prices?",
        ),
        Action(
            "send_payment_link",
            "Send a payment link for the product the contact wants to buy.",
            "Se preferir, já te mando o link de pagamento.",
            "If you like, I can send you the payment link right away.",
        ),
        Action(
            "open_ticket",
            "Open a support ticket with the conversation attached.",
            "Abri um chamado para acompanhar o seu caso.",
            "I've opened a ticket to follow up on your case.",
        ),
        Action(
            "escalate_to_human",
            "Hand the conversation over to a human agent.",
            "Vou chamar uma pessoa da nossa equipe para falar com você.",
            "I'm bringing in someone from our team to talk with you.",
        ),
        Action(
            "offer_discount",
            "Offer a retention or conversion discount (amount decided by the CRM's rules).",
            "Tenho uma condição especial para você, posso te contar?",
            "I have a special offer for you, may I tell you about it?",
        ),
        Action(
            "schedule_follow_up",
            "Schedule a follow-up contact (the CRM picks the date).",
            "Vou agendar um retorno para continuarmos a conversa.",
            "I'll schedule a follow-up so we can continue the conversation.",
        ),
        Action(
            "request_feedback",
            "Send a satisfaction survey (CSAT/NPS).",
            "Sua opinião é muito importante: posso te enviar uma pesquisa rápida?",
            "Your opinion matters: may I send you a quick survey?",
        ),
        Action(
            "add_to_campaign",
            "Add the contact to the marketing campaign matching their interest.",
            "Vou te avisar das nossas próximas novidades e ofertas.",
            "I'll keep you posted on our upcoming news and offers.",
        ),
        Action(
            "tag_contact",
            "Tag the contact with the detected intent/segment (tags in response metadata).",
            "",
            "",
        ),
        Action(
            "process_refund",
            "Start the refund / return process for the contact's last order.",
            "Vou iniciar o processo de reembolso para você.",
            "I'll start the refund process for you.",
        ),
    )
}


def check_actions(actions: list[str]) -> list[str]:
    """The actions, deduplicated in order; raises ValueError for a name outside the vocabulary."""
    unknown = [a for a in actions if a not in ACTIONS]
    if unknown:
        raise ValueError(f"actions outside the documented vocabulary: {unknown}")
    return list(dict.fromkeys(actions))


__all__ = ["ACTIONS", "Action", "check_actions"]
