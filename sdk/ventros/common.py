"""ventros.common.ErrorDetails, re-exported from the generated code."""

from ._generated.ventros.common import *  # noqa: F403
from ._generated.ventros.common import __all__ as __all__
