import sys

from billing_ops.cli import main

sys.exit(main())
