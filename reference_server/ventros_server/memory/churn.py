"""Churn risk: a transparent score an agent can explain to a person, not a trained model.

    churn_risk = 0.45 * recency + 0.30 * inactivity + 0.25 * complaints        in [0, 1]

    recency    = 1 - exp(-days_since_last_activity / 30)   0 today, 0.63 after 30 days, 0.95 after 90
    inactivity = exp(-interactions_last_90_days / 4)       1 with none, 0.37 with 4, 0.08 with 10
    complaints = 1 - exp(-complaints_last_90_days / 2)     0 with none, 0.39 with 1, 0.63 with 2

* last activity: the latest message (either direction), purchase or memory;
* interactions: inbound messages and purchases (what the customer did, not what we sent);
* complaints: memories whose type is "complaint" or "support_ticket", or that are linked to an
  entity with the relationship "complained_about".

A contact with no activity at all scores 0.75 (recency and inactivity at 1, no complaints).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

WEIGHTS = (0.45, 0.30, 0.25)
WINDOW_DAYS = 90
COMPLAINT_TYPES = ("complaint", "support_ticket")
COMPLAINT_RELATIONSHIP = "complained_about"


@dataclass(frozen=True)
class ChurnInputs:
    last_activity: datetime | None
    interactions_90d: int
    complaints_90d: int


def churn_risk(inputs: ChurnInputs, now: datetime) -> float:
    if inputs.last_activity is None:
        recency = 1.0
    else:
        idle_days = max((now - inputs.last_activity).total_seconds() / 86400, 0.0)
        recency = 1 - math.exp(-idle_days / 30)
    inactivity = math.exp(-inputs.interactions_90d / 4)
    complaints = 1 - math.exp(-inputs.complaints_90d / 2)
    w_recency, w_inactivity, w_complaints = WEIGHTS
    score = w_recency * recency + w_inactivity * inactivity + w_complaints * complaints
    return min(max(score, 0.0), 1.0)
