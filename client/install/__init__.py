"""The installer's side: whose signatures count (policy), what a lock file pins
(requirements files, pylock.toml) and checking those pins against logs."""
