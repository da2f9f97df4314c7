"""A job's parent: ``python -m leukdash.service.supervisor STORE MAX_JOBS RUN_ID COMMAND...``.

Runs the job's command, and when it ends, however it ends, starts the next queued jobs
(:func:`leukdash.service.job_queue.dispatch`), so a queue moves on with no dashboard session watching. It
leads the job's process group: a cancel signals both, and it waits for the job to stop by
itself. It then exits as the job did (same code, or the same signal), so whoever follows the
job sees the job's outcome. Nothing heavy is imported: it stays small while the job computes.
"""

import os
import signal
import subprocess
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    store_root, max_jobs, run_id, command = Path(argv[0]), int(argv[1]), argv[2], argv[3:]
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        # A handler, not SIG_IGN: the job gets the default dispositions back when it starts.
        signal.signal(sig, lambda *_: None)
    try:
        code = subprocess.call(command)
    except OSError as error:  # the command cannot start: the queue must move on all the same
        print(f"cannot start the job: {error}", flush=True)
        code = 127
    try:
        from leukdash.service.job_queue import dispatch
        from leukdash.engine.store import RunStore

        dispatch(RunStore(store_root), max_jobs, ended=run_id)
    finally:
        if code < 0:
            if code == -signal.SIGKILL:  # no handler to undo, and no word from the job itself: said here
                print("the job was killed (SIGKILL: from outside, or by the system when memory ran out); its "
                      "finished folds are kept, and launching it again computes the others", flush=True)
            else:
                signal.signal(-code, signal.SIG_DFL)
            os.kill(os.getpid(), -code)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
