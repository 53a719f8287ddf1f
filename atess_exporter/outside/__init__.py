"""The outside world's text, as it enters and as it leaves: hostile strings and JSON made
safe, YAML files read with bounds, log lines with credentials scrubbed.

The most upstream room: every other room may use it, it uses none of them.
"""
