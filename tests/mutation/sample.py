"""Keep every Nth mutant of a cosmic-ray session (in source order), dropping the rest."""

import sqlite3
import sys

session, every = sys.argv[1], int(sys.argv[2])
with sqlite3.connect(session) as db:
    order = "module_path, start_pos_row, start_pos_col, operator_name, occurrence"
    jobs = [row[0] for row in db.execute(f"SELECT job_id FROM mutation_specs ORDER BY {order}")]
    dropped = [(job,) for i, job in enumerate(jobs) if i % every]
    db.executemany("DELETE FROM mutation_specs WHERE job_id = ?", dropped)
    db.executemany("DELETE FROM work_items WHERE job_id = ?", dropped)
print(f"{len(jobs) - len(dropped)} of {len(jobs)} mutants kept")
