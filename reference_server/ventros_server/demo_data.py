"""A deterministic, realistic CRM data set for demos, tests and benchmarks.

``demo_records(seed, as_of)`` yields JSONL records (the importer's format, see
ventros_server.memory.importer): about 50 contacts writing in Portuguese or English, with their
messages, purchases, support tickets, campaigns, products and categories, the memories an agent
would have written about them, and the knowledge-graph edges between all of these.

The same seed and ``as_of`` give byte-identical records. Every date is relative to ``as_of``
(default 2024-10-01, the spec's example period), so it is also the "now" the data set lives in.

It always contains the spec's example contact: 550e8400-e29b-41d4-a716-446655440000, João Silva,
premium, who bought "Product Y" (R$5000.00) on 2024-09-15, complained about a delivery delay on
2024-09-18, had the ticket resolved, received a coupon and opened the "Fall Sale" campaign.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

DEFAULT_SEED = 20240915
DEFAULT_AS_OF = datetime(2024, 10, 1, 12, 0, tzinfo=UTC)
JOAO_ID = "550e8400-e29b-41d4-a716-446655440000"
PRODUCT_Y_ID = "660e8400-e29b-41d4-a716-446655440001"
FALL_SALE_ID = "campaign-fall-sale"

CATEGORIES = {"electronics": "Electronics", "home": "Casa e Cozinha", "fashion": "Moda", "sports": "Esportes"}
PRODUCTS = [
    (PRODUCT_Y_ID, "Product Y", "electronics", 5000.0),
    ("product-smartphone-x", "Smartphone X", "electronics", 3200.0),
    ("product-notebook-pro", "Notebook Pro 14", "electronics", 7800.0),
    ("product-fone-bt", "Fone Bluetooth", "electronics", 350.0),
    ("product-air-fryer", "Air Fryer 4L", "home", 480.0),
    ("product-cafeteira", "Cafeteira Expresso", "home", 900.0),
    ("product-jogo-panelas", "Jogo de Panelas", "home", 620.0),
    ("product-tenis-corrida", "Tênis de Corrida", "sports", 540.0),
    ("product-bicicleta", "Bicicleta Aro 29", "sports", 2100.0),
    ("product-jaqueta", "Jaqueta Corta-Vento", "fashion", 310.0),
    ("product-vestido", "Vestido Linho", "fashion", 260.0),
    ("product-smartwatch", "Smartwatch Fit", "electronics", 1200.0),
]
CAMPAIGNS = [
    (FALL_SALE_ID, "Fall Sale"),
    ("campaign-black-friday", "Black Friday"),
    ("campaign-dia-das-maes", "Dia das Mães"),
    ("campaign-volta-as-aulas", "Volta às Aulas"),
]
FIRST_PT = ["Ana", "Bruno", "Carla", "Diego", "Eduarda", "Felipe", "Gabriela", "Henrique", "Isabela", "Lucas",
            "Mariana", "Rafael", "Beatriz", "Thiago", "Camila", "Gustavo", "Larissa", "Pedro", "Juliana", "Mateus",
            "Fernanda", "Rodrigo", "Patrícia", "Vinícius", "Letícia"]  # fmt: skip
LAST_PT = [
    "Souza",
    "Oliveira",
    "Santos",
    "Pereira",
    "Costa",
    "Rodrigues",
    "Almeida",
    "Nascimento",
    "Lima",
    "Araújo",
]
FIRST_EN = ["Emily", "James", "Olivia", "Michael", "Sophia", "Daniel", "Emma", "David", "Grace", "Ryan",
            "Chloe", "Nathan", "Hannah", "Kevin", "Laura", "Adam", "Megan", "Sean", "Rachel", "Tyler",
            "Alice", "Brian", "Zoe", "Mark"]  # fmt: skip
LAST_EN = ["Smith", "Johnson", "Brown", "Taylor", "Miller", "Wilson", "Clark", "Walker", "Hall", "Young"]

# (memory_type, English template, Portuguese template); {product}, {date}, {campaign} filled in.
PURCHASE = ("purchase", "Customer purchased {product} on {date}", "Cliente comprou {product} em {date}")
DELAY = (
    "support_ticket",
    "Complained about delivery delay of {product} on {date}",
    "Reclamou do atraso na entrega do {product} em {date}",
)
DAMAGED = (
    "support_ticket",
    "Reported that {product} arrived damaged and asked for a replacement",
    "Relatou que o {product} chegou quebrado e pediu troca",
)
RESOLVED = ("support_ticket", "Support ticket resolved on {date}", "Chamado de suporte resolvido em {date}")
COUPON = ("agent_insight", "Received discount coupon on {date}", "Recebeu cupom de desconto em {date}")
CAMPAIGN = (
    "campaign",
    'Opened email campaign "{campaign}" on {date}',
    'Abriu a campanha "{campaign}" em {date}',
)
PREFERENCES = [
    ("preference", "Prefers communication after 2pm", "Prefere ser contatado à tarde, depois das 14h"),
    ("preference", "Prefers WhatsApp over phone calls", "Prefere WhatsApp a ligações"),
    ("preference", "Only wants emails about promotions", "Só quer receber e-mails de promoções"),
]
FACTS = [
    (
        "fact",
        "Has two kids and buys gifts every December",
        "Tem dois filhos e compra presentes todo dezembro",
    ),
    ("fact", "Works from home and values fast shipping", "Trabalha de casa e valoriza frete rápido"),
    ("fact", "Runs marathons on weekends", "Corre maratonas nos fins de semana"),
]
INSIGHTS = [
    (
        "agent_insight",
        "Price sensitive: only buys with a discount",
        "Sensível a preço: só compra com desconto",
    ),
    (
        "agent_insight",
        "Mentioned a competitor offering a cheaper price",
        "Comentou que um concorrente oferece preço menor",
    ),
    (
        "agent_insight",
        "Interested in upgrading to a premium plan",
        "Demonstrou interesse em migrar para o plano premium",
    ),
]
MESSAGES_IN = {
    "en": ["Hi, where is my order?", "Thanks for the quick help!", "Can I change the delivery address?",
           "Do you have this in another color?", "The package is late again."],
    "pt": ["Oi, cadê meu pedido?", "Obrigado pela ajuda rápida!", "Posso mudar o endereço de entrega?",
           "Tem essa cor em outro tamanho?", "A encomenda atrasou de novo."],
}  # fmt: skip
MESSAGES_OUT = {
    "en": ["Your order has shipped.", "Here is your 10% coupon.", "Your ticket was resolved."],
    "pt": ["Seu pedido foi enviado.", "Aqui está seu cupom de 10%.", "Seu chamado foi resolvido."],
}


class _Builder:
    def __init__(self, seed: int, as_of: datetime) -> None:
        self.rng = random.Random(seed)
        self.as_of = as_of
        self.records: list[dict[str, Any]] = []

    def uid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def ago(self, days: float) -> datetime:
        return self.as_of - timedelta(days=days)

    @staticmethod
    def iso(moment: datetime) -> str:
        return moment.isoformat().replace("+00:00", "Z")

    def add(self, kind: str, **fields: Any) -> None:
        self.records.append({"kind": kind, **fields})

    def edge(self, src: str, dst: str, relationship: str, weight: float, when: datetime) -> None:
        self.add(
            "edge",
            from_id=src,
            to_id=dst,
            relationship=relationship,
            weight=weight,
            created_at=self.iso(when),
        )

    def memory(
        self,
        contact: str,
        template: tuple[str, str, str],
        lang: str,
        when: datetime,
        related: list[dict[str, Any]],
        **values: str,
    ) -> None:
        memory_type, english, portuguese = template
        content = (english if lang == "en" else portuguese).format(date=when.date().isoformat(), **values)
        self.add(
            "memory", id=self.uid(), contact_id=contact, content=content, memory_type=memory_type,
            metadata={"source": "demo", "language": lang}, created_at=self.iso(when), related=related,
        )  # fmt: skip


def _catalogue(b: _Builder) -> None:
    for cid, name in CATEGORIES.items():
        b.add("entity", id=f"category-{cid}", type="category", properties={"name": name})
    for pid, name, category, price in PRODUCTS:
        b.add("entity", id=pid, type="product", properties={"name": name, "price": f"{price:.2f}"})
        b.edge(pid, f"category-{category}", "in_category", 1.0, b.ago(400))
    for cid, name in CAMPAIGNS:
        b.add("entity", id=cid, type="campaign", properties={"name": name})
    b.edge(FALL_SALE_ID, PRODUCT_Y_ID, "promotes", 0.8, b.ago(20))
    b.edge("campaign-black-friday", "product-smartphone-x", "promotes", 0.8, b.ago(300))


def _joao(b: _Builder) -> None:
    """The spec's example contact, with the exact story of its examples."""
    b.add(
        "contact", id=JOAO_ID, name="João Silva", phone="+55 11 91234-5678", email="joao.silva@example.com",
        tier="premium", tags=["vip", "electronics"], custom_fields={"city": "São Paulo", "language": "pt-BR"},
        created_at=b.iso(b.ago(420)),
    )  # fmt: skip
    bought, complained, resolved, coupon, opened = (b.ago(d) for d in (16, 13, 11, 9, 6))
    ticket = "ticket-789"
    b.add("entity", id=ticket, type="ticket", properties={"title": "Delivery delay", "status": "resolved"})
    b.add("purchase", id="purchase-joao-1", contact_id=JOAO_ID, product_id=PRODUCT_Y_ID, amount=5000.0,
          currency="BRL", purchased_at=b.iso(bought))  # fmt: skip
    b.edge(JOAO_ID, PRODUCT_Y_ID, "purchased", 1.0, bought)
    b.edge(JOAO_ID, ticket, "complained_about", 0.9, complained)
    b.edge(ticket, PRODUCT_Y_ID, "about", 1.0, complained)
    b.edge(JOAO_ID, FALL_SALE_ID, "opened", 0.6, opened)
    b.edge(JOAO_ID, "category-electronics", "interested_in", 0.7, b.ago(100))
    product = {
        "entity_type": "product",
        "entity_id": PRODUCT_Y_ID,
        "relationship": "purchased",
        "strength": 1.0,
    }
    campaign = {
        "entity_type": "campaign",
        "entity_id": FALL_SALE_ID,
        "relationship": "mentioned",
        "strength": 0.6,
    }
    ticket_ref = {
        "entity_type": "ticket",
        "entity_id": ticket,
        "relationship": "complained_about",
        "strength": 0.9,
    }
    about = {
        "entity_type": "product",
        "entity_id": PRODUCT_Y_ID,
        "relationship": "mentioned",
        "strength": 0.8,
    }
    b.add("memory", id="770e8400-e29b-41d4-a716-446655440010", contact_id=JOAO_ID,
          content=f"Customer purchased product Y on {bought.date()}", memory_type="purchase",
          metadata={"source": "demo"}, created_at=b.iso(bought), related=[product, campaign])  # fmt: skip
    b.add("memory", id="770e8400-e29b-41d4-a716-446655440011", contact_id=JOAO_ID,
          content=f"Complained about delivery delay on {complained.date()}", memory_type="support_ticket",
          metadata={"source": "demo"}, created_at=b.iso(complained), related=[ticket_ref, about])  # fmt: skip
    b.memory(JOAO_ID, RESOLVED, "en", resolved, [ticket_ref])
    b.memory(JOAO_ID, COUPON, "en", coupon, [])
    b.memory(JOAO_ID, CAMPAIGN, "en", opened, [campaign], campaign="Fall Sale")
    b.memory(JOAO_ID, PREFERENCES[0], "en", b.ago(30), [])
    for days, inbound, content in [(14, True, "Meu pedido do Product Y ainda não chegou, está atrasado!"),
                                   (13, False, "Sentimos muito pelo atraso, abrimos o chamado 789."),
                                   (11, False, "Seu pedido foi entregue. Chamado resolvido."),
                                   (10, True, "Recebi, obrigado!")]:  # fmt: skip
        b.add("message", id=b.uid(), contact_id=JOAO_ID, content=content, is_inbound=inbound,
              channel="whatsapp", sent_at=b.iso(b.ago(days)))  # fmt: skip


def _contact(b: _Builder, index: int) -> None:
    rng = b.rng
    lang = "pt" if index % 2 == 0 else "en"
    first = rng.choice(FIRST_PT if lang == "pt" else FIRST_EN)
    last = rng.choice(LAST_PT if lang == "pt" else LAST_EN)
    contact = b.uid()
    tier = rng.choices(["premium", "standard", "free"], weights=[2, 5, 3])[0]
    idle = rng.choice([1, 3, 7, 15, 30, 60, 120])  # days since the last activity: varied churn risk
    b.add(
        "contact", id=contact, name=f"{first} {last}", phone=f"+55 11 9{rng.randint(1000, 9999)}-{rng.randint(1000, 9999)}",
        email=f"{first.lower()}.{last.lower()}@example.com".encode("ascii", "ignore").decode(), tier=tier,
        tags=rng.sample(["newsletter", "vip", "b2b", "mobile", "frequent_buyer"], k=rng.randint(0, 2)),
        custom_fields={"language": "pt-BR" if lang == "pt" else "en-US"}, created_at=b.iso(b.ago(idle + rng.randint(60, 500))),
    )  # fmt: skip
    for n in range(rng.randint(1, 4)):
        pid, name, category, price = rng.choice(PRODUCTS[1:])
        when = b.ago(idle + 5 * n + rng.randint(0, 40))
        b.add("purchase", id=b.uid(), contact_id=contact, product_id=pid, amount=price, currency="BRL",
              purchased_at=b.iso(when))  # fmt: skip
        b.edge(contact, pid, "purchased", 1.0, when)
        ref = {"entity_type": "product", "entity_id": pid, "relationship": "purchased", "strength": 1.0}
        b.memory(contact, PURCHASE, lang, when, [ref], product=name)
        if rng.random() < 0.35:
            ticket = f"ticket-{b.uid()[:8]}"
            template = rng.choice([DELAY, DAMAGED])
            title = "Delivery delay" if template is DELAY else "Damaged product"
            b.add("entity", id=ticket, type="ticket", properties={"title": title, "status": "open"})
            b.edge(contact, ticket, "complained_about", 0.9, when + timedelta(days=3))
            b.edge(ticket, pid, "about", 1.0, when + timedelta(days=3))
            refs = [
                {
                    "entity_type": "ticket",
                    "entity_id": ticket,
                    "relationship": "complained_about",
                    "strength": 0.9,
                },
                {"entity_type": "product", "entity_id": pid, "relationship": "mentioned", "strength": 0.8},
            ]
            b.memory(contact, template, lang, when + timedelta(days=3), refs, product=name)
        if rng.random() < 0.4:
            b.edge(contact, f"category-{category}", "interested_in", 0.7, when)
    if rng.random() < 0.5:
        cid, cname = rng.choice(CAMPAIGNS)
        when = b.ago(idle + rng.randint(0, 30))
        b.edge(contact, cid, "opened", 0.6, when)
        ref = {"entity_type": "campaign", "entity_id": cid, "relationship": "mentioned", "strength": 0.6}
        b.memory(contact, CAMPAIGN, lang, when, [ref], campaign=cname)
    for pool in (PREFERENCES, FACTS, INSIGHTS):
        if rng.random() < 0.6:
            b.memory(contact, rng.choice(pool), lang, b.ago(idle + rng.randint(0, 60)), [])
    for _ in range(rng.randint(1, 6)):
        inbound = rng.random() < 0.6
        content = rng.choice((MESSAGES_IN if inbound else MESSAGES_OUT)[lang])
        b.add("message", id=b.uid(), contact_id=contact, content=content, is_inbound=inbound,
              channel=rng.choice(["whatsapp", "email", "sms"]), sent_at=b.iso(b.ago(idle + rng.randint(0, 45))))  # fmt: skip


def demo_records(
    seed: int = DEFAULT_SEED, as_of: datetime = DEFAULT_AS_OF, contacts: int = 50
) -> list[dict[str, Any]]:
    """The data set as importer records (entities first, then João, then the other contacts)."""
    builder = _Builder(seed, as_of)
    _catalogue(builder)
    _joao(builder)
    for index in range(contacts - 1):
        _contact(builder, index)
    return builder.records


def demo_lines(
    seed: int = DEFAULT_SEED, as_of: datetime = DEFAULT_AS_OF, contacts: int = 50
) -> Iterator[str]:
    for record in demo_records(seed, as_of, contacts):
        yield json.dumps(record, ensure_ascii=False) + "\n"


def load_demo(
    store: Any, *, seed: int = DEFAULT_SEED, as_of: datetime = DEFAULT_AS_OF, contacts: int = 50
) -> Any:
    """Import the demo data set into ``store``; returns the ImportReport."""
    from .memory.importer import import_jsonl

    return import_jsonl(store, demo_lines(seed, as_of, contacts))
