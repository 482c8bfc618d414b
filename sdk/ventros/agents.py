"""Messages and enums of ventros.agents (AgentService), re-exported from the generated code."""

from ._generated.ventros.agents import *  # noqa: F403
from ._generated.ventros.agents import __all__ as __all__
