"""LlamaIndex adapters (filled by the integrations issue)."""
