import sys

from leukdash.cli import main

sys.exit(main())
