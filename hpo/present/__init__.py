"""Showing results to people: tables and JSON/CSV, the HTML report, the dashboard server and
model export."""
