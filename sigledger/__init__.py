"""sigledger: a transparency log for Python release files.

One import package with two halves, kept as the repository's top-level folders
``ledger/`` and ``client/`` (``sigledger/ledger`` and ``sigledger/client`` are
links to them, so a checkout, an editable install and a wheel all see the same
``sigledger.ledger`` and ``sigledger.client`` modules):

* :mod:`sigledger.ledger` -- the pure wire formats at its root, and the services
  that keep a log (:mod:`sigledger.ledger.log`), witness one
  (:mod:`sigledger.ledger.witness`) and what both share
  (:mod:`sigledger.ledger.service`);
* :mod:`sigledger.client` -- everything that talks to a log: the trust core at its
  root, the installer (:mod:`sigledger.client.install`), the auditor
  (:mod:`sigledger.client.monitor`), the publisher (:mod:`sigledger.client.publish`)
  and the command line (:mod:`sigledger.client.cli`).
"""
