"""Operator and analyst tools: status and lag, drain, dead-letter handling, the live web page, reports."""
