"""The agent registry: agent types, their catalogue entries and their measured latency.

    registry = AgentRegistry()
    registry.register(MyAgent())          # adding an agent = one class + this line

``avg_latency_ms`` is the mean of the agent's last ``window`` completed runs on this server
(ExecuteAgent, StreamAgentExecution and batch items alike); before its first run it is the
agent's ``spec.starting_latency_ms``.
"""

from __future__ import annotations

import difflib
from collections import deque

from ventros import NotFoundError
from ventros import agents as pb

from .base import Agent


class LatencyWindow:
    """Rolling mean of the last ``size`` samples (ms)."""

    def __init__(self, size: int = 100) -> None:
        self._samples: deque[int] = deque(maxlen=size)
        self._total = 0

    def add(self, latency_ms: int) -> None:
        if len(self._samples) == self._samples.maxlen:
            self._total -= self._samples[0]
        self._samples.append(latency_ms)
        self._total += latency_ms

    @property
    def count(self) -> int:
        return len(self._samples)

    def mean(self) -> int | None:
        return round(self._total / len(self._samples)) if self._samples else None


class AgentRegistry:
    def __init__(self, *, window: int = 100) -> None:
        self._agents: dict[str, Agent] = {}
        self._latency: dict[str, LatencyWindow] = {}
        self._window = window

    def register(self, agent: Agent) -> Agent:
        """Add an agent under ``agent.spec.type``; a second agent with the same type is an error."""
        agent_type = agent.spec.type
        if not agent_type:
            raise ValueError("agent.spec.type must not be empty")
        if agent_type in self._agents:
            raise ValueError(f"agent type {agent_type!r} is already registered")
        self._agents[agent_type] = agent
        self._latency[agent_type] = LatencyWindow(self._window)
        return agent

    def __contains__(self, agent_type: str) -> bool:
        return agent_type in self._agents

    def __len__(self) -> int:
        return len(self._agents)

    def types(self) -> list[str]:
        return list(self._agents)

    def get(self, agent_type: str) -> Agent:
        """The agent, or NOT_FOUND ("AGENT_NOT_FOUND") whose suggestions name the closest types."""
        agent = self._agents.get(agent_type)
        if agent is not None:
            return agent
        closest = self.closest(agent_type)
        raise NotFoundError.of(
            "AGENT_NOT_FOUND",
            f"Agent type '{agent_type[:128]}' does not exist",
            suggestions=[f"Try {name} instead" for name in closest],
            agent_type=agent_type[:128],
            closest=",".join(closest),
        )

    def closest(self, agent_type: str, n: int = 3) -> list[str]:
        """Registered types closest to ``agent_type`` (case-insensitive difflib); all if none is close."""
        by_lower = {t.lower(): t for t in self._agents}
        matches = difflib.get_close_matches(agent_type.lower(), list(by_lower), n=n, cutoff=0.4)
        return [by_lower[m] for m in matches] or list(self._agents)[:n]

    def record_latency(self, agent_type: str, latency_ms: int) -> None:
        if agent_type in self._latency:
            self._latency[agent_type].add(max(int(latency_ms), 0))

    def runs(self, agent_type: str) -> int:
        return self._latency[agent_type].count

    def avg_latency_ms(self, agent_type: str) -> int:
        mean = self._latency[agent_type].mean()
        return self._agents[agent_type].spec.starting_latency_ms if mean is None else mean

    def info(self, agent_type: str) -> pb.AgentInfo:
        spec = self._agents[agent_type].spec
        return pb.AgentInfo(
            type=spec.type,
            name=spec.name,
            description=spec.description,
            capabilities=list(spec.capabilities),
            required_inputs=list(spec.required_inputs),
            avg_latency_ms=self.avg_latency_ms(agent_type),
            category=spec.category,
        )

    def capabilities(self, agent_type: str) -> pb.GetAgentCapabilitiesResponse:
        spec = self.get(agent_type).spec
        return pb.GetAgentCapabilitiesResponse(
            agent=self.info(agent_type),
            schema=pb.AgentSchema(
                input_fields=[f.to_proto() for f in spec.input_fields],
                output_fields=[f.to_proto() for f in spec.output_fields],
            ),
            examples=[e.to_proto() for e in spec.examples],
        )


def default_registry() -> AgentRegistry:
    """A fresh registry with the five built-in agents (one per AgentCategory)."""
    from .builtin import BUILTIN_AGENTS

    registry = AgentRegistry()
    for cls in BUILTIN_AGENTS:
        registry.register(cls())
    return registry


__all__ = ["AgentRegistry", "LatencyWindow", "default_registry"]
