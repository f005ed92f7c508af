"""Storage: the database (models, engines, migrations), Redis (clients, the embedded server,
the event streams), the rollups and the catalog cache. Imports only ``backend.core``.
"""
