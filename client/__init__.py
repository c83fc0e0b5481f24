"""Everything that talks to a log.

At this package's root lives the **trust core**: :mod:`.remote` (HTTP to a log),
:mod:`.tiles` (tiles authenticated against a verified checkpoint), :mod:`.trust`
(checkpoint acceptance: trust on first use, then append-only), :mod:`.checkpoints`
(its memory on disk) and :mod:`.receipts` (checking what a log answered).

Above it, one room per user: :mod:`.install` (installers: policy, lock files, checks),
:mod:`.monitor` (auditors: monitor, fsck, alarms), :mod:`.publish` (publishers: keys,
signing, submission) and :mod:`.cli` (the ``sigledger`` command over all of them).
"""
