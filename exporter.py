#!/usr/bin/env python3
"""Entry point: `python exporter.py --config.file config.yaml` (same as `atess-exporter`)."""

import sys

from atess_exporter.cli import main

if __name__ == "__main__":
    sys.exit(main())
