"""Quality gates of the sinks (Great Expectations 1.x).

Importing this package quiets Great Expectations' own loggers to WARNING *before* any submodule
imports GX: at INFO it logs hundreds of import-time lines into the sinks' logs.
"""

import logging

logging.getLogger("great_expectations").setLevel(logging.WARNING)
