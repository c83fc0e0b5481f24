"""Everything that talks to a sigledger log: publishing, verification, the CLI."""
