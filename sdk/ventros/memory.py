"""Messages and enums of ventros.memory (MemoryService), re-exported from the generated code."""

from ._generated.ventros.memory import *  # noqa: F403
from ._generated.ventros.memory import __all__ as __all__
