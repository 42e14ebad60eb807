"""Knowledge base: schema (pydantic), loader and validation. Knows nothing of the other layers."""

from .loader import KnowledgeBase, KnowledgeBaseError, Problem, get_kb, load_kb
from .validate import validate_kb

__all__ = ["KnowledgeBase", "KnowledgeBaseError", "Problem", "get_kb", "load_kb", "validate_kb"]
