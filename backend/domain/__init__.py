"""The rules of the product: events and their validation, visitors, traffic quality, the
affiliate programme, accounts and the report queries. Imports ``storage`` and ``core`` only.
"""
