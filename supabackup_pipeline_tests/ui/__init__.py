"""Helpers for the browser test (test_ui_e2e.py): a `dagster dev` process and Playwright's Chromium."""
