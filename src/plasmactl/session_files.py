"""The names of the files a session writes into its output folder, in one place.

Every tool that reads or writes a session folder (run, resume, report, verify-log, the campaigns and the hil
runner) takes the names from here; ``--overwrite`` removes exactly :data:`SESSION_FILES`. A module with no
imports, so that naming a file costs no start-up time.
"""

from __future__ import annotations

LOG_NAME = "events.jsonl"  # the audit log
SUMMARY_NAME = "summary.json"  # written at the session's end, anchored to the log's last record
SIMULATOR_RECORD = "simulator.json"  # what the simulated devices and tissue really did (simulated rigs)
REPORT_NAME = "report.html"  # plasmactl report
CLAIM_NAME = "resumed_by.json"  # in an earlier session's folder: the session that continues it

SESSION_FILES = (LOG_NAME, SUMMARY_NAME, SIMULATOR_RECORD, REPORT_NAME, CLAIM_NAME)
