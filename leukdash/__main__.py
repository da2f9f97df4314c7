import sys

try:  # a Ctrl-C from the first line is one line, not the traceback of an import
    from leukdash.fd2 import open_closed_standard_streams

    open_closed_standard_streams()  # before any other file is opened
    from leukdash.engine.machine import (fit_blas_threads_to_process_limit,
                                         refuse_numerical_libraries_under_low_address_space)

    fit_blas_threads_to_process_limit()  # before numpy is first imported (the CLI imports it)
    refuse_numerical_libraries_under_low_address_space()
    from leukdash.cli import main
except KeyboardInterrupt:
    if sys.stderr is not None:
        print("interrupted before the command started: nothing was changed", file=sys.stderr)
    sys.exit(130)

sys.exit(main())
