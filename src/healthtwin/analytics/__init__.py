"""Analytics: SQL on FHIR v2 ViewDefinitions (Python engine + DuckDB compilation). See docs/analytics.md."""
from __future__ import annotations

from .views import CompiledView, ViewDefinitionError, ViewEvaluationError, compile_view, run_view

__all__ = ["CompiledView", "ViewDefinitionError", "ViewEvaluationError", "compile_view", "run_view"]
