"""The ``sigledger`` command: argument parsing and output over the client library."""
