"""The promotion history as a table: `steelflow registry history` and the registered model's description."""

from __future__ import annotations

from steelflow.registry import HISTORY_COLUMNS, HISTORY_HEADING, history_rows, with_history

RECORDS = [
    {"time": "2026-12-01T10:00:00.000001+00:00", "id": "a", "action": "promote", "from_version": None,
     "to_version": "1", "gates": [{"passed": True}], "user": "ana"},
    {"time": "2026-12-02T11:30:00.000001+00:00", "id": "b", "action": "force-promote", "from_version": "1",
     "to_version": "2", "gates": [{"passed": False}, {"passed": True}], "reason": "a | b\nc", "user": "bo"},
]  # fmt: skip


def test_history_rows_read_as_the_table_a_person_sees() -> None:
    assert history_rows(RECORDS) == [
        ("2026-12-01 10:00:00", "promote", "-", "1", "passed", "", "ana"),
        ("2026-12-02 11:30:00", "force-promote", "1", "2", "1/2 failed", "a | b\nc", "bo"),
    ]


def test_the_description_keeps_the_users_text_and_shows_the_newest_record_first() -> None:
    described = with_history("Our steel model.\n", RECORDS)
    intro, table = described.split(HISTORY_HEADING)
    assert intro.strip() == "Our steel model."
    lines = table.strip().splitlines()
    assert lines[0] == "| " + " | ".join(HISTORY_COLUMNS) + " |"
    assert lines[2].startswith("| 2026-12-02 11:30:00 | force-promote | 1 | 2 | 1/2 failed | a \\| b c |")
    assert lines[3].startswith("| 2026-12-01 10:00:00 | promote | - | 1 |")
    # rewritten, not appended to: one table however often it is written
    again = with_history(described, RECORDS[:1])
    assert again.count(HISTORY_HEADING) == 1 and "force-promote" not in again
    assert again.startswith("Our steel model.")


def test_a_long_history_keeps_the_newest_rows_within_what_mlflow_stores() -> None:
    many = [
        {**RECORDS[0], "time": f"2026-12-01T10:{i // 60:02d}:{i % 60:02d}", "reason": "x" * 500}
        for i in range(90)
    ]
    described = with_history("Ours.", many)
    assert len(described) <= 5000  # MLflow's column for a registered model's description
    rows = [line for line in described.splitlines() if line.startswith("| 2026")]
    assert rows[0].startswith("| 2026-12-01 10:01:29 |")  # the newest first
    assert f"{90 - len(rows)} older record(s): `steelflow registry history`" in described
    assert all(len(row) < 400 for row in rows)  # a long reason is cut
