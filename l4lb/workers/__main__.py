"""
C{python -m l4lb.workers ...}: one worker process, started by the main
process's L{l4lb.workers.pool.WorkerPool}, never by hand.
"""

import sys

from l4lb.workers.child import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
