"""The publisher's side: keys, signing release statements, submitting them and keeping
the receipts."""
