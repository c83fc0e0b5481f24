"""The auditor's side: following logs, re-verifying every tile and entry, and raising
alarms that carry self-contained evidence (monitor, fsck)."""
