import faulthandler

from ingestion.cli import main

# An ODBC driver that crashes (SIGSEGV, e.g. psqlODBC 13 freeing a statement after the server died) must
# leave the Python stack in the log, not only an exit code of -11.
faulthandler.enable()

raise SystemExit(main())
