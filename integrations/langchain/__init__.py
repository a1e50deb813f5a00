"""LangChain adapters (filled by the integrations issue)."""
