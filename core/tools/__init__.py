"""Tooling around the library: fetching and converting the offline assets (:mod:`.assets`)."""
