"""`python -m supabackup_pipeline` is the `supabackup` command."""

import sys

from supabackup_pipeline.cli import main

sys.exit(main())
