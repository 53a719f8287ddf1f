import sys

from atess_exporter.cli import main

sys.exit(main())
