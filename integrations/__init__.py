"""Framework adapters for vaultdb (imported as ``vaultdb.integrations``)."""
