import sys

from leukdash.engine.machine import fit_blas_threads_to_process_limit

fit_blas_threads_to_process_limit()  # before numpy is first imported (the CLI imports it)

from leukdash.cli import main  # noqa: E402

sys.exit(main())
