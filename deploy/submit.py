"""spark-submit entry point: the ``backforth`` command, run by Spark's Python driver.

``make dist`` copies this file to ``dist/backforth_submit.py``; it holds no logic, so a job behaves the same under
spark-submit, as a Databricks wheel task and on a laptop. Arguments are the CLI's, e.g.::

    spark-submit --archives dist/backforth-env.tar.gz#env ... dist/backforth_submit.py pipeline --env cluster
"""

import sys

from backforth.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
