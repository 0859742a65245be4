"""The quality gate (Great Expectations) and its quarantine."""
