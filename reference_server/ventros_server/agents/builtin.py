"""The five reference agents, one per AgentCategory.

Each is a ConversationalAgent (shared pipeline in ``base.py``) that only decides its plan:
which next steps to suggest (from the vocabulary in ``actions.py``), what extra metadata to
report and which reasoning to show. Their rules are deterministic and documented in
docs/agents.md; the LLM backend (offline or a real model) writes the text.
"""

from __future__ import annotations

import re

from .base import AgentCategory, AgentSpec, ConversationalAgent, ExampleSpec, FieldSpec, Insight, Plan
from .llm.rules import fold, product_mention, topics

_CS_EXAMPLE_IN = {
    "contact_id": "550e8400-e29b-41d4-a716-446655440000",
    "message": "Oi, quero comprar produto X",
    "channel_id": "660e8400-e29b-41d4-a716-446655440001",
    "context.last_purchase": "product_Y",
    "context.tier": "premium",
}


class CustomerServiceAgent(ConversationalAgent):
    """SUPPORT: answers customers, classifies intent and sentiment, routes to tickets or sales."""

    spec = AgentSpec(
        type="CustomerServiceAgent",
        name="Customer Service Specialist",
        description="Handles customer inquiries: classifies intent and sentiment, answers with the "
        "contact's context and routes to sales, tickets or a human.",
        category=AgentCategory.SUPPORT,
        capabilities=("intent_classification", "response_generation", "sentiment_analysis"),
        starting_latency_ms=850,
        extra_output_fields=(
            FieldSpec("metadata.priority", "string", True, "Handling priority: normal or high"),
        ),
        examples=(
            ExampleSpec(
                _CS_EXAMPLE_IN,
                {
                    "intent": "purchase_intent",
                    "suggested_actions": "create_lead,update_pipeline_status,send_product_catalog",
                    "response": "Olá! Que ótimo que você quer comprar o produto X! Vi que você é cliente "
                    "premium e que sua última compra foi product_Y. ...",
                },
                "A premium customer who wants to buy: the agent opens a lead and offers the catalogue.",
            ),
            ExampleSpec(
                {"message": "My order is late and nobody answers, this is unacceptable"},
                {"intent": "complaint", "suggested_actions": "open_ticket,escalate_to_human"},
                "A complaint (English): a ticket is opened and a human takes over.",
            ),
        ),
    )
    persona = (
        "You are a friendly customer service specialist for a company that uses the Ventros CRM. "
        "You help customers over WhatsApp and Instagram."
    )

    def plan(self, insight: Insight) -> Plan:
        c = insight.classification
        negative = c.sentiment == "negative"
        valuable = insight.tier == "premium" or (insight.contact.churn_risk or 0.0) > 0.5
        actions: list[str] = {
            "purchase_intent": ["create_lead", "update_pipeline_status", "send_product_catalog"],
            "pricing_inquiry": ["send_product_catalog", "create_lead"],
            "product_inquiry": ["send_product_catalog", "create_lead"],
            "support_request": ["open_ticket"],
            "complaint": ["open_ticket", "escalate_to_human"],
            "cancellation_intent": ["escalate_to_human", "offer_discount"],
            "refund_request": ["open_ticket", "process_refund"],
            "scheduling": ["schedule_follow_up"],
            "unsubscribe": ["tag_contact"],
            "positive_feedback": ["request_feedback"],
        }.get(c.intent, [])
        if c.intent == "support_request" and negative:
            actions.append("escalate_to_human")
        if c.intent == "complaint" and valuable:
            actions.append("offer_discount")
        priority = (
            "high"
            if negative and (valuable or c.intent in ("complaint", "cancellation_intent"))
            else "normal"
        )
        thoughts = []
        if priority == "high":
            thoughts.append("Negative sentiment from a valuable or unhappy customer: high priority.")
        return Plan(actions=actions, metadata={"priority": priority}, thoughts=thoughts)


_URGENCY = re.compile(
    r"\b(urgente|hoje|agora|amanha|essa semana|esta semana|urgent|asap|today|tomorrow|right away|this week|now)\b"
)
_BUDGET = re.compile(r"(r\$|us\$|\$\s?\d|\b\d+\s?(reais|mil|k)\b|\borcamento\b|\bbudget\b)")


class LeadQualifierAgent(ConversationalAgent):
    """SALES: scores the lead (0-100), detects urgency and asks the next qualification question."""

    spec = AgentSpec(
        type="LeadQualifierAgent",
        name="Lead Qualifier",
        description="Qualifies sales leads: scores buying intent, detects urgency and budget, and asks "
        "the next qualification question.",
        category=AgentCategory.SALES,
        capabilities=("lead_scoring", "qualification_questions", "urgency_detection"),
        starting_latency_ms=920,
        extra_output_fields=(
            FieldSpec("metadata.lead_score", "int", True, "Lead score 0-100"),
            FieldSpec("metadata.lead_grade", "string", True, "hot (>=70), warm (>=40) or cold"),
            FieldSpec("metadata.urgency", "string", True, "high or normal"),
        ),
        examples=(
            ExampleSpec(
                {"message": "Preciso comprar 20 licenças hoje, orçamento de R$ 5 mil"},
                {
                    "intent": "purchase_intent",
                    "metadata.lead_grade": "hot",
                    "suggested_actions": "create_lead,update_pipeline_status,send_payment_link,send_product_catalog",
                },
                "An urgent buyer with a budget: a hot lead, moved forward in the pipeline.",
            ),
            ExampleSpec(
                {"message": "How much is the Pro plan?"},
                {
                    "intent": "pricing_inquiry",
                    "metadata.lead_grade": "warm",
                    "suggested_actions": "create_lead,send_product_catalog,schedule_follow_up",
                },
                "A pricing question: a warm lead; the agent asks about timing.",
            ),
        ),
    )
    persona = (
        "You are a consultative sales rep qualifying leads for a company that uses the Ventros CRM. "
        "Be helpful, never pushy, and ask one qualification question at a time."
    )

    _BASE = {"purchase_intent": 50, "pricing_inquiry": 40, "scheduling": 35, "product_inquiry": 30}

    def plan(self, insight: Insight) -> Plan:
        c = insight.classification
        folded = fold(insight.text)
        urgent = bool(_URGENCY.search(folded))
        budget = bool(_BUDGET.search(folded))
        score = self._BASE.get(c.intent, 10)
        reasons = [f"{c.intent} +{score}"]
        for cond, points, why in (
            (urgent, 20, "urgency"),
            (budget, 10, "budget mentioned"),
            (insight.tier == "premium", 15, "premium tier"),
            (insight.tier == "standard", 5, "standard tier"),
            ((insight.contact.lifetime_value or 0.0) > 1000, 10, "LTV > 1000"),
        ):
            if cond:
                score += points
                reasons.append(f"{why} +{points}")
        if c.intent in ("complaint", "cancellation_intent", "refund_request", "unsubscribe"):
            score = min(score, 10)
            reasons.append("not a buying conversation: capped at 10")
        score = max(0, min(100, score))
        grade = "hot" if score >= 70 else "warm" if score >= 40 else "cold"

        actions: list[str] = []
        if score >= 40:
            actions.append("create_lead")
        if score >= 70:
            actions.append("update_pipeline_status")
            if c.intent == "purchase_intent":
                actions.append("send_payment_link")
        if c.intent in ("purchase_intent", "pricing_inquiry", "product_inquiry"):
            actions.append("send_product_catalog")
        if c.intent in ("complaint", "cancellation_intent", "refund_request"):
            actions.append("escalate_to_human")
        elif grade != "hot" and c.intent != "unsubscribe":
            actions.append("schedule_follow_up")
        if c.intent == "unsubscribe":
            actions.append("tag_contact")

        if grade == "cold" or c.intent in (
            "complaint",
            "cancellation_intent",
            "refund_request",
            "unsubscribe",
        ):
            closing_pt = closing_en = ""
        elif not budget and grade != "hot":
            closing_pt, closing_en = "Qual orçamento você tem em mente?", "What budget do you have in mind?"
        elif not urgent:
            closing_pt, closing_en = "Para quando você precisa?", "When do you need it by?"
        else:
            closing_pt, closing_en = "Posso seguir com o seu pedido?", "Shall I go ahead with your order?"
        return Plan(
            actions=actions,
            metadata={
                "lead_score": str(score),
                "lead_grade": grade,
                "urgency": "high" if urgent else "normal",
            },
            thoughts=[f"Lead score {score}/100 ({grade}): {', '.join(reasons)}."],
            closing_pt=closing_pt,
            closing_en=closing_en,
        )


class MarketingCampaignAgent(ConversationalAgent):
    """MARKETING: segments the contact and picks the campaign/offer that fits their interest."""

    spec = AgentSpec(
        type="MarketingCampaignAgent",
        name="Marketing Campaign Advisor",
        description="Segments the contact from their message and history and recommends the campaign "
        "or catalogue to send; respects opt-outs.",
        category=AgentCategory.MARKETING,
        capabilities=("audience_segmentation", "campaign_recommendation", "personalized_offers"),
        starting_latency_ms=780,
        extra_output_fields=(
            FieldSpec(
                "metadata.segment",
                "string",
                True,
                "premium_buyer, engaged_prospect, at_risk, opted_out or new_contact",
            ),
            FieldSpec("metadata.campaign", "string", True, "Campaign to add the contact to, or none"),
            FieldSpec("metadata.tags", "string", False, "Comma-separated tags to apply"),
        ),
        examples=(
            ExampleSpec(
                {"message": "Vocês têm novidades do produto Z?"},
                {
                    "intent": "product_inquiry",
                    "metadata.campaign": "product_interest:Z",
                    "suggested_actions": "send_product_catalog,add_to_campaign,tag_contact",
                },
                "Interest in a product: catalogue plus the product's interest campaign.",
            ),
            ExampleSpec(
                {"message": "Please stop sending me messages"},
                {
                    "intent": "unsubscribe",
                    "metadata.segment": "opted_out",
                    "suggested_actions": "tag_contact",
                },
                "An opt-out is respected: no campaign, only a tag.",
            ),
        ),
    )
    persona = (
        "You are a marketing specialist for a company that uses the Ventros CRM. Personalise offers "
        "from the customer's interests and always respect opt-outs."
    )

    def plan(self, insight: Insight) -> Plan:
        c = insight.classification
        churn = insight.contact.churn_risk or 0.0
        if c.intent == "unsubscribe":
            segment = "opted_out"
        elif c.intent in ("complaint", "cancellation_intent", "refund_request") or churn > 0.6:
            segment = "at_risk"
        elif insight.tier == "premium" or insight.contact.total_purchases > 0:
            segment = "premium_buyer" if insight.tier == "premium" else "engaged_prospect"
        elif insight.contact.known:
            segment = "engaged_prospect"
        else:
            segment = "new_contact"
        product = product_mention(insight.text)
        tags = [f"intent:{c.intent}", f"segment:{segment}"]
        if segment == "opted_out":
            actions, campaign = ["tag_contact"], "none"
            tags.append("marketing_opt_out")
        elif segment == "at_risk":
            actions, campaign = ["tag_contact"], "none"
        elif c.intent in ("purchase_intent", "product_inquiry", "pricing_inquiry"):
            actions = ["send_product_catalog", "add_to_campaign", "tag_contact"]
            campaign = f"product_interest:{product}" if product else "product_interest"
        elif c.intent == "positive_feedback":
            actions, campaign = ["request_feedback", "add_to_campaign", "tag_contact"], "advocates"
        else:
            actions, campaign = ["add_to_campaign", "tag_contact"], "nurture"
        why = (
            "opt-out respected"
            if segment == "opted_out"
            else "no marketing to an unhappy contact"
            if segment == "at_risk"
            else f"campaign {campaign}"
        )
        return Plan(
            actions=actions,
            metadata={"segment": segment, "campaign": campaign, "tags": ",".join(tags)},
            thoughts=[f"Segment {segment}: {why}."],
        )


class RetentionAgent(ConversationalAgent):
    """RETENTION: estimates churn risk from history and message, and picks a win-back move."""

    spec = AgentSpec(
        type="RetentionAgent",
        name="Retention Specialist",
        description="Detects churn risk from the contact's history and message and answers with a "
        "retention move: a human, an offer or a follow-up.",
        category=AgentCategory.RETENTION,
        capabilities=("churn_risk_assessment", "win_back_offers", "sentiment_analysis"),
        starting_latency_ms=880,
        extra_output_fields=(
            FieldSpec("metadata.churn_risk", "float", True, "Estimated churn risk after this message, 0-1"),
            FieldSpec("metadata.retention_risk", "string", True, "high (>=0.6), medium (>=0.3) or low"),
        ),
        examples=(
            ExampleSpec(
                {"message": "Quero cancelar minha assinatura, o serviço está péssimo"},
                {
                    "intent": "cancellation_intent",
                    "metadata.retention_risk": "high",
                    "suggested_actions": "escalate_to_human,offer_discount,schedule_follow_up",
                },
                "A cancellation with negative sentiment: a human and a retention offer.",
            ),
        ),
    )
    persona = (
        "You are a retention specialist for a company that uses the Ventros CRM. Acknowledge the "
        "problem first, be empathetic, and offer a concrete way to keep the customer."
    )

    _DELTA = {"cancellation_intent": 0.4, "complaint": 0.25, "refund_request": 0.2, "unsubscribe": 0.15}

    def plan(self, insight: Insight) -> Plan:
        c = insight.classification
        known = insight.contact.known and insight.contact.churn_risk is not None
        base = insight.contact.churn_risk if known else 0.3
        assert base is not None
        risk = base + self._DELTA.get(c.intent, 0.0)
        risk += {"negative": 0.1, "positive": -0.1}.get(c.sentiment, 0.0)
        risk = round(max(0.0, min(1.0, risk)), 2)
        level = "high" if risk >= 0.6 else "medium" if risk >= 0.3 else "low"
        actions: list[str] = []
        if c.intent == "cancellation_intent":
            actions.append("escalate_to_human")
        if c.intent == "refund_request":
            actions.append("process_refund")
        if level == "high":
            actions += ["escalate_to_human", "offer_discount", "schedule_follow_up"]
        elif level == "medium":
            if insight.tier == "premium" or (insight.contact.lifetime_value or 0.0) > 1000:
                actions.append("offer_discount")
            actions.append("schedule_follow_up")
        elif c.sentiment == "positive":
            actions.append("request_feedback")
        closing_pt, closing_en = (
            ("Quero muito manter você com a gente.", "We'd really like to keep you with us.")
            if level == "high"
            else ("", "")
        )
        source = "memory" if known else "default 0.30 (no history)"
        return Plan(
            actions=actions,
            metadata={"churn_risk": f"{risk:.2f}", "retention_risk": level},
            thoughts=[
                f"Churn risk {risk:.2f} ({level}): base {base:.2f} from {source}, intent {c.intent}, "
                f"sentiment {c.sentiment}."
            ],
            closing_pt=closing_pt,
            closing_en=closing_en,
        )


class ConversationAnalyticsAgent(ConversationalAgent):
    """ANALYTICS: an internal note for the team: intent, sentiment, topics, value and risk."""

    spec = AgentSpec(
        type="ConversationAnalyticsAgent",
        name="Conversation Analyst",
        description="Writes an internal summary of the conversation for the CRM team: intent, "
        "sentiment, topics, customer value and churn signals, with tags to apply.",
        category=AgentCategory.ANALYTICS,
        capabilities=(
            "conversation_summary",
            "sentiment_analysis",
            "topic_extraction",
            "churn_signal_detection",
        ),
        starting_latency_ms=700,
        extra_output_fields=(
            FieldSpec("metadata.topics", "string", True, "Comma-separated main topics of the message"),
            FieldSpec(
                "metadata.churn_signal", "string", True, "true when the message or history signals churn"
            ),
        ),
        examples=(
            ExampleSpec(
                {"message": "The delivery was late again and support never answers"},
                {
                    "intent": "complaint",
                    "metadata.churn_signal": "true",
                    "suggested_actions": "tag_contact,escalate_to_human,schedule_follow_up",
                },
                "A summary (not a reply) flagging a churn signal.",
            ),
        ),
    )
    audience = "internal"
    persona = (
        "You are a conversation analyst for a company that uses the Ventros CRM. You write short, "
        "factual internal notes for the team; you never address the customer."
    )

    def plan(self, insight: Insight) -> Plan:
        c = insight.classification
        found = topics(insight.text)
        churn_signal = c.intent in ("cancellation_intent", "complaint", "refund_request") or (
            (insight.contact.churn_risk or 0.0) > 0.6
        )
        actions = ["tag_contact"]
        if c.sentiment == "negative":
            actions.append("escalate_to_human")
        if churn_signal:
            actions.append("schedule_follow_up")
        if c.intent == "purchase_intent":
            actions.append("create_lead")
        pt = c.language == "pt"
        topic_text = ", ".join(found) if found else ("nenhum" if pt else "none")
        return Plan(
            actions=actions,
            metadata={"topics": ",".join(found), "churn_signal": str(churn_signal).lower()},
            thoughts=[f"Topics: {topic_text}; churn signal: {churn_signal}."],
            closing_pt=f"Tópicos: {topic_text}.",
            closing_en=f"Topics: {topic_text}.",
        )


BUILTIN_AGENTS = (
    CustomerServiceAgent,
    LeadQualifierAgent,
    MarketingCampaignAgent,
    RetentionAgent,
    ConversationAnalyticsAgent,
)

__all__ = [
    "BUILTIN_AGENTS",
    "ConversationAnalyticsAgent",
    "CustomerServiceAgent",
    "LeadQualifierAgent",
    "MarketingCampaignAgent",
    "RetentionAgent",
]
